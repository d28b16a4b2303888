"""google.rpc.Status: how an error travels inside a resource (a file's processing error, an operation's
outcome, a batch item's failure), as opposed to an HTTP error response."""

from __future__ import annotations

from typing import Any

from localgem import errors
from localgem.types.wire import WireModel


class Status(WireModel):
    """``code`` is the canonical gRPC code number (3 INVALID_ARGUMENT), not an HTTP status."""

    code: int
    message: str | None = None
    details: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, exc: errors.ApiError) -> Status:
        return cls.model_validate(exc.to_status())
