"""installableModels for administrators: list, install and remove models by name, install and remove as
long-running operations (``installableModels/{name}/operations/{id}``).

An operation is an asyncio task in this server process, its state held in memory: an install is pip and file
work on this machine, so it cannot move to another server anyway, and what it leaves (wheels in the download
dir) is resumed by the next install. A server that restarts forgets its operations (polling one then answers
404) — the model is either installed (listed as such) or not, and installing again resumes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localgem import errors
from localgem.models.catalogue import ModelCatalogue
from localgem.models.installer import Installer, ModelState, Progress

#: Finished operations kept for polling, the oldest dropped first.
KEEP_FINISHED = 100


class AdminKeys:
    """Keys that may administer the server (``admin_keys``): only digests are held."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    def allows(self, presented: str | None) -> bool:
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode()).digest()
        return any(hmac.compare_digest(digest, known) for known in self._digests)


@dataclass
class _Operation:
    name: str
    model: str
    action: str
    create_time: datetime
    progress: Progress = field(default_factory=lambda: Progress("queued"))
    update_time: datetime | None = None
    done: bool = False
    error: errors.ApiError | None = None
    response: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        percent = round(100 * self.progress.done / self.progress.total, 1) if self.progress.total else 0.0
        body: dict[str, Any] = {
            "name": self.name,
            "metadata": {
                "@type": "type.googleapis.com/localgem.InstallModelMetadata",
                "model": f"installableModels/{self.model}",
                "action": self.action,
                "stage": self.progress.stage,
                "progress": {
                    "bytes": str(self.progress.done),
                    "totalBytes": str(self.progress.total),
                    "percent": percent,
                },
                "createTime": _timestamp(self.create_time),
                "updateTime": _timestamp(self.update_time or self.create_time),
            },
            "done": self.done,
        }
        if self.error is not None:
            body["error"] = self.error.to_status()
        elif self.response is not None:
            body["response"] = self.response
        return body


class InstallService:
    def __init__(self, installer: Installer, admin_keys: AdminKeys) -> None:
        self._installer = installer
        self._admin_keys = admin_keys
        self._operations: dict[str, _Operation] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def build(cls, data_dir: Path, catalogue: ModelCatalogue, admin_keys: list[str]) -> InstallService:
        return cls(Installer(data_dir, catalogue), AdminKeys(admin_keys))

    def is_admin(self, presented: str | None) -> bool:
        return self._admin_keys.allows(presented)

    def list(self) -> dict[str, Any]:
        return {"installableModels": [_model_wire(state) for state in self._installer.states()]}

    def get(self, name: str) -> dict[str, Any]:
        return _model_wire(self._installer.state(self._installer.get(name)))

    def start(self, name: str, action: str) -> dict[str, Any]:
        """Starts installing or removing ``name``; answers the operation at once."""
        model = self._installer.get(name)
        running = [op for op in self._operations.values() if op.model == name and not op.done]
        if running:
            raise errors.Aborted(f"{running[0].name} is still running for installableModels/{name}.")
        operation = _Operation(
            f"installableModels/{name}/operations/{secrets.token_hex(6)}", model.name, action, datetime.now(UTC)
        )
        self._operations[operation.name] = operation
        self._forget_old()
        task = asyncio.create_task(self._run(operation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return operation.to_wire()

    def operation(self, name: str) -> dict[str, Any]:
        try:
            return self._operations[name].to_wire()
        except KeyError:
            raise errors.NotFound(
                f"Operation {name} not found (operations live in the server that ran them)."
            ) from None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, operation: _Operation) -> None:
        def report(progress: Progress) -> None:
            operation.progress = progress
            operation.update_time = datetime.now(UTC)

        try:
            if operation.action == "install":
                state = await self._installer.install(operation.model, report)
                operation.response = _model_wire(state)
            else:
                removed = await self._installer.remove(operation.model)
                operation.response = {"removed": removed}
        except errors.ApiError as exc:
            operation.error = exc
        except Exception as exc:  # an operation reports every failure; the server goes on
            operation.error = errors.Internal(f"{type(exc).__name__}: {exc}")
        finally:
            operation.done = True
            operation.update_time = datetime.now(UTC)

    def _forget_old(self) -> None:
        finished = [name for name, op in self._operations.items() if op.done]
        for name in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._operations[name]


def _model_wire(state: ModelState) -> dict[str, Any]:
    model = state.model
    body: dict[str, Any] = {
        "name": f"installableModels/{model.name}",
        "purpose": model.purpose,
        "description": model.description,
        "sizeBytes": str(model.size),
        "downloadBytes": str(model.download_bytes),
        "packages": [f"{wheel.package}=={wheel.version}" for wheel in model.wheels],
        "installed": state.installed,
        "builtin": model.dependency,
        "location": state.where,
    }
    if model.config is not None:
        body["model"] = f"models/{model.config.id}"
    return body


def _timestamp(value: datetime) -> str:
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")
