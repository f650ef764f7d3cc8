import json

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Chatbot

MESSAGES = [
    {"role": "system", "content": "You are friendly."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello, who are you?"},
    {"role": "user", "content": "What's your favorite food?"},
]


def test_completion_matches_the_facade(client: TestClient, bot: Chatbot) -> None:
    body = {"model": "model", "messages": MESSAGES, "temperature": 0, "max_tokens": 6}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    data = response.json()
    expected = bot.reply(
        "What's your favorite food?", ["Hi", "Hello, who are you?"], strategy="greedy", max_length=6
    )
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["model"] == "model"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": expected.text}
    assert choice["finish_reason"] == ("length" if expected.reply_tokens >= 6 else "stop")
    usage = data["usage"]
    assert usage["prompt_tokens"] == expected.prompt_tokens
    assert usage["completion_tokens"] == expected.reply_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_n_choices_with_temperature_zero_use_beam_search(client: TestClient, bot: Chatbot) -> None:
    body = {"messages": MESSAGES[-1:], "temperature": 0, "n": 3, "max_tokens": 5}
    choices = client.post("/v1/chat/completions", json=body).json()["choices"]
    expected = bot.reply(
        MESSAGES[-1]["content"], strategy="beam", beam_width=3, n_best=3, max_length=5
    )
    assert [c["message"]["content"] for c in choices] == [c.text for c in expected.candidates]
    assert [c["index"] for c in choices] == [0, 1, 2]


def test_sampling_with_a_seed_is_reproducible(client: TestClient) -> None:
    body = {"messages": MESSAGES[-1:], "temperature": 1.2, "seed": 3, "n": 2, "max_tokens": 5}
    first = client.post("/v1/chat/completions", json=body).json()["choices"]
    again = client.post("/v1/chat/completions", json=body).json()["choices"]
    assert first == again and len(first) == 2


def test_streaming_sends_chunks_that_add_up_to_the_reply(client: TestClient, bot: Chatbot) -> None:
    body = {"messages": MESSAGES[-1:], "temperature": 0, "max_tokens": 6, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == bot.reply(MESSAGES[-1]["content"], strategy="greedy", max_length=6).text
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_the_decoding_extension_overrides_the_mapped_settings(
    client: TestClient, bot: Chatbot
) -> None:
    decoding = {"strategy": "beam", "beam_width": 3, "no_repeat_ngram": 2}
    body = {"messages": MESSAGES[-1:], "temperature": 0.7, "max_tokens": 5, "decoding": decoding}
    choices = client.post("/v1/chat/completions", json=body).json()["choices"]
    expected = bot.reply(MESSAGES[-1]["content"], max_length=5, **decoding)
    assert [c["message"]["content"] for c in choices] == [expected.text]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, None),
        ({"messages": [{"role": "user", "content": "  "}]}, None),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": MESSAGES, "max_tokens": 10_000}, "max_tokens"),
        ({"messages": MESSAGES, "n": 100}, "n"),
        ({"messages": MESSAGES, "top_p": 2}, "top_p"),
        ({"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": MESSAGES, "top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"messages": MESSAGES, "presence_penalty": 2.5}, "presence_penalty"),
        ({"messages": MESSAGES, "decoding": {"beam_width": 99}}, "decoding.beam_width"),
        ({"messages": MESSAGES, "decoding": {"beam": 2}}, "decoding.beam"),
    ],
)
def test_invalid_requests_are_400_naming_the_param(
    client: TestClient, body: dict, param: str | None
) -> None:
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        "invalid_value",
    )
    assert client.post("/v1/chat/completions", json={"messages": MESSAGES}).status_code == 200


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"web_search_options": {}}, None),  # empty: accepted
    ],
)
def test_fields_the_model_cannot_honour_are_400_unsupported(
    client: TestClient, changes: dict, param: str | None
) -> None:
    response = client.post("/v1/chat/completions", json={"messages": MESSAGES, **changes})
    if param is None:
        assert response.status_code == 200
        return
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, "unsupported_parameter")


def test_image_and_audio_inputs_are_400_naming_the_content_part(client: TestClient) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    body = {"messages": [{"role": "user", "content": content}]}
    error = client.post("/v1/chat/completions", json=body).json()["error"]
    assert (error["param"], error["code"]) == ("messages.0.content", "unsupported_parameter")
    assert "image_url" in error["message"]


def test_text_content_parts_are_joined(client: TestClient, bot: Chatbot) -> None:
    content = [{"type": "text", "text": "What's your"}, {"type": "text", "text": "favorite food?"}]
    body = {"messages": [{"role": "user", "content": content}], "temperature": 0}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    expected = bot.reply("What's your\nfavorite food?", strategy="greedy")
    assert choice["message"]["content"] == expected.text


def test_service_options_and_unknown_fields_are_accepted(client: TestClient) -> None:
    body = {
        "messages": MESSAGES,
        "metadata": {"k": "v"},
        "store": False,
        "service_tier": "auto",
        "prompt_cache_key": "x",
        "reasoning_effort": "low",
        "logit_bias": {"5": 0},
        "parallel_tool_calls": False,
        "a_field_from_the_future": 1,
    }
    assert client.post("/v1/chat/completions", json=body).status_code == 200


def test_an_unknown_model_is_404_model_not_found(client: TestClient) -> None:
    body = {"model": "no-such-model", "messages": MESSAGES}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    assert "no-such-model" in error["message"]
