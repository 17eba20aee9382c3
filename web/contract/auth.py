"""Login: the body is shared.models.LoginIn; the answer is a new user token."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.security import ROLES
from web.contract.common import Answer, Id, UtcTime

UserRole = Literal[ROLES]  # type: ignore[valid-type]


class LoginAnswer(Answer):
    """A new user token."""

    access_token: str = Field(pattern="^sat_", description="Send as `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"]
    expires_in: UtcTime = Field(description="When the token expires (a UTC time, as the vendor names it).")
    userId: Id
    userRole: UserRole
