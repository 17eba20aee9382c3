"""What goes wrong in a command, said in one line for standard error, with no credentials in it."""

from __future__ import annotations

import os
from collections.abc import Iterable

from pydantic import ValidationError

from shared.errors import ServiceError

URL_SETTINGS = ("MONGODB_URL", "REDIS_URL")


def without_credentials(url: str) -> str:
    """`url` with its user and password replaced by `***` (all before the last `@` of the authority)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "***@" + url.rsplit("@", 1)[1] if "@" in url else url
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}://{rest}"


def configured_urls() -> dict[str, str]:
    """MONGODB_URL and REDIS_URL as the environment sets them (names are case-insensitive)."""
    urls: dict[str, str] = {}
    for name, value in os.environ.items():
        if name.upper() in URL_SETTINGS:
            urls[name.upper()] = value
    return urls


def _secrets(urls: Iterable[str]) -> list[str]:
    """The credential parts of these URLs, longest first, as they could appear in a message."""
    from urllib.parse import unquote

    found: set[str] = set()
    for url in urls:
        rest = url.partition("://")[2] or url
        if "@" not in rest:
            continue
        userinfo = rest.rsplit("@", 1)[0]
        _, _, password = userinfo.partition(":")
        for part in (userinfo, password, unquote(password)):
            if len(part) >= 3:
                found.add(part)
    return sorted(found, key=len, reverse=True)


def one_line(message: str, urls: Iterable[str] = ()) -> str:
    """The message on one line, every credential of `urls` replaced by `***`."""
    urls = list(urls)
    for url in urls:
        message = message.replace(url, without_credentials(url))
    for secret in _secrets(urls):
        message = message.replace(secret, "***")
    return " ".join(message.split())


def describe(err: BaseException, urls: dict[str, str]) -> str:
    """A sentence a user can act on, for the errors a command meets in normal use."""
    import pymongo.errors as mongo

    mongodb = without_credentials(urls.get("MONGODB_URL", "mongodb://127.0.0.1:27017/session_analytics"))
    redis_url = without_credentials(urls.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    if isinstance(err, ServiceError):
        return err.developer_message
    if isinstance(err, ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in err.errors(include_url=False, include_input=False)
        )
        return f"invalid setting: {fields}"
    if isinstance(err, mongo.InvalidURI | mongo.ConfigurationError):
        return f"MONGODB_URL {mongodb} is not usable: {err}"
    if isinstance(err, mongo.OperationFailure) and err.code in (13, 18):
        reason = (err.details or {}).get("errmsg") or str(err)
        return f"MongoDB at {mongodb} refused access: {reason}"
    if isinstance(err, mongo.ServerSelectionTimeoutError | mongo.ConnectionFailure):
        # PyMongo appends its timeouts and the whole topology; the first server's reason is enough.
        reason = str(err).split(", Timeout:", 1)[0].split(" (configured timeouts", 1)[0]
        return f"MongoDB at {mongodb} unreachable: {reason}"
    redis_reason = _redis_reason(err)
    if redis_reason is not None:
        return f"Redis at {redis_url} {redis_reason}"
    if isinstance(err, OSError) and err.filename is not None:
        return f"cannot read {err.filename}: {err.strerror or err}"
    return f"{type(err).__name__}: {err} (--debug shows the traceback)"


def _redis_reason(err: BaseException) -> str | None:
    import kombu.exceptions
    import redis.exceptions

    if isinstance(err, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return f"refused the password: {err}"
    if isinstance(err, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"unreachable: {err}"
    if isinstance(err, kombu.exceptions.OperationalError):
        return f"unreachable: {err}"
    return None
