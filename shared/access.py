"""Who may see what: the host check of DESIGN §3 as pure functions over stored documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.security import HOST_ROLES

USER_TOKEN_PREFIX = "sat_"
INGEST_KEY_PREFIX = "sak_"


@dataclass(frozen=True, slots=True)
class HostPrincipal:
    """A logged-in user, as snapshotted into the token document at login."""

    user_id: str
    role: str
    event_ids: frozenset[str] = field(default_factory=frozenset)
    organizer_ids: frozenset[str] = field(default_factory=frozenset)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IngestPrincipal:
    key_id: str
    event_ids: frozenset[str] | None  # None: every event


def may_host(principal: HostPrincipal, event: Mapping[str, object]) -> bool:
    """`event`: a stored event, or the fields of it that the check reads (`_id`, `organizerId`)."""
    if principal.role not in HOST_ROLES:
        return False
    if principal.role == "SUPER_ADMIN":
        return True
    if principal.role == "ORGANIZER_ADMIN":
        return event.get("organizerId") in principal.organizer_ids
    return event.get("_id") in principal.event_ids


def may_ingest(principal: IngestPrincipal, event_id: str) -> bool:
    return principal.event_ids is None or event_id in principal.event_ids
