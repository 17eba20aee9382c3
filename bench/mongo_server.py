"""The MongoDB a benchmark runs on, as the tests choose it: TEST_MONGODB_URL's server, or a test
server of the benchmark's own; and the line that names it beside the figures."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlunsplit

from pymongo import MongoClient

from tests.servers import MONGO_JAVA_SERVER_VERSION, AnyMongo, MongoTestServer, mongo_for_tests


def start_mongo() -> AnyMongo:
    """A started server; `close()` stops it (a test server) or drops the run's databases
    (TEST_MONGODB_URL's server)."""
    server = mongo_for_tests()
    server.start()
    return server


def describe(server: AnyMongo) -> str:
    """Which server the figures come from. The external server's URL is not printed (it may
    carry credentials): its own buildInfo version is."""
    if isinstance(server, MongoTestServer):
        backend = "H2" if server.persistent else "memory"
        return f"mongo-java-server {MONGO_JAVA_SERVER_VERSION} ({backend} backend) on 127.0.0.1:{server.port}"
    client: MongoClient[dict[str, Any]] = MongoClient(urlunsplit(server.base._replace(path="/")))
    try:
        version = client.admin.command("buildInfo")["version"]
    finally:
        client.close()
    return f"MongoDB {version} (TEST_MONGODB_URL; databases prefixed {server.prefix}, dropped after)"


def server_pid(server: AnyMongo) -> int | None:
    """The test server's process, whose CPU time a benchmark may count; None for an external one."""
    if isinstance(server, MongoTestServer) and server.process is not None:
        return server.process.pid
    return None
