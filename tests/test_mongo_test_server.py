"""Where the MongoDB-wire test server differs from MongoDB, pinned (DESIGN §6: each gap found gets
a test that pins what the code relies on).

On the test server each test asserts the test server's behaviour; with TEST_MONGODB_URL, the
same test asserts MongoDB's. So a test server that closes a gap, or a MongoDB that opens one,
fails here first, and the comments say which code stays clear of the gap and how.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import mongomock.collection
import pytest
from bson import Binary, Int64
from bson.binary import UUID_SUBTYPE
from pymongo import MongoClient, UpdateOne, monitoring
from pymongo.database import Database as MongoDatabase
from pymongo.errors import ConfigurationError, DuplicateKeyError, OperationFailure

from shared.db import connect, embedded_client
from shared.settings import Settings
from tests.servers import MONGO_JAVA_SERVER_VERSION, MONGO_TEST_SERVER_SCRIPT, AnyMongo, MongoTestServer

Doc = dict[str, Any]
COMMAND_NOT_FOUND = 59


class Commands(monitoring.CommandListener):
    """The commands a client sends, by name, with their bodies."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Doc]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def commands() -> Commands:
    return Commands()


@pytest.fixture
def mongo_client(mongo: AnyMongo, commands: Commands) -> Iterator[MongoClient[Doc]]:
    """A PyMongo client on a database of this test alone, dropped afterwards."""
    client: MongoClient[Doc] = MongoClient(
        mongo.url(f"gaps_{uuid.uuid4().hex[:10]}"), tz_aware=True, event_listeners=[commands]
    )
    yield client
    client.drop_database(client.get_default_database())
    client.close()


@pytest.fixture
def store(mongo_client: MongoClient[Doc]) -> MongoDatabase[Doc]:
    return mongo_client.get_default_database()


def on_test_server(mongo: AnyMongo) -> bool:
    return isinstance(mongo, MongoTestServer)


# --- indexes -------------------------------------------------------------------------------------


def test_a_partial_unique_index_is_accepted_and_enforced_on_every_document_by_the_test_server(
    mongo: AnyMongo, store: MongoDatabase[Doc]
) -> None:
    store.rows.create_index("key", unique=True, partialFilterExpression={"live": True})
    declared = {i["name"]: i for i in store.rows.list_indexes()}["key_1"]
    assert declared["partialFilterExpression"] == {"live": True}  # accepted and listed on both

    store.rows.insert_one({"key": "k", "live": False})
    if on_test_server(mongo):
        # The filter is ignored: the index is a full unique index.
        with pytest.raises(DuplicateKeyError):
            store.rows.insert_one({"key": "k", "live": False})
        assert store.rows.count_documents({}) == 1
    else:
        store.rows.insert_one({"key": "k", "live": False})  # outside the filter: not indexed
        assert store.rows.count_documents({}) == 2


def test_a_ttl_index_is_accepted_but_the_test_server_has_no_ttl_monitor(
    mongo: AnyMongo, store: MongoDatabase[Doc]
) -> None:
    store.expiring.create_index("expiresAt", expireAfterSeconds=0)
    declared = {i["name"]: i for i in store.expiring.list_indexes()}["expiresAt_1"]
    assert declared["expireAfterSeconds"] == 0
    store.expiring.insert_one({"_id": "old", "expiresAt": datetime.now(UTC) - timedelta(days=1)})

    metrics = store.command("serverStatus").get("metrics", {})
    if on_test_server(mongo):
        # No TTL monitor to report (documents were seen to stay past 65 s, more than one of
        # MongoDB's 60-second TTL passes): what expires goes by query, in the cleanup task.
        assert "ttl" not in metrics
        assert store.expiring.find_one({"_id": "old"}) is not None
    else:
        assert "passes" in metrics["ttl"]  # MongoDB's TTL monitor, a pass every 60 s


async def test_the_indexes_created_at_start_up_are_neither_partial_nor_ttl(mongo: AnyMongo) -> None:
    """What the two gaps above leave the code: full indexes only, and expiry by query."""
    db = connect(Settings(mongodb_url=mongo.url(f"gaps_{uuid.uuid4().hex[:10]}")))
    try:
        await db.ensure_indexes()
        names = await db.db.list_collection_names()
        assert names  # ensure_indexes created the collections it indexes
        for name in names:
            for index in await db.db[name].list_indexes().to_list(None):
                assert "partialFilterExpression" not in index, (name, index)
                assert "expireAfterSeconds" not in index, (name, index)
    finally:
        await db.client.drop_database(db.db.name)
        db.close()


# --- the handshake and what the server says it is -------------------------------------------------


def test_pymongo_connects_though_the_test_server_has_no_hello_command(
    mongo: AnyMongo, store: MongoDatabase[Doc]
) -> None:
    assert store.command("ping")["ok"] == 1
    legacy = store.command("isMaster")
    assert legacy["ismaster"] is True
    if on_test_server(mongo):
        with pytest.raises(OperationFailure) as refused:
            store.command("hello")
        assert refused.value.code == COMMAND_NOT_FOUND
    else:
        assert store.command("hello")["isWritablePrimary"] is True


def test_the_test_server_reports_mongodb_4_4_and_wire_version_9(
    mongo: AnyMongo, store: MongoDatabase[Doc]
) -> None:
    build = store.command("buildInfo")
    wire = store.command("isMaster")["maxWireVersion"]
    if on_test_server(mongo):
        # What PyMongo 4.20 needs at least; mongo-java-server's own versions report at most 8.
        assert (build["version"], build["versionArray"], wire) == ("4.4.0", [4, 4, 0], 9)
    else:
        assert int(build["version"].split(".")[0]) >= 7  # production is MongoDB 7.0+
        assert wire >= 21  # MongoDB 7.0's wire version


def test_the_test_server_has_no_explain_so_index_use_is_proven_from_the_commands_sent(
    mongo: AnyMongo, store: MongoDatabase[Doc]
) -> None:
    store.sessions.insert_one({"_id": "s1", "eventId": "ev1"})
    explain = {"find": "sessions", "filter": {"_id": "s1"}}
    if on_test_server(mongo):
        with pytest.raises(OperationFailure) as refused:
            store.command("explain", explain)
        assert refused.value.code == COMMAND_NOT_FOUND
    else:
        assert "winningPlan" in store.command("explain", explain)["queryPlanner"]


# --- reads and writes ----------------------------------------------------------------------------


async def test_a_projection_dict_given_to_the_embedded_store_gains_an_id_the_test_server_refuses(
    mongo: AnyMongo, store: MongoDatabase[Doc]
) -> None:
    """mongomock adds `_id: 1` to the projection dict it is given; an exclusion projection with
    `_id: 1` fails on the test server (code 31253). So the embedded store as the service opens
    it (shared.db.embedded_client) works on a copy, and a projection kept in a module (as
    web/sessions.py's `_WITHOUT_VIEWERS`) stays as written."""
    shared_projection = {"viewers": 0}
    method = mongomock.collection.Collection._copy_only_fields
    bare = getattr(method, "__wrapped__", method)  # mongomock's own, without the service's copy
    doc = {"_id": "s1", "viewers": [3], "title": "T"}
    collection: Any = mongomock.MongoClient().gaps.sessions
    assert bare(collection, doc, shared_projection, dict) == {
        "_id": "s1",
        "title": "T",
    }
    assert shared_projection == {"viewers": 0, "_id": 1}  # changed in place by mongomock itself

    kept = {"viewers": 0}
    embedded: Any = embedded_client()["gaps"]  # the store `make demo` runs on
    await embedded.sessions.insert_one({"_id": "s1", "viewers": [3], "title": "T"})
    assert await embedded.sessions.find_one({"_id": "s1"}, kept) == {"_id": "s1", "title": "T"}
    assert kept == {"viewers": 0}

    store.sessions.insert_one({"_id": "s1", "viewers": [3], "title": "T"})
    assert store.sessions.find_one({"_id": "s1"}, {"viewers": 0}) == {"_id": "s1", "title": "T"}
    if on_test_server(mongo):
        with pytest.raises(OperationFailure) as refused:
            store.sessions.find_one({"_id": "s1"}, shared_projection)
        assert refused.value.code == 31253
    else:
        assert store.sessions.find_one({"_id": "s1"}, shared_projection) == {"_id": "s1", "title": "T"}


def _transactions_supported(store: MongoDatabase[Doc]) -> bool:
    hello = store.command("hello")
    return "setName" in hello or hello.get("msg") == "isdbgrid"


def test_the_test_server_has_no_multi_document_transactions(
    mongo: AnyMongo, mongo_client: MongoClient[Doc], store: MongoDatabase[Doc]
) -> None:
    """One document per all-or-nothing change (DESIGN §6): nothing in the code opens one."""
    if on_test_server(mongo):
        # PyMongo refuses: the server advertises no logical sessions.
        with pytest.raises(ConfigurationError, match="Sessions are not supported"):
            with mongo_client.start_session() as session, session.start_transaction():
                store.pairs.insert_one({"_id": "a"}, session=session)
        assert store.pairs.count_documents({}) == 0
        # A driver that sent the transaction fields anyway gets them ignored: the write applies
        # at once, and there is no abortTransaction to take it back.
        lsid = {"id": Binary(uuid.uuid4().bytes, UUID_SUBTYPE)}
        transaction = {"lsid": lsid, "txnNumber": Int64(1), "autocommit": False}
        store.command(
            {"insert": "pairs", "documents": [{"_id": "a"}], **transaction, "startTransaction": True}
        )
        with pytest.raises(OperationFailure) as refused:
            mongo_client.admin.command({"abortTransaction": 1, **transaction})
        assert refused.value.code == COMMAND_NOT_FOUND
        assert store.pairs.count_documents({}) == 1
    elif _transactions_supported(store):
        with mongo_client.start_session() as session, session.start_transaction():
            store.pairs.insert_one({"_id": "a"}, session=session)
            session.abort_transaction()
        assert store.pairs.count_documents({}) == 0
    else:  # a standalone MongoDB: transactions need a replica set
        with pytest.raises(OperationFailure):
            with mongo_client.start_session() as session, session.start_transaction():
                store.pairs.insert_one({"_id": "a"}, session=session)


def test_a_bulk_of_2000_updates_by_id_matches_all_in_as_many_commands_as_the_server_allows(
    mongo: AnyMongo, store: MongoDatabase[Doc], commands: Commands
) -> None:
    """The test server advertises maxWriteBatchSize 1,000 (MongoDB: 100,000), so PyMongo cuts a
    bulk of more statements into commands of 1,000 there: round trips counted on the test server
    for such bulks are more than MongoDB's. Every statement still applies, in order."""
    store.sessions.insert_many([{"_id": f"s{n:04d}", "n": 0} for n in range(2000)])
    commands.sent.clear()
    done = store.sessions.bulk_write(
        [UpdateOne({"_id": f"s{n:04d}"}, {"$set": {"n": n + 1}}) for n in range(2000)]
    )
    assert (done.matched_count, done.modified_count) == (2000, 2000)
    assert store.sessions.find_one({"_id": "s1999"}) == {"_id": "s1999", "n": 2000}

    statements = [len(body["updates"]) for name, body in commands.sent if name == "update"]
    limit = store.command("isMaster")["maxWriteBatchSize"]
    if on_test_server(mongo):
        assert (limit, statements) == (1000, [1000, 1000])
    else:
        assert (limit, statements) == (100_000, [2000])


# --- the test server's own process ----------------------------------------------------------------


def _write_and_restart(server: MongoTestServer) -> list[Doc]:
    """Write one document, stop the server, start it again: what it still holds."""
    server.start()
    try:
        client: MongoClient[Doc] = MongoClient(server.url("kept"))
        client.kept.sessions.insert_one({"_id": "s1", "title": "before the restart"})
        client.close()
        server.stop()
        server.start()
        client = MongoClient(server.url("kept"))
        found = list(client.kept.sessions.find())
        client.close()
        return found
    finally:
        server.close()


def _server_root(tmp_path: Path) -> Path:
    root = tmp_path / "server"  # the server removes its folder when it closes
    root.mkdir()
    return root


def test_the_memory_backend_loses_its_data_on_restart(tmp_path: Path) -> None:
    assert _write_and_restart(MongoTestServer(_server_root(tmp_path))) == []


def test_the_h2_backend_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    """What a test that stops the server needs (tests/test_mongo_outage.py): data that survives."""
    found = _write_and_restart(MongoTestServer(_server_root(tmp_path), persistent=True))
    assert found == [{"_id": "s1", "title": "before the restart"}]


def _prepare(cache: Path) -> tuple[str, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [str(MONGO_TEST_SERVER_SCRIPT), str(cache)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return done.stdout, done.stderr, time.monotonic() - started


def test_the_launcher_script_prepares_an_empty_cache_once_and_then_serves_from_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first_out, first_err, _ = _prepare(cache)
    classpath = first_out.strip().splitlines()[-1]
    entries = classpath.split(":")
    assert entries[0] == str(cache / "classes")
    assert (cache / "classes" / "MongoTestServer.class").is_file()
    assert all(Path(entry).exists() for entry in entries), classpath
    assert any(f"mongo-java-server-{MONGO_JAVA_SERVER_VERSION}.jar" in entry for entry in entries)
    assert f"mongo-java-server {MONGO_JAVA_SERVER_VERSION} ready in {cache}" in first_err
    compiled = (cache / "classes" / "MongoTestServer.class").stat().st_mtime_ns

    second_out, second_err, seconds = _prepare(cache)
    assert second_out == first_out
    assert second_err == ""  # nothing resolved, compiled or installed
    assert (cache / "classes" / "MongoTestServer.class").stat().st_mtime_ns == compiled
    assert seconds < 2.0
