"""The gateway's errors: each is an HTTP status (and a gRPC code) with a one-line reason.

    GatewayError            500  INTERNAL: the service failed; the job id is in the message
    ├── BadRequest          400  INVALID_INPUT: the request does not parse or fit the model
    ├── Unauthenticated     401  a token is missing, unknown or revoked
    ├── Forbidden           403  UNAUTHORIZED: the caller's tenant may not use the model
    ├── NotFound            404  MODEL_NOT_FOUND / VERSION_NOT_FOUND, or no such path/job
    ├── TooLarge            413  TOO_LARGE: the body or the job is bigger than allowed
    ├── TooManyRequests     429  over the tenant's concurrency or rate limit (Retry-After)
    ├── Unavailable         503  the broker (or the registry) cannot be reached
    └── NoAnswer            504  EXPIRED, or no answer in time; names the job id

A worker's error Result becomes one of these by its code (:func:`from_code`), so the
status a caller sees says whose the mistake was. Every error answers OIP's
``{"error": "..."}`` body.
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """Root of the gateway's errors; ``status`` is the HTTP status it answers."""

    status: ClassVar[int] = 500
    grpc: ClassVar[str] = "INTERNAL"  # the name of the grpc.StatusCode it answers


class BadRequest(GatewayError):
    status = 400
    grpc = "INVALID_ARGUMENT"


class Unauthenticated(GatewayError):
    status = 401
    grpc = "UNAUTHENTICATED"


class Forbidden(GatewayError):
    status = 403
    grpc = "PERMISSION_DENIED"


class NotFound(GatewayError):
    status = 404
    grpc = "NOT_FOUND"


class TooLarge(GatewayError):
    status = 413
    grpc = "RESOURCE_EXHAUSTED"


class TooManyRequests(GatewayError):
    """Over a limit: ``retry_after_s`` is when a retry may succeed (the Retry-After header)."""

    status = 429
    grpc = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(GatewayError):
    status = 503
    grpc = "UNAVAILABLE"


class NoAnswer(GatewayError):
    status = 504
    grpc = "DEADLINE_EXCEEDED"


_BY_CODE: dict[str, type[GatewayError]] = {
    "INVALID_INPUT": BadRequest,
    "UNAUTHORIZED": Forbidden,
    "MODEL_NOT_FOUND": NotFound,
    "VERSION_NOT_FOUND": NotFound,
    "TOO_LARGE": TooLarge,
    "EXPIRED": NoAnswer,
}


def from_code(code: str, message: str) -> GatewayError:
    """The error a worker's error Result with ``code`` answers (unknown codes: 500)."""
    return _BY_CODE.get(code, GatewayError)(message)
