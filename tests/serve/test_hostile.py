"""Hostile and broken requests: each bad request to the chat endpoints gets a 4xx JSON error in
the documented `{"error": {"message", "type", "details"?}}` shape (never a 500) and the server
answers the next good request; control characters are accepted and normalized away, lone
surrogates refused; no path-like input reaches outside the served files or the configured
model; and neither API keys nor message text reach the logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Chatbot
from serve.app import create_app
from serve.observe import JsonFormatter, RequestIdFilter

from .conftest import LIMITS, make_settings
from .test_slow_clients import http_request, live_server, raw_exchange

KEY = "sk-test-7f3a9c-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = "/v1/chat"
COMPLETIONS = "/v1/chat/completions"
MIB = 1 << 20


def user(content: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


class Case(NamedTuple):
    name: str
    path: str
    body: Any  # a JSON value, or bytes sent as they are
    status: int
    fragment: str  # in the error message
    headers: dict[str, str] = AUTH


CASES = [
    Case("empty message", CHAT, {"message": ""}, 422, "message must not be empty"),
    Case("empty content", COMPLETIONS, user(""), 400, "non-empty user message"),
    Case("whitespace message", CHAT, {"message": " \n\t "}, 422, "message must not be empty"),
    Case("whitespace content", COMPLETIONS, user("\u3000 \n"), 400, "non-empty user message"),
    Case("1 MiB message", CHAT, {"message": "a" * MIB}, 413, f"over {MIB} bytes"),
    Case("1 MiB content", COMPLETIONS, user("a" * MIB), 413, f"over {MIB} bytes"),
    Case("invalid JSON", CHAT, b'{"message": ', 422, "JSON decode error"),
    Case("invalid JSON", COMPLETIONS, b'{"messages": [}', 400, "JSON decode error"),
    Case("invalid UTF-8", CHAT, b'{"message": "\xff\xfe hi"}', 400, "error parsing the body"),
    Case("invalid UTF-8", COMPLETIONS, b'{"messages": "\xc3\x28"}', 400, "error parsing"),
    Case("nested too deep", CHAT, b"[" * 100_000 + b"]" * 100_000, 400, "error parsing"),
    Case("empty body", CHAT, b"", 422, "Field required"),
    Case("null body", COMPLETIONS, b"null", 400, "valid dictionary"),
    Case("only controls", CHAT, {"message": "\x00\x01\x1b\x7f"}, 422, "empty (after normaliz"),
    Case("only controls", COMPLETIONS, user("\x00\u200b\x07"), 400, "empty (after normaliz"),
    Case("lone surrogate", CHAT, b'{"message": "hi \\ud800"}', 422, "lone UTF-16 surrogate"),
    Case("lone surrogate", COMPLETIONS, json.dumps(user("\udc00")).encode(), 400, "surrogate"),
    Case(
        "surrogate in history",
        CHAT,
        b'{"message": "hi", "history": [{"role": "user", "text": "\\udfff"}]}',
        422,
        "history.0.text: Value error, a lone UTF-16 surrogate",
    ),
    Case(
        "surrogate in session id",
        CHAT,
        b'{"message": "x", "session_id": "\\udbff"}',
        422,
        "session_id",
    ),
    Case("message a number", CHAT, {"message": 5}, 422, "message: Input should be a valid str"),
    Case("message a list", CHAT, {"message": ["hi"]}, 422, "valid string"),
    Case("body a list", CHAT, [{"message": "hi"}], 422, "valid dictionary"),
    Case("messages a string", COMPLETIONS, {"messages": "hi"}, 400, "valid list"),
    Case("n a string", COMPLETIONS, {**user("hi"), "n": "2"}, 400, "n: Input should be a valid"),
    Case("stream a string", COMPLETIONS, {**user("hi"), "stream": "yes"}, 400, "valid boolean"),
    Case(
        "beam width a float",
        CHAT,
        {"message": "x", "decoding": {"beam_width": 2.5}},
        422,
        "integer",
    ),
    Case(
        "beam width -1", CHAT, {"message": "x", "decoding": {"beam_width": -1}}, 422, "greater than"
    ),
    Case(
        "beam width 2**80",
        CHAT,
        {"message": "x", "decoding": {"beam_width": 2**80}},
        422,
        "or equal to 64",
    ),
    Case(
        "beam width over cap",
        CHAT,
        {"message": "x", "decoding": {"beam_width": 5}},
        422,
        "at most 4 on",
    ),
    Case(
        "n_samples over cap",
        CHAT,
        {"message": "x", "decoding": {"strategy": "sample", "n_samples": 7}},
        422,
        "n_samples must be at most 6 on",
    ),
    Case("n 0", COMPLETIONS, {**user("hi"), "n": 0}, 400, "n: Input should be greater than"),
    Case("n -3", COMPLETIONS, {**user("hi"), "n": -3}, 400, "n: Input should be greater than"),
    Case("n 10**30", COMPLETIONS, {**user("hi"), "n": 10**30}, 400, "n: Input should be less"),
    Case("n over cap", COMPLETIONS, {**user("hi"), "n": 4}, 400, "n: n_best must be at most 3"),
    Case(
        "max_length 0", CHAT, {"message": "x", "decoding": {"max_length": 0}}, 422, "greater than"
    ),
    Case("max_length 10**9", CHAT, {"message": "x", "decoding": {"max_length": 10**9}}, 422, "512"),
    Case(
        "max_length over cap",
        CHAT,
        {"message": "x", "decoding": {"max_length": 17}},
        422,
        "at most 16 on",
    ),
    Case("max_tokens 0", COMPLETIONS, {**user("hi"), "max_tokens": 0}, 400, "max_tokens"),
    Case("max_tokens -1", COMPLETIONS, {**user("hi"), "max_tokens": -1}, 400, "max_tokens"),
    Case("max_tokens 2**64", COMPLETIONS, {**user("hi"), "max_tokens": 2**64}, 400, "max_tokens"),
    Case("temperature -1", COMPLETIONS, {**user("hi"), "temperature": -1}, 400, "temperature"),
    Case(
        "temperature -0.0001",
        COMPLETIONS,
        {**user("x"), "temperature": -1e-4},
        400,
        "or equal to 0",
    ),
    Case(
        "decoding temperature 0",
        CHAT,
        {"message": "x", "decoding": {"temperature": 0}},
        422,
        "0.01",
    ),
    Case("temperature NaN", COMPLETIONS, b'{"temperature": NaN, "messages": []}', 400, "tempera"),
    Case("temperature 1e400", COMPLETIONS, b'{"temperature": 1e400, "messages": []}', 400, "temp"),
    Case("top_p 0", COMPLETIONS, {**user("hi"), "top_p": 0}, 400, "top_p: Input should be greater"),
    Case("top_p -0.5", COMPLETIONS, {**user("hi"), "top_p": -0.5}, 400, "top_p"),
    Case(
        "top_p 1.01", COMPLETIONS, {**user("hi"), "top_p": 1.01}, 400, "top_p: Input should be le"
    ),
    Case("decoding top_p 0", CHAT, {"message": "hi", "decoding": {"top_p": 0}}, 422, "top_p"),
    Case("decoding top_p 2", CHAT, {"message": "hi", "decoding": {"top_p": 2}}, 422, "top_p"),
    Case("unknown field", CHAT, {"message": "hi", "temprature": 1}, 422, "Extra inputs"),
    Case("functions", COMPLETIONS, {**user("hi"), "functions": [{"name": "f"}]}, 400, "tools"),
    Case("unknown decoding", CHAT, {"message": "x", "decoding": {"beam": 2}}, 422, "decoding.beam"),
    Case(
        "operator-only knob",
        CHAT,
        {"message": "hi", "decoding": {"banned_phrases": ["no"]}},
        422,
        "Extra inputs",
    ),
    Case(
        "10,000 history turns",
        CHAT,
        {"message": "hi", "history": [{"role": "user", "text": "x"}] * 10_000},
        422,
        f"history: at most {LIMITS['max_history_turns']} turns",
    ),
    Case(
        "10,000 messages",
        COMPLETIONS,
        {"messages": [{"role": "user", "content": "x"}] * 10_000},
        400,
        f"messages: at most {LIMITS['max_history_turns']} turns",
    ),
    Case(
        "unknown role in history",
        CHAT,
        {"message": "hi", "history": [{"role": "system", "text": "x"}]},
        422,
        "history.0.role: Input should be 'user' or 'assistant'",
    ),
    Case(
        "unknown role",
        COMPLETIONS,
        {"messages": [{"role": "tool", "content": "x"}, {"role": "user", "content": "hi"}]},
        400,
        "messages.0.role",
    ),
    Case("missing auth", CHAT, {"message": "hi"}, 401, "missing or invalid API key", {}),
    Case("missing auth", COMPLETIONS, user("hi"), 401, "missing or invalid API key", {}),
    Case(
        "wrong key", CHAT, {"message": "hi"}, 401, "invalid API key", {"Authorization": "Bearer x"}
    ),
    Case(
        "key of another scheme",
        COMPLETIONS,
        user("hi"),
        401,
        "invalid API key",
        {"Authorization": f"Basic {KEY}"},
    ),
    Case(
        "key with a suffix",
        COMPLETIONS,
        user("hi"),
        401,
        "invalid API key",
        {"Authorization": f"Bearer {KEY}x"},
    ),
]


@pytest.fixture(scope="module")
def guarded(tiny_bundle: Path, bot: Chatbot) -> Iterator[TestClient]:
    """An app that requires an API key, with the default body limit; exceptions are answered
    (not raised into the test), so a 500 shows as one."""
    app = create_app(make_settings(tiny_bundle, api_keys=[KEY]), bot=bot)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def send(client: TestClient, case: Case) -> Any:
    if isinstance(case.body, bytes):
        headers = {**case.headers, "Content-Type": "application/json"}
        return client.post(case.path, content=case.body, headers=headers)
    return client.post(case.path, json=case.body, headers=case.headers)


def assert_error_shape(response: Any, status: int) -> dict[str, Any]:
    """The documented error body, returned for further checks."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"message", "type", "param", "code", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    if status == 422 and "details" in error:
        for detail in error["details"]:
            assert set(detail) == {"loc", "msg", "type"}
    return error


def assert_still_serving(client: TestClient) -> None:
    response = client.post(CHAT, json={"message": "Hello, how are you today?"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("case", CASES, ids=[f"{c.path[4:]}: {c.name}" for c in CASES])
def test_bad_request_is_a_clean_4xx(guarded: TestClient, case: Case) -> None:
    error = assert_error_shape(send(guarded, case), case.status)
    assert case.fragment in error["message"]
    assert_still_serving(guarded)


def test_a_chunked_body_over_the_limit_is_refused(guarded: TestClient) -> None:
    """Without a `Content-Length` the body is counted as it arrives."""
    chunks = iter([b'{"message": "', *[b"a" * 65536] * 17, b'"}'])
    headers = {**AUTH, "Content-Type": "application/json"}
    response = guarded.post(CHAT, content=chunks, headers=headers)
    assert "content-length" not in response.request.headers
    error = assert_error_shape(response, 413)
    assert error == {
        "message": f"the request body is over {MIB} bytes",
        "type": "too_large",
        "param": None,
        "code": None,
    }
    assert response.headers["connection"] == "close"
    assert_still_serving(guarded)


def test_control_characters_are_accepted_and_normalized(guarded: TestClient, bot: Chatbot) -> None:
    """Control and format characters are valid text: the normalizer drops them, so the reply is
    the clean message's (tabs and newlines are whitespace and collapse to a space)."""
    clean = "Hello, how are you today?"
    expected = bot.reply(clean)
    for noisy in ["Hel\x00lo,\x07 how are\u200b you to\x1bday?", "Hello,\t\r\nhow are you today?"]:
        response = guarded.post(CHAT, json={"message": noisy}, headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["reply"] == expected.text
        assert response.json()["usage"]["prompt_tokens"] == expected.prompt_tokens


def test_text_kept_in_a_session_reads_back(guarded: TestClient) -> None:
    """Before lone surrogates were refused, one kept in a session made reading it back a 500
    (the session's JSON could not be encoded as UTF-8). Escaped pairs and controls are fine."""
    session = "hostile-session"
    message = "Hi \U0001f600 \x01 there"
    body = json.dumps({"message": message, "session_id": session}).encode()
    assert b"\\ud83d\\ude00" in body  # the astral character as an escaped surrogate pair
    headers = {**AUTH, "Content-Type": "application/json"}
    assert guarded.post(CHAT, content=body, headers=headers).status_code == 200
    lone = b'{"message": "hi \\ud800", "session_id": "' + session.encode() + b'"}'
    assert_error_shape(guarded.post(CHAT, content=lone, headers=headers), 422)
    stored = guarded.get(f"/v1/sessions/{session}", headers=AUTH)
    assert stored.status_code == 200, stored.text
    assert stored.json()["history"][0] == {"role": "user", "text": message}


def test_an_unexpected_error_is_a_500_in_the_error_shape(tiny_bundle: Path, bot: Chatbot) -> None:
    app = create_app(make_settings(tiny_bundle), bot=bot)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("internal detail with user text")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    error = assert_error_shape(response, 500)
    assert error == {
        "message": "internal server error",
        "type": "internal_error",
        "param": None,
        "code": None,
    }


# Marks of content that must never be served: this repo's Python source and /etc/passwd.
LEAKS = ("from __future__", "import ", "root:", "BaseSettings")


def assert_no_leak(text: str) -> None:
    assert not any(mark in text for mark in LEAKS), text[:300]


TRAVERSALS = [
    "/static/../app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e%2fapp.py",
    "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static/..%5capp.py",
    "/static/%2fetc%2fpasswd",
    "/static//etc/passwd",
    "/static/%00",
    "/static/chat.js%00.py",
    "/static/chat.js%2f..%2f..%2fapp.py",
    "/static/index.html/..%2f..%2fapp.py",
    "/static/" + "..%2f" * 12 + "etc%2fpasswd",
    "/../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/v1/sessions/..%2f..%2fetc%2fpasswd",
    "/v1/sessions/%2fetc%2fpasswd",
    "/v1/sessions/%00",
    "/v1/sessions/..",
    "/v1/sessions/" + "a" * 129,
]


def test_no_path_reaches_outside_the_served_files(guarded: TestClient) -> None:
    """Through the test client, whose URL parsing resolves a literal `.` or `..` segment
    (the raw-socket test sends those)."""
    assert guarded.get("/static/chat.js").status_code == 200
    for path in TRAVERSALS:
        response = guarded.get(path, headers=AUTH)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert_error_shape(response, response.status_code)
        assert_no_leak(response.text)


def test_raw_paths_on_the_wire_reach_nothing(tiny_bundle: Path, bot: Chatbot) -> None:
    """The same paths byte for byte on a real server, where no client normalizes them first."""
    app = create_app(make_settings(tiny_bundle), bot=bot)
    with live_server(app) as port:
        served = raw_exchange(port, http_request("GET", "/static/chat.css"))
        assert served.startswith(b"HTTP/1.1 200 ")
        dots = ["/static/.", "/static/..", "/static/..\\app.py", "/static/....//app.py"]
        for path in [*TRAVERSALS, *dots]:
            response = raw_exchange(port, http_request("GET", path)).decode("latin-1")
            status = int(response.split(" ", 2)[1])
            assert status in (400, 404, 422), (path, response[:200])
            assert_no_leak(response.partition("\r\n\r\n")[2])


def test_the_model_field_is_never_a_path(
    guarded: TestClient, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`model` must name the served model: nothing is loaded from it, any other value is 404
    `model_not_found`, and the answer names the configured model."""

    def no_loading(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a request made the server load a model: {args}")

    monkeypatch.setattr(Chatbot, "load", no_loading)
    for model in ["/etc/passwd", "../../../../etc", str(tiny_bundle.parent), "models/\x00", ".."]:
        response = guarded.post(COMPLETIONS, json={**user("Hello"), "model": model}, headers=AUTH)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "model_not_found"
    response = guarded.post(
        COMPLETIONS, json={**user("Hello"), "model": tiny_bundle.name}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == tiny_bundle.name
    assert_no_leak(response.text)
    listed = guarded.get("/v1/models", headers=AUTH).json()["data"]
    assert [entry["id"] for entry in listed] == [tiny_bundle.name]


def test_logs_hold_neither_keys_nor_messages(
    tiny_bundle: Path, bot: Chatbot, caplog: pytest.LogCaptureFixture
) -> None:
    """Every record logged while serving, formatted as the server writes it (JSON with every
    `extra` field, and the text format), names neither an API key (right or wrong) nor any text
    of a message, a history turn or a session."""
    secret = "hunter2-xyzzy-plugh"
    wrong_key = "sk-wrong-4d2e-secret"
    app = create_app(make_settings(tiny_bundle, api_keys=[KEY]), bot=bot)
    caplog.set_level(logging.DEBUG)
    with TestClient(app, raise_server_exceptions=False) as client:
        history = [{"role": "user", "text": f"turn {secret}"}]
        ok = client.post(CHAT, json={"message": f"hi {secret}", "history": history}, headers=AUTH)
        assert ok.status_code == 200
        session = {"message": f"hello {secret}", "session_id": "log-session"}
        assert client.post(CHAT, json=session, headers=AUTH).status_code == 200
        assert client.get("/v1/sessions/log-session", headers=AUTH).status_code == 200
        stream = {**user(f"Hello {secret}"), "stream": True}
        assert client.post(COMPLETIONS, json=stream, headers=AUTH).status_code == 200
        too_long = client.post(CHAT, json={"message": secret * 10}, headers=AUTH)
        assert too_long.status_code == 422
        wrong = client.post(CHAT, json={"message": secret}, headers={"Authorization": wrong_key})
        assert wrong.status_code == 401
        controls = client.post(CHAT, json={"message": f"\x00{secret}\x00"}, headers=AUTH)
        assert controls.status_code == 200
    assert any(record.name == "serve.access" for record in caplog.records)
    as_json, as_text = JsonFormatter(), logging.Formatter("%(request_id)s %(message)s")
    request_ids = RequestIdFilter()
    for record in caplog.records:
        request_ids.filter(record)
        lines = [as_json.format(record), as_text.format(record), repr(record.__dict__)]
        for line in lines:
            for needle in (KEY, wrong_key, secret):
                assert needle not in line, f"{needle!r} logged by {record.name}: {line[:300]}"
