"""`GET` and `DELETE /v1/sessions/{session_id}`: read or forget a server-side conversation."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request, Response

from serve.errors import ApiError
from serve.schemas import SESSION_ID_PATTERN, SessionOut, Turn, error_responses

router = APIRouter(tags=["sessions"])
SessionId = Path(pattern=SESSION_ID_PATTERN)


@router.get("/v1/sessions/{session_id}", responses=error_responses(401, 404, 422, 503))
async def read_session(request: Request, session_id: str = SessionId) -> SessionOut:
    turns = await request.app.state.sessions.history(session_id)
    if not turns:
        raise ApiError(404, "not_found", f"no session {session_id!r} (unknown or expired)")
    history = [Turn(role=turn.role, text=turn.text) for turn in turns]
    return SessionOut(session_id=session_id, history=history)


@router.delete(
    "/v1/sessions/{session_id}", status_code=204, responses=error_responses(401, 404, 422, 503)
)
async def delete_session(request: Request, session_id: str = SessionId) -> Response:
    if not await request.app.state.sessions.delete(session_id):
        raise ApiError(404, "not_found", f"no session {session_id!r} (unknown or expired)")
    return Response(status_code=204)
