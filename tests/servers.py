"""Real servers for the tests: FerretDB (MongoDB wire, SQLite) and Redis on free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

FERRETDB_VERSION = "v1.24.2"
DEFAULT_FERRETDB = Path.home() / ".cache" / "session-analytics" / f"ferretdb-{FERRETDB_VERSION}"


class ServerMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start within {timeout}s")


class ServerProcess:
    """One server process that a test may stop and start again on the same port and data."""

    name = "server"

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix=f"sa-{self.name}-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log = open(self.root / f"{self.name}.log", "ab")

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.root
        )
        _wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        self._log.close()
        (None if os.environ.get("KEEP_SERVER_LOGS") else shutil.rmtree(self.root, ignore_errors=True))


class FerretDB(ServerProcess):
    name = "ferretdb"

    def __init__(self, root: Path | None = None) -> None:
        binary = os.environ.get("FERRETDB_BIN") or str(DEFAULT_FERRETDB)
        if not Path(binary).is_file():
            raise ServerMissing(f"FerretDB not found at {binary}: run `make test` (it builds it)")
        self.binary = binary
        super().__init__(root)
        (self.root / "data").mkdir(exist_ok=True)

    def command(self) -> list[str]:
        return [
            self.binary,
            "--handler=sqlite",
            f"--sqlite-url=file:{self.root / 'data'}/",
            f"--listen-addr=127.0.0.1:{self.port}",
            "--telemetry=disable",
            "--debug-addr=-",
            os.environ.get("FERRETDB_LOG_LEVEL", "--log-level=error"),
        ]

    def url(self, database: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}"


class Redis(ServerProcess):
    name = "redis"

    def __init__(self, root: Path | None = None) -> None:
        binary = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
        if binary is None:
            raise ServerMissing("redis-server not found: run `make test` (it installs it)")
        self.binary = binary
        super().__init__(root)

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def restart_empty(self) -> None:
        """Stop, lose every key (as a server without persistence does), start on the same port."""
        self.stop()
        for path in self.root.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != f"{self.name}.log":
                path.unlink()
        self.start()
