"""Permission and ListPermissionsResponse, as on the wire (corpora and tuned models share them)."""

from __future__ import annotations

from localgem.types.wire import WireModel


class Permission(WireModel):
    name: str | None = None
    grantee_type: str | None = None
    email_address: str | None = None
    role: str | None = None


class ListPermissionsResponse(WireModel):
    permissions: list[Permission] | None = None
    next_page_token: str | None = None
