"""What operators see: Prometheus metrics, request IDs, JSON logs without conversation text, and
a full queue answered with 429 and `Retry-After` at once."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Chatbot
from serve.app import create_app
from serve.observe import JsonFormatter

from .conftest import make_settings


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


def test_metrics_count_requests_tokens_and_batches(client: TestClient) -> None:
    before = client.get("/metrics").text
    reply = client.post("/v1/chat", json={"message": "Hello"}).json()
    client.post("/v1/chat", json={"message": ""})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def grew(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    route = {"route": "/v1/chat", "method": "POST"}
    assert grew("chatbot_requests_total", **route, status="200") == 1
    assert grew("chatbot_requests_total", **route, status="422") == 1
    assert grew("chatbot_request_seconds_count", route="/v1/chat") == 2
    assert grew("chatbot_generated_tokens_total") == reply["usage"]["reply_tokens"]
    assert grew("chatbot_batch_size_count") == 1
    assert _metric(after, "chatbot_queue_depth") == 0
    unmatched = client.get("/no/such/path")
    assert unmatched.status_code == 404 and unmatched.json()["error"]["type"] == "not_found"
    text = client.get("/metrics").text
    assert _metric(text, "chatbot_requests_total", route="unmatched", method="GET", status="404")


def test_request_ids_are_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
    assert len(made.headers["x-request-id"]) == 32 and made.headers["x-request-id"] != "abc-123"


def test_access_logs_are_json_with_the_request_id_and_no_message_text(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "my password is hunter2"
    with caplog.at_level(logging.INFO, logger="serve.access"):
        client.post("/v1/chat", json={"message": secret}, headers={"X-Request-ID": "req-7"})
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert lines and all(secret not in line for line in lines)
    entry = json.loads(lines[-1])
    assert entry["request_id"] == "req-7"
    assert (entry["method"], entry["route"], entry["status"]) == ("POST", "/v1/chat", 200)
    assert entry["ms"] > 0 and entry["logger"] == "serve.access"


def test_a_full_queue_answers_429_with_retry_after(tiny_bundle: Path, bot: Chatbot) -> None:
    gate = threading.Event()
    gate.set()
    real_reply_batch = bot.reply_batch

    def held(*args: Any, **kwargs: Any) -> Any:
        gate.wait(20)
        return real_reply_batch(*args, **kwargs)

    settings = make_settings(tiny_bundle, max_queue=1, batch_window_ms=0)
    app = create_app(settings, bot=bot)
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        bot.reply_batch = held  # type: ignore[method-assign]
        try:
            gate.clear()
            decoding = pool.submit(client.post, "/v1/chat", json={"message": "first"})
            time.sleep(0.3)
            waiting = pool.submit(client.post, "/v1/chat", json={"message": "second"})
            time.sleep(0.3)
            refused = client.post("/v1/chat", json={"message": "third"})
            # shed before anything is parsed or validated: a broken body is refused as busy too
            unparsed = client.post("/v1/chat", content=b"{not json")
            completions = client.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
            )
            held = not decoding.done()  # refused while the first was still held: at once
            gate.set()
            statuses = [decoding.result().status_code, waiting.result().status_code]
        finally:
            gate.set()
            del bot.reply_batch
        assert refused.status_code == 429 and held
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "overloaded"
        for other in (unparsed, completions):
            assert other.status_code == 429 and "retry-after" in other.headers
            assert other.json()["error"]["type"] == "overloaded"
        assert statuses == [200, 200]
        assert client.post("/v1/chat", content=b"{not json").status_code == 422  # room again
        metrics = client.get("/metrics").text
        assert _metric(metrics, "chatbot_rejected_requests_total", reason="overloaded") == 3
        assert _metric(metrics, "chatbot_queue_depth") == 0


LOG_SCRIPT = """
import logging, logging.config, sys
from serve.observe import log_config, request_id
logging.config.dictConfig(log_config(sys.argv[1], "info"))
request_id.set("rid-9")
logging.getLogger("serve.test").info("model loaded", extra={"rows": 3})
logging.getLogger("serve.test").debug("not at info level")
"""


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_config_writes_the_request_id(log_format: str) -> None:
    # In a child process: dictConfig closes every existing handler, pytest's included.
    run = subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT, log_format], capture_output=True, text=True, check=True
    )
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    if log_format == "json":
        entry = json.loads(lines[0])
        assert (entry["message"], entry["request_id"], entry["rows"]) == (
            "model loaded",
            "rid-9",
            3,
        )
        assert entry["level"] == "info" and entry["logger"] == "serve.test"
    else:
        assert lines[0].endswith("INFO serve.test [rid-9] model loaded")
