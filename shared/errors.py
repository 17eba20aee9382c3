"""Domain errors; web turns each into the error envelope of DESIGN §3 in one middleware."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the API answers with an envelope."""

    http_status = 500
    error_code = "500"
    error_message = "Internal error"

    def __init__(self, developer_message: str | None = None, *, error_message: str | None = None):
        super().__init__(developer_message or self.error_message)
        self.developer_message = developer_message or self.error_message
        if error_message is not None:
            self.error_message = error_message

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides the envelope (e.g. `Retry-After`)."""
        return {}


class BadRequest(ServiceError):
    http_status = 400
    error_code = "400"
    error_message = "Malformed request"


class Unauthorized(ServiceError):
    http_status = 401
    error_code = "401"
    error_message = "Not authorized"


class WrongCredentials(ServiceError):
    http_status = 401
    error_code = "4010101"
    error_message = "Wrong username or password"


class AccountLocked(ServiceError):
    http_status = 401
    error_code = "4010102"
    error_message = "Account locked after repeated wrong passwords; try again in 30 minutes"


class NotEventHost(ServiceError):
    http_status = 403
    error_code = "4030201"
    error_message = "Not Event Host"


class WrongCredentialKind(ServiceError):
    http_status = 403
    error_code = "403"
    error_message = "This credential may not be used here"


class NotFound(ServiceError):
    http_status = 404
    error_code = "404"
    error_message = "Not found"


class EventNotFound(ServiceError):
    http_status = 404
    error_code = "4040200"
    error_message = "Event Not Found"


class SessionNotFound(ServiceError):
    http_status = 404
    error_code = "404800"
    error_message = "Session Not Found"


class MethodNotAllowed(ServiceError):
    http_status = 405
    error_code = "405"
    error_message = "Method not allowed"

    def __init__(self, developer_message: str | None = None, *, allowed: frozenset[str] = frozenset()):
        super().__init__(developer_message)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(sorted(self.allowed))}


class RequestTimeout(ServiceError):
    """The client did not send its whole body within the request time limit."""

    http_status = 408
    error_code = "408"
    error_message = "The request body did not arrive in time"


class NotAcceptable(ServiceError):
    """A CSV route asked for another media type (its `Accept` excludes text/csv)."""

    http_status = 406
    error_code = "406"
    error_message = "This route answers text/csv only"


class PayloadTooLarge(ServiceError):
    http_status = 400
    error_code = "400"
    error_message = "Request body too large"


class TooManyRequests(ServiceError):
    http_status = 429
    error_code = "429"
    error_message = "Too many attempts; slow down"

    def __init__(self, developer_message: str | None = None, *, retry_after_s: int = 60):
        super().__init__(developer_message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Unavailable(ServiceError):
    http_status = 503
    error_code = "503"
    error_message = "A backing service is unreachable; try again shortly"
    # Long enough for a failover or a queue to drain, short enough for a client to come back soon.
    retry_after_s = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}
