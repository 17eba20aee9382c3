"""Worker and beat as real processes, for tests that need Celery exactly as deployed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class CeleryProcess:
    """`celery -A worker worker|beat` with the given settings as environment variables."""

    def __init__(
        self, role: str, env: dict[str, str], *extra: str, queues: str | None = "default,providers"
    ) -> None:
        """`queues` is the worker's `-Q`; None starts a plain worker that consumes every queue."""
        self.role = role
        # Metrics off unless a test asks for them: parallel workers would all try port 9808.
        self.env = {
            **os.environ,
            "WORKER_METRICS_PORT": "0",
            **env,
            "LOG_JSON": "false",
            "PYTHONUNBUFFERED": "1",
        }
        self.extra = extra
        self.queues = queues
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"sa-{role}-", suffix=".log")[1])

    def start(self) -> CeleryProcess:
        args = [sys.executable, "-m", "celery", "-A", "worker", self.role, "--loglevel", "INFO"]
        if self.role == "worker":
            args += [
                "--pool",
                "prefork",
                "--concurrency",
                "1",
                *(["-Q", self.queues] if self.queues else []),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        if self.role == "beat":
            args += ["--schedule", str(self.log.with_suffix(".schedule"))]
        args += list(self.extra)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool children."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")


async def eventually(probe, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Await `probe()` until it returns something truthy; fail after `timeout` seconds."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")


class WebProcess:
    """`session-analytics serve` on a free loopback port, with the given settings as environment
    variables: a web process as deployed, for tests of what several of them share."""

    def __init__(self, env: dict[str, str]) -> None:
        from tests.servers import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "LOG_JSON": "false", "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="sa-web-", suffix=".log")[1])

    def start(self) -> WebProcess:
        import socket

        args = [sys.executable, "-c", "from web.cli import main; main()", "serve", "--port", str(self.port)]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

        def listening() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, timeout=60, what=f"web process on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
