"""The one exception tree of dxflow.

Every error a user can see is one of these, whether the engine runs in-process or
behind HTTP: the server turns an `ApiError` into a JSON envelope carrying its stable
`code`, and the HTTP transport rebuilds the same class from that code. Docker, httpx
and OS errors are translated once, where they arise, and never reach a user.

    DxflowError
    ├── ConfigError               local configuration or key files are unusable
    ├── UsageError                the SDK was used in a way that cannot work
    │   └── EngineClosed              a call on an engine (or its handles) after close()
    └── ApiError                  an operation failed; has .code and .status
        ├── InvalidRequest        422  malformed request, unknown field, bad value or path
        │   └── ChecksumMismatch     460  uploaded bytes do not match their checksum (tus)
        ├── Unauthenticated       401  no, expired, forged or revoked credentials
        ├── PermissionDenied      403  the identity lacks the named permission
        ├── NotFound              404  unknown route or resource
        ├── MethodNotAllowed      405
        ├── RequestTimeout        408  a client without credentials was too slow to send
        ├── Conflict              409  the resource exists, or the engine is in the way
        │   └── WorkflowFailed          a workflow did not come up
        ├── Gone                  410  expired or used-up resource (share links)
        ├── PayloadTooLarge       413
        ├── RangeNotSatisfiable   416
        ├── TooManyRequests       429  rate limited; .details["retry_after"]
        ├── InternalError         500  a bug: the engine logs the cause
        ├── EngineUnavailable     503  the engine cannot be reached (refused, no socket, down)
        │   └── TransportError           the connection broke during a call (reset, TLS,
        │                                a malformed answer): the engine may have acted
        ├── DockerUnavailable     503  the engine answers, but its Docker Engine does not
        ├── TimedOut              504  the operation did not finish in the time given
        └── InsufficientStorage   507  the storage quota is exhausted
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ApiError",
    "ChecksumMismatch",
    "ConfigError",
    "Conflict",
    "DockerUnavailable",
    "DxflowError",
    "EngineClosed",
    "EngineUnavailable",
    "Gone",
    "InsufficientStorage",
    "InternalError",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RangeNotSatisfiable",
    "RequestTimeout",
    "TimedOut",
    "TooManyRequests",
    "TransportError",
    "Unauthenticated",
    "UsageError",
    "WorkflowFailed",
    "error_for_status",
    "error_from_code",
]


class DxflowError(Exception):
    """Base class of every error raised by dxflow."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(DxflowError):
    """The local configuration, engine home or a key file cannot be used."""


class UsageError(DxflowError):
    """The SDK was used in a way that cannot work; the message says what to do instead."""


class EngineClosed(UsageError):
    """The engine (or a handle, stream or channel of it) was used after it was closed."""


class ApiError(DxflowError):
    """An operation failed. `code` is stable across versions and transports."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.code, self.message, self.details))


class InvalidRequest(ApiError):
    code = "invalid_request"
    status = 422


class ChecksumMismatch(InvalidRequest):
    code = "checksum_mismatch"
    status = 460  # tus 1.0's checksum extension says so


class Unauthenticated(ApiError):
    code = "unauthenticated"
    status = 401


class PermissionDenied(ApiError):
    code = "permission_denied"
    status = 403


class NotFound(ApiError):
    code = "not_found"
    status = 404


class MethodNotAllowed(ApiError):
    code = "method_not_allowed"
    status = 405


class RequestTimeout(ApiError):
    code = "request_timeout"
    status = 408


class Conflict(ApiError):
    code = "conflict"
    status = 409


class WorkflowFailed(Conflict):
    code = "workflow_failed"


class Gone(ApiError):
    code = "gone"
    status = 410


class PayloadTooLarge(ApiError):
    code = "payload_too_large"
    status = 413


class RangeNotSatisfiable(ApiError):
    code = "range_not_satisfiable"
    status = 416


class TooManyRequests(ApiError):
    code = "too_many_requests"
    status = 429


class InternalError(ApiError):
    code = "internal_error"
    status = 500


class EngineUnavailable(ApiError):
    code = "engine_unavailable"
    status = 503


class TransportError(EngineUnavailable):
    """The connection broke during a call: the engine may or may not have acted."""

    code = "transport_error"


class DockerUnavailable(ApiError):
    """The engine is up but cannot reach its Docker Engine (see `docker_host`)."""

    code = "docker_unavailable"
    status = 503


class TimedOut(ApiError):
    code = "timed_out"
    status = 504


class InsufficientStorage(ApiError):
    code = "insufficient_storage"
    status = 507


def _subclasses(cls: type[ApiError]) -> list[type[ApiError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def error_from_code(code: str, message: str, details: dict[str, Any] | None = None) -> ApiError:
    """Rebuild the error class a remote engine named by `code`."""
    by_code = {cls.code: cls for cls in _subclasses(ApiError) if cls.__module__ == __name__}
    cls = by_code.get(code, ApiError)
    return cls(message, **(details or {}))


def _rebuild(code: str, message: str, details: dict[str, Any]) -> ApiError:
    return error_from_code(code, message, details)


def error_for_status(status: int, message: str) -> ApiError:
    """The error class of an HTTP status, for answers that carry no error envelope."""
    for cls in _subclasses(ApiError)[1:]:
        if cls.status == status and cls.__module__ == __name__:
            return cls(message)  # the first: the base class of its status (Conflict, ...)
    return ApiError(message)
