"""The server's own limits on a chat request (message size, history length, search size), kept
apart from the schemas because they come from `Settings`, not from the code."""

from __future__ import annotations

from typing import Any

from serve.schemas import ChatRequest
from serve.settings import Settings


def _error(loc: tuple[str | int, ...], kind: str, msg: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "loc": ("body", *loc), "msg": msg, "input": value}


def limit_errors(request: ChatRequest, settings: Settings) -> list[dict[str, Any]]:
    """Violations in FastAPI's validation-error format (empty when the request fits)."""
    errors = []
    chars = settings.max_message_chars
    if len(request.message) > chars:
        errors.append(_error(("message",), "too_long", f"at most {chars} characters", None))
    if len(request.history) > settings.max_history_turns:
        msg = f"at most {settings.max_history_turns} turns"
        errors.append(_error(("history",), "too_long", msg, len(request.history)))
    for index, turn in enumerate(request.history):
        if len(turn.text) > chars:
            msg = f"at most {chars} characters"
            errors.append(_error(("history", index, "text"), "too_long", msg, None))
    if request.decoding is not None:
        caps = {
            "max_length": settings.max_length,
            "beam_width": settings.max_beam_width,
            "n_best": settings.max_n_best,
        }
        for name, cap in caps.items():
            value = getattr(request.decoding, name)
            if value is not None and value > cap:
                msg = f"{name} must be at most {cap} on this server"
                errors.append(_error(("decoding", name), "less_than_equal", msg, value))
    return errors
