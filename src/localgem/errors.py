"""Google's canonical error codes as one exception hierarchy.

Services raise these; the HTTP layer renders every one the same way, as
``{"error": {"code", "message", "status", "details"}}`` with the canonical HTTP status.
"""

from __future__ import annotations

from typing import Any, ClassVar

SERVICE = "generativelanguage.googleapis.com"


class ApiError(Exception):
    http_status: ClassVar[int] = 500
    status: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.http_status, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def to_status(self) -> dict[str, Any]:
        """As a google.rpc.Status (inside operations and batch results): the gRPC code number."""
        status: dict[str, Any] = {"code": RPC_CODES.get(self.status, 2), "message": self.message}
        if self.details:
            status["details"] = self.details
        return status


#: google.rpc.Code numbers of the canonical statuses.
RPC_CODES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


class InvalidArgument(ApiError):
    http_status, status = 400, "INVALID_ARGUMENT"


class FailedPrecondition(ApiError):
    http_status, status = 400, "FAILED_PRECONDITION"


class OutOfRange(ApiError):
    http_status, status = 400, "OUT_OF_RANGE"


class Unauthenticated(ApiError):
    http_status, status = 401, "UNAUTHENTICATED"


class PermissionDenied(ApiError):
    http_status, status = 403, "PERMISSION_DENIED"


class NotFound(ApiError):
    http_status, status = 404, "NOT_FOUND"


class AlreadyExists(ApiError):
    http_status, status = 409, "ALREADY_EXISTS"


class Aborted(ApiError):
    http_status, status = 409, "ABORTED"


class ResourceExhausted(ApiError):
    http_status, status = 429, "RESOURCE_EXHAUSTED"


class Cancelled(ApiError):
    http_status, status = 499, "CANCELLED"


class Internal(ApiError):
    http_status, status = 500, "INTERNAL"


class DataLoss(ApiError):
    http_status, status = 500, "DATA_LOSS"


class Unimplemented(ApiError):
    http_status, status = 501, "UNIMPLEMENTED"


class Unavailable(ApiError):
    http_status, status = 503, "UNAVAILABLE"


class DeadlineExceeded(ApiError):
    http_status, status = 504, "DEADLINE_EXCEEDED"


def error_info(reason: str, **metadata: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": SERVICE, **metadata},
    }


def bad_request(field: str, description: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": field, "description": description}],
    }


def localized(message: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}


def invalid_field(field: str, message: str) -> InvalidArgument:
    """A 400 about one request field, with the field named in ``BadRequest`` details."""
    return InvalidArgument(message, [bad_request(field, message)])


def not_supported(field: str, what: str | None = None) -> InvalidArgument:
    """A field of the API that this server parses but does not implement (yet): refused, never ignored."""
    message = f"{what or field} is not supported by this server (field '{field}')."
    return invalid_field(field, message)
