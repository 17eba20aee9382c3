"""Words of the OpenAPI document that belong to no one route: the service, its answer headers
and the credentials it takes."""

from __future__ import annotations

from web.contract.routes import Who

BEARER = {"type": "http", "scheme": "bearer"}
VENDOR = {"type": "apiKey", "in": "header", "name": "AUTHENTICATION"}
SCHEMES = {  # name: (scheme, who presents it, what it is)
    "userBearer": (BEARER, Who.HOST, "A user token from POST /rest/u/login (`sat_...`)."),
    "userAuthenticationHeader": (VENDOR, Who.HOST, "The same user token, vendor style."),
    "ingestKeyBearer": (BEARER, Who.INGEST, "An ingest key (`sak_...`)."),
    "ingestKeyAuthenticationHeader": (VENDOR, Who.INGEST, "The same ingest key, vendor style."),
}
HEADERS = {  # answer headers: the component is named by the wire name without "-"
    "X-Request-Id": "The caller's printable id (<= 64 chars), or a new one.",
    "ETag": "Entity tag of the body; send it back in If-None-Match.",
    "Cache-Control": "`private, no-cache`: revalidate with If-None-Match.",
    "Location": "Where to follow the task.",
    "Retry-After": "Seconds until another attempt may succeed.",
    "Allow": "The methods this path takes.",
    "Content-Disposition": "`attachment; filename=...csv`.",
    "Content-Security-Policy": "Only this server's own assets and requests.",
    "RateLimit-Policy": "On answers to a `/rest/` request carrying a token or ingest key: its limit, "
    '`"host";q=1200;w=60` (user tokens) or `"ingest";q=6000;w=60` (ingest keys), per moving 60 s '
    "(RATE_LIMIT_HOST_PER_MINUTE, RATE_LIMIT_INGEST_PER_MINUTE).",
    "RateLimit": 'Where the credential stands: `"host";r=<requests left>;t=<seconds until one more is '
    "allowed>` (IETF draft-ietf-httpapi-ratelimit-headers). Over the limit: 429 with Retry-After.",
}
# Answer headers that only some answers of an operation carry.
OPTIONAL_HEADERS = frozenset({"RateLimit-Policy", "RateLimit"})
DESCRIPTION = """\
Session analytics of a virtual-event platform for the event's hosts, and attendance ingestion.
Times are ISO 8601 in UTC with `Z`; durations are seconds. Host routes take a user token from
`POST /rest/u/login`, ingestion routes an ingest key, as `Authorization: Bearer <token>` or
`AUTHENTICATION: <token>`; a valid credential of the wrong kind is 403, any other 401. Every
answer carries `X-Request-Id`; errors come as the `ErrorEnvelope`:

| HTTP | errorCode | meaning |\n|---|---|---|
"""
