"""Removal of expired credentials and throttle windows (by query: TTL indexes are not relied on)."""

from __future__ import annotations

from datetime import timedelta

from shared.db import Database
from shared.store import now


async def cleanup_expired(db: Database, grace_s: int = 0) -> dict[str, int]:
    """Delete tokens expired `grace_s` ago or earlier, and finished login-throttle windows."""
    cutoff = now() - timedelta(seconds=grace_s)
    tokens = await db.tokens.delete_many({"expiresAt": {"$lt": cutoff}})
    attempts = await db.login_attempts.delete_many({"expiresAt": {"$lt": now()}})
    return {
        "tokens": tokens.deleted_count,
        "loginWindows": attempts.deleted_count,
    }
