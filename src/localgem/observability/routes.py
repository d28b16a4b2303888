"""``GET /metrics``: the Prometheus text format, unless ``metrics`` is off (404); with ``metrics_token`` set, only
for ``Authorization: Bearer <token>``."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from localgem import errors
from localgem.observability.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    settings = request.app.state.settings
    if not settings.metrics:
        raise errors.NotFound("Metrics are off on this server (setting metrics = false).")
    if settings.metrics_token:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), settings.metrics_token.encode()):
            raise errors.Unauthenticated("GET /metrics needs 'Authorization: Bearer <metrics_token>'.")
    metrics = request.app.state.metrics
    await metrics.refresh()
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)
