"""The wire shape of long-running operations: google.longrunning.Operation (``name``, ``metadata``, ``done``,
then exactly one of ``error`` / ``response``), google.rpc.Status and ListOperationsResponse.

``metadata`` and ``response`` are each kind's own wire models (a batch's are the batch resource and its
output, each carrying its ``@type``); an operation is typed by them: ``Operation[BatchResource, BatchOutput]``.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import SerializeAsAny

from localgem.types.status import Status
from localgem.types.wire import WireModel

M = TypeVar("M", bound=WireModel)
R = TypeVar("R", bound=WireModel)


class Operation(WireModel, Generic[M, R]):
    name: str
    metadata: M | None = None
    done: bool = False  # always written: a client polls until it reads true
    error: Status | None = None
    response: R | None = None


class ListOperationsResponse(WireModel):
    # Written as each operation's own type: a list may mix kinds.
    operations: list[SerializeAsAny[Operation]]
    next_page_token: str | None = None
