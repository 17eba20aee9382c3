"""Liveness and readiness answers."""

from __future__ import annotations

from typing import Literal

from web.contract.common import Answer


class Health(Answer):
    """The process is alive."""

    status: Literal["ok"]


class Checks(Answer):
    """Each backing service answered."""

    mongodb: Literal["ok"]
    redis: Literal["ok"]


class Ready(Answer):
    """MongoDB and Redis are reachable."""

    status: Literal["ready"]
    checks: Checks
