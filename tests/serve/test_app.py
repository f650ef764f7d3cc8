"""The HTTP API end to end with a tiny trained bundle: health, models, chat, validation, auth
and timeouts, each compared with what the `Chatbot` facade answers directly."""

from __future__ import annotations

import hmac
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Chatbot
from serve.app import create_app, settings_environment
from serve.settings import Settings

from .conftest import make_settings


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    sessions = {"store": "memory", "status": "ok"}
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "sessions": sessions})


def test_not_ready_before_startup(tiny_bundle: Path, bot: Chatbot) -> None:
    client = TestClient(create_app(make_settings(tiny_bundle), bot=bot))  # lifespan not run
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_startup_loads_the_bundle_from_settings(tiny_bundle: Path) -> None:
    with TestClient(create_app(make_settings(tiny_bundle, jit_compile=False))) as client:
        assert client.get("/readyz").status_code == 200
        response = client.post("/v1/chat", json={"message": "Hello"})
        assert response.status_code == 200
        assert response.json()["usage"]["prompt_tokens"] > 0


def test_models_lists_the_bundle(client: TestClient, tiny_bundle: Path) -> None:
    body = client.get("/v1/models").json()
    assert body == {
        "object": "list",
        "data": [{"id": tiny_bundle.name, "object": "model", "owned_by": "chatbot"}],
    }


def test_chat_matches_the_facade(client: TestClient, bot: Chatbot, tiny_bundle: Path) -> None:
    message = "Hello, how are you today?"
    expected = bot.reply(message)
    response = client.post("/v1/chat", json={"message": message, "session_id": "s1"})
    assert response.status_code == 200
    body = response.json()
    assert body["reply"] == expected.text
    assert body["usage"] == {
        "prompt_tokens": expected.prompt_tokens,
        "reply_tokens": expected.reply_tokens,
    }
    assert body["candidates"] is None
    assert (body["session_id"], body["model"]) == ("s1", tiny_bundle.name)


def test_chat_uses_history(client: TestClient, bot: Chatbot) -> None:
    message = "Sure, what time does it start?"
    history = [
        {"role": "user", "text": "Do you want to go to the movies tonight?"},
        {"role": "assistant", "text": "I like pizza and pasta very much."},
    ]
    texts = [turn["text"] for turn in history]
    alone = client.post("/v1/chat", json={"message": message}).json()
    both = client.post("/v1/chat", json={"message": message, "history": history}).json()
    expected = bot.reply(message, texts)
    assert both["reply"] == expected.text
    assert both["usage"]["prompt_tokens"] == expected.prompt_tokens
    assert both["usage"]["prompt_tokens"] > alone["usage"]["prompt_tokens"]


def test_n_best_returns_ranked_candidates(client: TestClient, bot: Chatbot) -> None:
    decoding = {"strategy": "beam", "beam_width": 4, "n_best": 3, "max_length": 8}
    body = client.post("/v1/chat", json={"message": "Great!", "decoding": decoding}).json()
    expected = bot.reply("Great!", **decoding)
    assert [c["text"] for c in body["candidates"]] == [c.text for c in expected.candidates]
    assert len(body["candidates"]) == 3
    assert body["reply"] == body["candidates"][0]["text"]
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)


def _decoding(**fields: Any) -> dict[str, Any]:
    return {"message": "Hello", "decoding": fields}


BAD_REQUESTS = [
    ("empty message", {"message": ""}, "message"),
    ("whitespace message", {"message": "  \t "}, "message"),
    ("message too long", {"message": "a" * 51}, "message"),
    ("unknown field", {"message": "Hello", "mood": "happy"}, "mood"),
    ("unknown decoding field", _decoding(beam=2), "beam"),
    ("temperature zero", _decoding(temperature=0), "temperature"),
    ("top_p above one", _decoding(top_p=1.5), "top_p"),
    ("beam_width over limit", _decoding(strategy="beam", beam_width=5), "beam_width"),
    ("max_length over limit", _decoding(max_length=17), "max_length"),
    ("n_best over limit", _decoding(n_best=4), "n_best"),
    ("bad role", {"message": "Hi", "history": [{"role": "system", "text": "x"}]}, "role"),
    (
        "history too long",
        {"message": "Hi", "history": [{"role": "user", "text": "x"}] * 4},
        "history",
    ),
    ("message not a string", {"message": 5}, "message"),
    ("min above max length", _decoding(min_length=10, max_length=5), "min_length"),
    ("n_best above beam", _decoding(strategy="beam", beam_width=2, n_best=3), "n_best"),
]


def _named_fields(body: dict[str, Any]) -> str:
    """What a 4xx body says: its message and, for validation errors, every field location."""
    error = body["error"]
    locations = [str(part) for detail in error.get("details", []) for part in detail["loc"]]
    return " ".join([error["message"], *locations])


@pytest.mark.parametrize(
    ("payload", "field"),
    [pytest.param(payload, field, id=name) for name, payload, field in BAD_REQUESTS],
)
def test_bad_requests_are_422_naming_the_field(
    client: TestClient, payload: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/chat", json=payload)
    assert response.status_code == 422, response.text
    assert field in _named_fields(response.json())
    assert client.post("/v1/chat", json={"message": "Hello"}).status_code == 200


def test_invalid_json_is_a_json_422(client: TestClient) -> None:
    response = client.post(
        "/v1/chat", content=b'{"message": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["details"][0]["type"] == "json_invalid"
    assert client.post("/v1/chat", json={"message": "Hello"}).status_code == 200


def test_api_keys_guard_all_but_health(tiny_bundle: Path, bot: Chatbot) -> None:
    app = create_app(make_settings(tiny_bundle, api_keys=["k-one", "k-two"]), bot=bot)
    with TestClient(app) as client:
        payload = {"message": "Hello"}
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "k-two"}):
            response = client.post("/v1/chat", json=payload, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "unauthorized"
        assert client.get("/v1/models").status_code == 401
        good = {"Authorization": "Bearer k-two"}
        assert client.post("/v1/chat", json=payload, headers=good).status_code == 200
        assert client.get("/v1/models", headers=good).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_every_api_key_is_compared_in_constant_time(
    tiny_bundle: Path, bot: Chatbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each configured key goes through `hmac.compare_digest`, the match included, so neither
    timing nor an early exit tells a caller how much of a key, or which key, it got right."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(given: bytes, key: bytes) -> bool:
        compared.append((given, key))
        return real(given, key)

    monkeypatch.setattr("serve.deps.hmac.compare_digest", spy)
    app = create_app(make_settings(tiny_bundle, api_keys=["k-one", "k-two"]), bot=bot)
    with TestClient(app) as client:
        for token, status in (("k-one", 200), ("k-", 401)):
            compared.clear()
            headers = {"Authorization": f"Bearer {token}"}
            assert client.get("/v1/models", headers=headers).status_code == status
            assert compared == [(token.encode(), b"k-one"), (token.encode(), b"k-two")]


def test_slow_reply_times_out_with_504(
    tiny_bundle: Path, bot: Chatbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(make_settings(tiny_bundle, request_timeout_s=0.1), bot=bot)
    release = threading.Event()
    with TestClient(app) as client:
        real_reply = bot.reply_batch

        def slow_reply(*args: Any, **kwargs: Any) -> Any:
            release.wait(10)
            return real_reply(*args, **kwargs)

        monkeypatch.setattr(bot, "reply_batch", slow_reply)
        response = client.post("/v1/chat", json={"message": "Hello"})
        answered_while_decoding = not release.is_set()
        release.set()
    assert answered_while_decoding
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout"


def test_failed_warm_up_leaves_the_server_not_ready(
    tiny_bundle: Path, bot: Chatbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_reply(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(bot, "reply_batch", broken_reply)
    with TestClient(create_app(make_settings(tiny_bundle), bot=bot)) as client:
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_cors_allows_configured_origins(tiny_bundle: Path, bot: Chatbot) -> None:
    origin = "https://chat.example.com"
    app = create_app(make_settings(tiny_bundle, cors_origins=[origin]), bot=bot)
    with TestClient(app) as client:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        response = client.options("/v1/chat", headers=headers)
        assert response.headers["access-control-allow-origin"] == origin
        other = {**headers, "Origin": "https://elsewhere.example.com"}
        assert (
            "access-control-allow-origin" not in client.options("/v1/chat", headers=other).headers
        )


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_API_KEYS", "a, b")
    monkeypatch.setenv("CHATBOT_PORT", "9000")
    monkeypatch.setenv("CHATBOT_JIT_COMPILE", "false")
    settings = Settings(_env_file=None)
    assert (settings.api_keys, settings.port, settings.jit_compile) == (["a", "b"], 9000, False)


def test_settings_survive_the_trip_to_worker_processes(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        tiny_bundle, api_keys=["k1", "k2"], jit_compile=False, batch_window_ms=2.5, port=9001
    )
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == settings


def test_warm_up_can_compile_every_batch_shape(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tiny_bundle, warm_up="all_shapes", max_batch_size=2, xla_max_rows=2)
    with caplog.at_level(logging.INFO, logger="serve.app"), TestClient(create_app(settings)) as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/chat", json={"message": "Hello"}).status_code == 200
    compiled = [r for r in caplog.records if r.getMessage().startswith("compiled")]
    assert compiled and compiled[0].shapes >= 2  # rows 1 and 2, each source-length bucket


def test_mmi_bidi_reranks_over_http_and_needs_a_backward_model(
    client: TestClient, bidi_bundle: Path
) -> None:
    decoding = {"strategy": "beam", "beam_width": 4, "n_best": 3, "mmi_backward": 1.0}
    bidi = Chatbot.load(bidi_bundle)
    with TestClient(create_app(make_settings(bidi_bundle), bot=bidi)) as bidi_client:
        response = bidi_client.post("/v1/chat", json={"message": "ping", "decoding": decoding})
    assert response.status_code == 200, response.text
    expected = bidi.reply("ping", **decoding)
    assert [c["text"] for c in response.json()["candidates"]] == [
        c.text for c in expected.candidates
    ]
    refused = client.post("/v1/chat", json={"message": "ping", "decoding": decoding})
    assert refused.status_code == 422
    assert "mmi_backward needs a backward model" in refused.text
