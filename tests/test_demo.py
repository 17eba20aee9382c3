"""`make demo` runs: the demo seeds, runs the worker jobs and answers, on embedded defaults only."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.servers import free_port


def test_the_demo_serves_rolled_up_numbers_without_any_server():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URL", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "demo", "--check", "--port", str(port)],
        env=env,
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
