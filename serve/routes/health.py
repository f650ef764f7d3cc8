"""Liveness and readiness probes; open even when API keys are required."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve.sessions import store_status

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (says nothing about the model)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses={503: {"description": "not ready yet"}})
async def readyz(request: Request) -> dict[str, Any] | JSONResponse:
    """Ready once the model is loaded and a warm-up reply succeeded, so traffic is only routed
    to a server whose first request will not pay for graph tracing. `sessions` says whether
    the session store answers; a store that does not leaves the server ready, since requests
    that carry their own history are still served (those naming a session get 503)."""
    if not request.app.state.ready:
        return JSONResponse({"status": "not ready"}, status_code=503)
    return {"status": "ready", "sessions": await store_status(request.app.state.sessions)}
