"""Real servers for the tests: the MongoDB-wire test server and Redis on free loopback ports.

The MongoDB-wire server is mongo-java-server (Maven Central) started through the project's
launcher, scripts/mongo-test-server/; scripts/mongo-test-server.sh resolves its classpath and
compiles the launcher once, cached under ~/.cache/session-analytics/. With TEST_MONGODB_URL set
(a real MongoDB, e.g. a replica set started with Docker), `mongo_for_tests()` hands out databases
of that server instead; each name carries the run's prefix and is dropped at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
MONGO_TEST_SERVER_SCRIPT = ROOT / "scripts" / "mongo-test-server.sh"
MONGO_JAVA_SERVER_VERSION = "1.47.0"


class ServerMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
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
    """One server process that a test may stop and start again on the same port, or pause."""

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
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets and data but answers nothing (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        self._log.close()
        (None if os.environ.get("KEEP_SERVER_LOGS") else shutil.rmtree(self.root, ignore_errors=True))


def mongo_classpath() -> str:
    """The launcher's `java -cp` value (resolved and compiled on first use, then cached)."""
    if not shutil.which("java"):
        raise ServerMissing("java not found: run `make test` (it installs Java 17 and Maven)")
    found = subprocess.run(
        [str(MONGO_TEST_SERVER_SCRIPT)], capture_output=True, text=True, check=False, timeout=600
    )
    if found.returncode != 0:
        raise ServerMissing(f"the MongoDB-wire test server could not be prepared: {found.stderr.strip()}")
    return found.stdout.strip().splitlines()[-1]


class MongoTestServer(ServerProcess):
    """mongo-java-server on a free loopback port. In memory by default (its data is gone when
    the process ends); `persistent=True` keeps it in an H2 file, so a restart finds it again."""

    name = "mongo"
    _classpath: str | None = None

    def __init__(self, root: Path | None = None, *, persistent: bool = False) -> None:
        if MongoTestServer._classpath is None:
            MongoTestServer._classpath = mongo_classpath()
        super().__init__(root)
        self.persistent = persistent

    def command(self) -> list[str]:
        assert MongoTestServer._classpath is not None
        store = ["--h2", str(self.root / "data.mv")] if self.persistent else []
        return [
            "java",
            "-cp",
            MongoTestServer._classpath,
            "MongoTestServer",
            "--port",
            str(self.port),
            *store,
        ]

    def url(self, database: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}"


class ExternalMongo:
    """The server of TEST_MONGODB_URL: databases named with this run's prefix, dropped at close."""

    def __init__(self, url: str) -> None:
        self.base = urlsplit(url)
        self.prefix = f"sa_test_{uuid.uuid4().hex[:8]}_"
        self.names: set[str] = set()

    def url(self, database: str) -> str:
        name = f"{self.prefix}{database}"[:63]
        self.names.add(name)
        return urlunsplit(self.base._replace(path=f"/{name}"))

    def start(self) -> None:
        return None

    def close(self) -> None:
        from pymongo import MongoClient

        client: MongoClient[dict[str, object]] = MongoClient(urlunsplit(self.base._replace(path="/")))
        try:
            for name in client.list_database_names():
                if name.startswith(self.prefix):
                    client.drop_database(name)
        finally:
            client.close()


def mongo_for_tests() -> MongoTestServer | ExternalMongo:
    """The MongoDB the suite and the benchmarks use: TEST_MONGODB_URL's, or a test server."""
    url = os.environ.get("TEST_MONGODB_URL")
    if url:
        return ExternalMongo(url)
    return MongoTestServer()


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


AnyMongo = MongoTestServer | ExternalMongo
