"""Data the service stores as one compressed JSON blob: read and written whole, never queried
by field (attendee pages, a session's unions and viewers series, inbox batches)."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from bson import Binary


def pack(value: Any) -> Binary:
    """orjson, then zlib at its fastest level: these blobs are rewritten on every rollup."""
    return Binary(zlib.compress(orjson.dumps(value), 1))


def unpack(data: bytes) -> Any:
    return orjson.loads(zlib.decompress(data))
