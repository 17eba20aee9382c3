"""Removal of expired credentials, throttle windows and replaced rollup documents (no TTL indexes)."""

from __future__ import annotations

from datetime import timedelta

from shared.db import Database
from shared.store import now


async def cleanup_expired(db: Database, grace_s: int = 0) -> dict[str, int]:
    """Delete tokens expired `grace_s` ago or earlier, and finished login-throttle windows."""
    cutoff = now() - timedelta(seconds=grace_s)
    from worker.rollup import cleanup_garbage

    tokens = await db.tokens.delete_many({"expiresAt": {"$lt": cutoff}})
    attempts = await db.login_attempts.delete_many({"expiresAt": {"$lt": now()}})
    garbage = await cleanup_garbage(db)
    return {
        "tokens": tokens.deleted_count,
        "loginWindows": attempts.deleted_count,
        "replacedRollupDocuments": garbage,
    }
