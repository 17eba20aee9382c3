"""`make demo` runs: the demo seeds, runs the worker jobs and answers, on embedded defaults only."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from tests.servers import free_port


def _environment(**settings: str) -> dict[str, str]:
    unset = ("MONGODB_URL", "REDIS_URL", "HOST", "PORT")
    return {**{k: v for k, v in os.environ.items() if k.upper() not in unset}, **settings}


def test_the_demo_serves_rolled_up_numbers_without_any_server():
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "demo", "--check", "--port", str(port)],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert f"running on http://127.0.0.1:{port}" in out
    assert "host@demo.example / demo-password" in out
    keynote = next(line for line in out.splitlines() if "Opening Keynote" in line)
    assert "duration=3725.0" in keynote  # synced from the built-in fake YouTube
    assert "attendees=0 " not in keynote
    zoom = next(line for line in out.splitlines() if "Town Hall" in line)
    assert "live=None" in zoom and "duration=None" in zoom
    # Believable numbers: no session's average watch exceeds its video's length (or its scheduled
    # hour without a video), and the keynote's top watchers are people with names and addresses.
    sessions = re.findall(r"duration=(\S+)\s+attendees=\d+\s.*avg=(\S+)", out)
    assert len(sessions) == 10
    for duration, average in sessions:
        if average != "None":
            assert 0 < float(average) <= (3600.0 if duration == "None" else float(duration))
    top = out.split("The keynote's longest watchers")[1].splitlines()[1:4]
    assert all(
        re.fullmatch(r"  \w+ [\w' ]+ <[\w.]+@[\w.]+> +watched=\d+s engagement=\d+%", t) for t in top
    ), top


def _printed_segment_curl(out: str) -> str:
    """The shell lines the demo prints for posting a segment: INGEST_KEY=… and the curl."""
    lines = out.splitlines()
    start = next(n for n, line in enumerate(lines) if line.strip().startswith("INGEST_KEY="))
    end = next(n for n in range(start, len(lines)) if not lines[n].rstrip().endswith("\\") and n > start)
    return "\n".join(line.strip() for line in lines[start : end + 1])


def test_the_demo_listens_on_host_and_port_settings_and_its_printed_curl_posts_a_segment():
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "demo"],
        env=_environment(HOST="127.0.0.1", PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = ""
        deadline = time.monotonic() + 120
        assert demo.stdout is not None
        while "Sessions after the worker jobs" not in out and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            out += line
        assert f"running on http://127.0.0.1:{port}" in out, out

        script = _printed_segment_curl(out)
        posted = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)

        assert posted.returncode == 0, posted.stderr
        assert json.loads(posted.stdout) == {"accepted": 1, "duplicates": 0, "rejected": []}
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def test_the_demo_says_how_to_install_its_store_when_it_is_missing():
    port = free_port()
    without_mongomock = "import sys; sys.modules['mongomock_motor'] = None; from web.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", without_mongomock, "demo", "--check", "--port", str(port)],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "Error: the demo's in-process store is not installed: pip install 'session-analytics[demo]' "
        "(make demo does this)"
    ]
