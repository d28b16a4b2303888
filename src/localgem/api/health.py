"""Liveness and readiness, for supervisors and load balancers (no API key: they reveal no data)."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from localgem import errors
from localgem.api.errors import render

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> dict:
    """The process answers; this never waits on a model, even with every slot busy."""
    state = request.app.state
    return {"status": "ok", "loaded": sorted([*state.engines.loaded(), *state.embedders.loaded()])}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> dict | JSONResponse:
    """The database answers, the models to preload are loaded and every scheduler loop is making progress."""
    if not await request.app.state.database.reachable():
        return render(errors.Unavailable("Not ready: the database does not answer."))
    loaded = request.app.state.engines.loaded()
    embedders = request.app.state.embedders.loaded()
    missing = [model_id for model_id in request.app.state.preload if model_id not in {*loaded, *embedders}]
    stalled = [model_id for model_id, model in loaded.items() if not model.engine.healthy()]
    if missing or stalled:
        return render(errors.Unavailable(f"Not ready: loading {missing or 'nothing'}, stalled {stalled or 'nothing'}."))
    models = {model_id: _stats(model.engine.stats) for model_id, model in loaded.items()}
    models.update({model_id: _stats(batcher.embedder.stats) for model_id, batcher in embedders.items()})
    return {"status": "ready", "models": models}


def _stats(stats: object) -> dict:
    values = dataclasses.asdict(stats)  # type: ignore[call-overload]
    values.pop("last_progress", None)
    return values
