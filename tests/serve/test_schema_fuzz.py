"""Property-based fuzzing of the HTTP API against its own OpenAPI schema (schemathesis).

The hand-written tests check the requests we thought of; here schemathesis generates requests
from `/openapi.json` (valid ones, and in the first test schema-violating ones too) for every
operation and asserts that the server never answers 5xx and that every 4xx is JSON in the
documented `{"error": {"message", "type"}}` shape.

The app runs in-process with a tiny bot, the tight limits of `make_settings` (so decoding stays
cheap) and a request timeout, so a hang surfaces as a 504 and fails the test instead of stalling
it. Schemathesis runs the app's lifespan itself (started at the first call, stopped after each
test by its pytest plugin), so the micro-batcher is running and chat requests reach the model
rather than stopping at a 503.

- `test_schema_as_served` fuzzes the schema exactly as the app serves it. Most generated chat
  requests break a limit the schema cannot know (they come from `Settings`), so this mainly
  exercises validation and error handling.
- `test_chat_within_server_limits` fuzzes the chat operations with the schema narrowed to those
  limits, so that most requests pass validation and are decoded: that is where the decoding
  knobs (top_k, temperature, seed, ...) reach TensorFlow.
- `test_session_lifecycle` is a cheap sequential check: chat in a session, read it, delete it.

Runs are bounded and reproducible: a fixed seed, derandomized generation, no example database,
and a few dozen examples per operation.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, CheckFunction, Response
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from chatbot.bot import Chatbot
from serve.app import create_app
from serve.schemas import SESSION_ID_PATTERN

from .conftest import LIMITS, make_settings

SEED = 20240601
MAX_EXAMPLES = 50
REQUEST_TIMEOUT_S = 10.0
# No deadline (a decoding spec's first request traces a graph), and no health checks that
# depend on this machine's load or on how often a generated body is filtered.
FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)

# The server's limits (`LIMITS`, from `Settings`) and the decoding bounds `DecodingConfig`
# enforces, neither of which the schema states, keyed by (component, property).
CAPS: dict[tuple[str, str], dict[str, int | float]] = {
    # A message must not be blank (nor empty once normalized): ask for a word character.
    ("ChatRequest", "message"): {"maxLength": LIMITS["max_message_chars"], "pattern": r"\w"},
    ("ChatRequest", "history"): {"maxItems": LIMITS["max_history_turns"]},
    ("Turn", "text"): {"maxLength": LIMITS["max_message_chars"]},
    ("ChatMessage", "content"): {"maxLength": LIMITS["max_message_chars"], "pattern": r"\w"},
    # The last user message and at most `max_history_turns` earlier turns.
    ("ChatCompletionRequest", "messages"): {"maxItems": LIMITS["max_history_turns"] + 1},
    ("ChatCompletionRequest", "max_tokens"): {"maximum": LIMITS["max_length"]},
    ("ChatCompletionRequest", "max_completion_tokens"): {"maximum": LIMITS["max_length"]},
    ("ChatCompletionRequest", "n"): {"maximum": LIMITS["max_n_best"]},
    ("DecodingRequest", "max_length"): {"maximum": LIMITS["max_length"]},
    ("DecodingRequest", "beam_width"): {"maximum": LIMITS["max_beam_width"]},
    ("DecodingRequest", "n_best"): {"maximum": LIMITS["max_n_best"]},
    ("DecodingRequest", "n_samples"): {"maximum": LIMITS["max_n_samples"]},
    ("DecodingRequest", "min_length"): {"maximum": LIMITS["max_length"]},
    ("DecodingRequest", "temperature"): {"maximum": 100.0},
    ("DecodingRequest", "no_repeat_ngram"): {"maximum": 16},
    ("DecodingRequest", "mmi_lambda"): {"maximum": 2.0},
}


def fuzz_config(**generation: Any) -> schemathesis.Config:
    """A fixed seed and derandomized generation without an example database, so every run
    sends the same requests; no schemathesis.toml is discovered."""
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": 4 * REQUEST_TIMEOUT_S,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                **generation,
            },
        }
    )


def within_limits(openapi: dict[str, Any]) -> dict[str, Any]:
    """`openapi` with `CAPS` added to its request bodies (responses are left as they are)."""
    narrowed = copy.deepcopy(openapi)
    components = narrowed["components"]["schemas"]
    for (component, name), caps in CAPS.items():
        prop = components[component]["properties"][name]
        # Optional fields are `anyOf: [{type: ...}, {type: null}]`: cap the non-null branch.
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") not in (None, "null")]
        assert branches, f"{component}.{name} has no typed branch to cap"
        for branch in branches:
            branch.update(caps)
    return narrowed


def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx is JSON `{"error": {"message": str, "type": str, ...}}`."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"4xx is not JSON: {content_type!r}"
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"4xx body has no `error` object: {body!r}"
    assert isinstance(error.get("message"), str), f"`error.message` is not a string: {body!r}"
    assert isinstance(error.get("type"), str), f"`error.type` is not a string: {body!r}"
    return None


# `response_schema_conformance` validates bodies against their declared models (ChatResponse,
# SessionOut, ErrorBody, ...), `status_code_conformance` that every status is documented, and
# `negative_data_rejection` that schema-invalid requests are refused (the request models are
# strict: `true` or "3" is not an integer).
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    error_shape,
    response_schema_conformance,
    status_code_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_app(tiny_bundle: Path, bot: Chatbot) -> FastAPI:
    settings_ = make_settings(tiny_bundle, request_timeout_s=REQUEST_TIMEOUT_S)
    return create_app(settings_, bot=bot)


@pytest.fixture(scope="module")
def served_schema(fuzz_app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app, config=fuzz_config())


@pytest.fixture(scope="module")
def narrowed_schema(tiny_bundle: Path, bot: Chatbot) -> schemathesis.BaseSchema:
    # An app of its own, serving the narrowed schema (FastAPI serves `app.openapi_schema`
    # once it is set), so the other fixture's app keeps the real one.
    app = create_app(make_settings(tiny_bundle, request_timeout_s=REQUEST_TIMEOUT_S), bot=bot)
    app.openapi_schema = within_limits(app.openapi())
    config = fuzz_config(mode="positive")
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


served = schemathesis.pytest.from_fixture("served_schema")
narrowed = schemathesis.pytest.from_fixture("narrowed_schema")


@served.parametrize()
@FUZZ_SETTINGS
def test_schema_as_served(case: Case) -> None:
    """Valid and invalid requests for every operation: never a 5xx, 4xx in the error shape."""
    case.call_and_validate(checks=CHECKS)


@narrowed.include(path_regex=r"^/v1/chat").parametrize()
@FUZZ_SETTINGS
def test_chat_within_server_limits(case: Case) -> None:
    """Requests the server's limits admit, so most of them are decoded: never a 5xx."""
    case.call_and_validate(checks=CHECKS)


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(
    session_id=st.from_regex(SESSION_ID_PATTERN, fullmatch=True),
    messages=st.lists(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=LIMITS["max_message_chars"]),
        min_size=1,
        max_size=2,
    ),
)
def test_session_lifecycle(
    client: TestClient, served_schema: schemathesis.BaseSchema, session_id: str, messages: list[str]
) -> None:
    """POST /v1/chat in a session, then GET and DELETE it; each response as documented."""
    session = served_schema["/v1/sessions/{session_id}"]
    path = f"/v1/sessions/{session_id}"
    client.delete(path)  # a session id drawn by an earlier example
    expected: list[dict[str, str]] = []
    for message in messages:
        response = client.post("/v1/chat", json={"message": message, "session_id": session_id})
        if response.status_code == 422:  # e.g. nothing left after normalization
            assert response.json()["error"]["type"] == "invalid_request"
            continue
        assert response.status_code == 200, response.text
        served_schema["/v1/chat"]["POST"].validate_response(response)
        reply = response.json()
        assert reply["session_id"] == session_id
        expected += [
            {"role": "user", "text": message},
            {"role": "assistant", "text": reply["reply"]},
        ]

    read = client.get(path)
    session["GET"].validate_response(read)
    if expected:
        assert read.status_code == 200, read.text
        assert read.json() == {"session_id": session_id, "history": expected}
        deleted = client.delete(path)
        assert deleted.status_code == 204
        session["DELETE"].validate_response(deleted)
        read = client.get(path)
    assert read.status_code == 404
    assert read.json()["error"]["type"] == "not_found"
    again = client.delete(path)
    assert (again.status_code, again.json()["error"]["type"]) == (404, "not_found")


USER_HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # Found by the fuzzers (fixed since): values the schema admitted that failed inside
        # TensorFlow, a tiny positive temperature or top_p (1e-38 and below failed) or a top_k
        # beyond int64 (`tf.constant` could not convert it).
        ("/v1/chat", {"message": "hi", "decoding": {"strategy": "sample", "top_p": 5e-324}}),
        ("/v1/chat", {"message": "hi", "decoding": {"strategy": "sample", "temperature": 1e-40}}),
        ("/v1/chat/completions", {"messages": USER_HI, "temperature": 1e-300}),
        ("/v1/chat", {"message": "hi", "decoding": {"top_k": 2**63}}),
    ],
    ids=["top_p", "temperature", "openai-temperature", "top_k"],
)
def test_extreme_decoding_values_are_not_server_errors(
    tiny_bundle: Path, bot: Chatbot, path: str, body: dict[str, Any]
) -> None:
    """Minimal reproductions of the 5xx the fuzzer found: each must be answered (a reply, or
    a 422 naming the field), never a 500."""
    app = create_app(make_settings(tiny_bundle), bot=bot)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(path, json=body)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.json()["error"]["type"] == "invalid_request"
