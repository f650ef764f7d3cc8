"""The OpenAI-compatible routes as real clients use them: a real uvicorn server driven by the
official `openai` package (sync, async, streaming) and by LangChain's `ChatOpenAI`.

The served bundle is the tiny one with decoding defaults like the shipped model's (sampling,
`min_length` 4), in a folder named `default`, so its model name is "default"."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml
from langchain_openai import ChatOpenAI

from chatbot.bot import Chatbot
from chatbot.bundle import CONFIG
from serve.app import create_app

from .conftest import make_settings
from .test_slow_clients import live_server

MESSAGE = "What's your favorite food?"
HISTORY = [
    {"role": "system", "content": "You are friendly."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello, who are you?"},
]
MESSAGES = [*HISTORY, {"role": "user", "content": MESSAGE}]
TURNS = ["Hi", "Hello, who are you?"]


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("served") / "default"
    shutil.copytree(tiny_bundle, path)
    config = yaml.safe_load((path / CONFIG).read_text("utf-8"))
    config["decoding"].update(strategy="sample", min_length=4, temperature=0.8, top_p=0.9)
    (path / CONFIG).write_text(yaml.safe_dump(config), "utf-8")
    return path


@pytest.fixture(scope="module")
def served_bot(bundle: Path) -> Chatbot:
    bot = Chatbot.load(bundle)
    bot.reply("hello")  # traces the default loop here, not within the server's start-up wait
    return bot


@pytest.fixture(scope="module")
def base_url(bundle: Path, served_bot: Chatbot) -> Iterator[str]:
    with live_server(create_app(make_settings(bundle), bot=served_bot)) as port:
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def greedy(bot: Chatbot, **decoding: object):
    return bot.reply(MESSAGE, TURNS, strategy="greedy", **decoding)


def create(client: openai.OpenAI, **options: object):
    return client.chat.completions.create(model="default", messages=MESSAGES, **options)


def streamed(client: openai.OpenAI, **options: object) -> list:
    return list(create(client, stream=True, **options))


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["default"]


def test_temperature_zero_is_greedy_with_usage(client: openai.OpenAI, served_bot: Chatbot) -> None:
    completion = create(client, temperature=0, user="someone")
    expected = greedy(served_bot)
    choice = completion.choices[0]
    assert choice.message.content == expected.text
    assert choice.finish_reason == ("length" if expected.finish_reason == 1 else "stop")
    assert completion.usage.completion_tokens == expected.reply_tokens
    assert completion.usage.prompt_tokens == expected.prompt_tokens


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_below_min_length_lowers_it(
    client: openai.OpenAI, served_bot: Chatbot, field: str
) -> None:
    completion = create(client, temperature=0, **{field: 3})
    expected = greedy(served_bot, max_length=3)
    assert completion.choices[0].message.content == expected.text
    assert completion.usage.completion_tokens == expected.reply_tokens <= 3
    finish = "length" if expected.reply_tokens == 3 else "stop"
    assert completion.choices[0].finish_reason == finish


def test_a_stream_with_usage_ends_with_a_usage_chunk(
    client: openai.OpenAI, served_bot: Chatbot
) -> None:
    chunks = streamed(client, temperature=0, stream_options={"include_usage": True})
    expected = greedy(served_bot)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == expected.reply_tokens
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == expected.text
    assert all(c.usage is None for c in chunks[:-1])


def test_stop_cuts_the_reply_and_the_stream(client: openai.OpenAI, served_bot: Chatbot) -> None:
    # the first seed whose sampled reply has text to cut (the tiny model's are often blank)
    seed, full = next(
        (seed, text)
        for seed in range(50)
        if len(text := served_bot.reply(MESSAGE, TURNS, temperature=1.0, seed=seed).text) > 6
    )
    stop = full[3:6]  # spans tokens' texts or not: either way the cut is before it
    options = {"temperature": 1.0, "seed": seed}
    completion = create(client, stop=[stop, "never there"], **options)
    cut = full[: full.index(stop)]
    assert completion.choices[0].message.content == cut
    assert completion.choices[0].finish_reason == "stop"
    chunks = streamed(client, stop=stop, **options)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == cut
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs_come_with_the_reply_and_its_stream(client: openai.OpenAI) -> None:
    completion = create(client, temperature=0, logprobs=True, top_logprobs=2)
    choice = completion.choices[0]
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    assert len(content) == completion.usage.completion_tokens
    for token in content:
        assert token.logprob <= 0 and token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 2
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob
        assert token.logprob <= token.top_logprobs[0].logprob
    chunks = streamed(client, temperature=0, logprobs=True, top_logprobs=2)
    streamed_content = [
        t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content
    ]
    assert [(t.token, t.logprob) for t in streamed_content] == [
        (t.token, t.logprob) for t in content
    ]


def test_penalties_reach_the_decoding_loop(client: openai.OpenAI, served_bot: Chatbot) -> None:
    plain = create(client, temperature=0, presence_penalty=0, frequency_penalty=0)
    assert plain.choices[0].message.content == greedy(served_bot).text
    penalized = create(client, temperature=0, presence_penalty=1.0, frequency_penalty=2.0)
    expected = greedy(served_bot, presence_penalty=1.0, frequency_penalty=2.0)
    assert penalized.choices[0].message.content == expected.text


def test_an_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert raised.value.code == "model_not_found" and "no-such-model" in raised.value.message


def test_tools_raise_bad_request_naming_the_param(client: openai.OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {}}}
    with pytest.raises(openai.BadRequestError) as raised:
        create(client, tools=[tool])
    assert raised.value.param == "tools" and raised.value.code == "unsupported_parameter"


def test_n_choices_with_a_seed_are_reproducible(client: openai.OpenAI) -> None:
    first = create(client, n=2, seed=7, temperature=1.0)
    again = create(client, n=2, seed=7, temperature=1.0)
    assert len(first.choices) == 2
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]


def test_extra_body_decoding_is_the_extension(client: openai.OpenAI, served_bot: Chatbot) -> None:
    decoding = {"strategy": "beam", "beam_width": 3, "n_best": 2}
    completion = create(client, n=2, extra_body={"decoding": decoding})
    expected = served_bot.reply(MESSAGE, TURNS, **decoding)
    assert [c.message.content for c in completion.choices] == [c.text for c in expected.candidates]


def test_legacy_completions_take_the_prompt_as_the_message(
    client: openai.OpenAI, served_bot: Chatbot
) -> None:
    completion = client.completions.create(
        model="default", prompt=MESSAGE, temperature=0, max_tokens=5, logprobs=1
    )
    expected = served_bot.reply(MESSAGE, strategy="greedy", max_length=5)
    choice = completion.choices[0]
    assert choice.text == expected.text
    assert "".join(choice.logprobs.tokens) == expected.text
    assert choice.logprobs.text_offset[0] == 0
    chunks = list(
        client.completions.create(
            model="default",
            prompt=MESSAGE,
            temperature=0,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks[:-1]) == expected.text
    assert chunks[-1].usage.completion_tokens == expected.reply_tokens


def test_the_async_client_completes_and_streams(base_url: str, served_bot: Chatbot) -> None:
    async def run() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
        async with client:
            completion = await client.chat.completions.create(
                model="default", messages=MESSAGES, temperature=0
            )
            stream = await client.chat.completions.create(
                model="default", messages=MESSAGES, temperature=0, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
        return completion.choices[0].message.content, text

    completed, streamed_text = asyncio.run(run())
    assert completed == streamed_text == greedy(served_bot).text


def test_langchain_invokes_streams_and_batches(base_url: str, served_bot: Chatbot) -> None:
    chat = ChatOpenAI(
        base_url=base_url, api_key="unused", model="default", temperature=0, max_retries=0
    )
    expected = greedy(served_bot).text
    messages = [("system", "You are friendly."), ("human", "Hi"), ("ai", "Hello, who are you?")]
    messages.append(("human", MESSAGE))
    assert chat.invoke(messages).content == expected
    assert "".join(chunk.content for chunk in chat.stream(messages)) == expected
    replies = chat.batch([messages, [("human", "Hi")]])
    assert [r.content for r in replies] == [
        expected,
        served_bot.reply("Hi", strategy="greedy").text,
    ]
    usage = chat.invoke(messages, max_tokens=3).usage_metadata
    assert usage["output_tokens"] <= 3
