"""Sharing a resource (a corpus, a tuned model) between projects: roles, and the permissions that grant them.

The project that made a resource owns it; a permission grants a project (a USER or GROUP grantee, whose email
address names the project: ``team`` or ``team@…``) or EVERYONE a role. READER may read (and generate with a tuned
model), WRITER may also write and share, OWNER may also rename, delete and manage every permission. A resource a
project has no role on is not found (404); a role too weak for the call is PERMISSION_DENIED (403).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from localgem import errors, names
from localgem.storage.permissions import PermissionRepository
from localgem.storage.records import PermissionRecord
from localgem.types.field_mask import update_paths
from localgem.types.paging import paginate
from localgem.types.permissions import ListPermissionsResponse, Permission

RANK = {"READER": 1, "WRITER": 2, "OWNER": 3}
GRANTEE_TYPES = ("USER", "GROUP", "EVERYONE")


class Grants:
    """The permissions of one collection (``corpora``, ``tunedModels``)."""

    def __init__(self, repository: PermissionRepository, collection: str, clock: Callable[[], datetime]) -> None:
        self._repo = repository
        self._collection = collection
        self._clock = clock

    async def role(self, project: str, owner: str, resource_id: str) -> str:
        """``project``'s strongest role on a resource ``owner`` owns; "" for none."""
        if owner == project:
            return "OWNER"
        roles = await self._repo.roles(resource_id, project)
        return max(roles, key=RANK.__getitem__) if roles else ""

    async def require(
        self, project: str, owner: str | None, resource_id: str, need: str, not_found: errors.ApiError
    ) -> str:
        """``project``'s role, if it is at least ``need``; ``not_found`` (the resource is missing, or not shared
        with the project) or PERMISSION_DENIED otherwise."""
        role = await self.role(project, owner, resource_id) if owner is not None else ""
        if not role:
            raise not_found
        if RANK[role] < RANK[need]:
            raise errors.PermissionDenied(
                f"Permission denied: this project is a {role} of {self._collection}/{resource_id}; "
                f"the call needs {need}."
            )
        return role

    async def create(self, granter: str, resource_id: str, body: Permission) -> Permission:
        role = checked_role(body.role)
        if RANK[role] > RANK[granter]:
            raise errors.PermissionDenied(f"A {granter} cannot grant the role {role}.")
        grantee_type = body.grantee_type or "USER"
        if grantee_type not in GRANTEE_TYPES:
            raise errors.invalid_field("grantee_type", f"grantee_type must be one of {', '.join(GRANTEE_TYPES)}.")
        if grantee_type == "EVERYONE":
            if body.email_address:
                raise errors.invalid_field("email_address", "email_address is not set for the grantee EVERYONE.")
            if role != "READER":
                raise errors.invalid_field("role", "EVERYONE can only be granted the role READER.")
            grantee = None
        else:
            if not body.email_address:
                raise errors.invalid_field("email_address", f"email_address is required for a {grantee_type} grantee.")
            grantee = project_of(body.email_address)
        permission = PermissionRecord(
            resource_id, names.new_id(), grantee_type, body.email_address, grantee, role, self._clock()
        )
        await self._repo.add_permission(permission)
        return self._wire(permission)

    async def get(self, resource_id: str, permission: str) -> Permission:
        return self._wire(await self._find(resource_id, permission))

    async def list(self, resource_id: str, page_size: int | None, page_token: str | None) -> ListPermissionsResponse:
        permissions = await self._repo.permissions(resource_id)
        page, token = paginate(permissions, page_size, page_token, default_size=10, max_size=100)
        return ListPermissionsResponse(permissions=[self._wire(p) for p in page] or None, next_page_token=token)

    async def update(self, resource_id: str, permission: str, body: Permission, update_mask: str | None) -> Permission:
        found = await self._find(resource_id, permission)
        update_paths(update_mask, body, ("role",), "Only the role of a Permission can be updated.")
        role = checked_role(body.role)
        if found.grantee_type == "EVERYONE" and role != "READER":
            raise errors.invalid_field("role", "EVERYONE can only be granted the role READER.")
        await self._repo.set_role(resource_id, found.id, role)
        return self._wire(replace(found, role=role))

    async def delete(self, granter: str, resource_id: str, permission: str) -> None:
        found = await self._find(resource_id, permission)
        if RANK[found.role] > RANK[granter]:
            raise errors.PermissionDenied(f"Only an OWNER can remove an {found.role} permission.")
        await self._repo.remove_permission(resource_id, found.id)

    async def _find(self, resource_id: str, permission: str) -> PermissionRecord:
        permission_id = names.lookup_id(permission, "permissions")
        found = await self._repo.permission(resource_id, permission_id)
        if found is None:
            raise errors.NotFound(f"Permission {self._collection}/{resource_id}/permissions/{permission_id} not found.")
        return found

    def _wire(self, record: PermissionRecord) -> Permission:
        return Permission(
            name=f"{self._collection}/{record.resource_id}/permissions/{record.id}",
            grantee_type=record.grantee_type,
            email_address=record.email_address,
            role=record.role,
        )


def checked_role(value: str | None) -> str:
    if value not in RANK:
        raise errors.invalid_field("role", "role must be READER, WRITER or OWNER.")
    return value


def project_of(email: str) -> str:
    """The localgem project an email address names: the address itself, or what comes before its ``@``."""
    project = email.split("@", 1)[0].strip()
    if not project:
        raise errors.invalid_field("email_address", f"{email!r} names no project.")
    return project[:40]
