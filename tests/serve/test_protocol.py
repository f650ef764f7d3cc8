import json

import pytest
from pydantic import ValidationError

from chatbot.decoding.search import FinishReason
from serve.protocol import (
    FINISH_REASONS,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    ChoiceDelta,
)

USER = {"role": "user", "content": "Hi"}


def mapped(**fields):
    return ChatCompletionRequest(messages=[USER], **fields).to_chat().decoding


def test_temperature_zero_is_greedy_or_a_beam_of_n():
    assert mapped(temperature=0.0).strategy == "greedy"
    beam = mapped(temperature=0.0, n=3)
    assert (beam.strategy, beam.beam_width, beam.n_best) == ("beam", 3, 3)


def test_temperature_top_p_or_several_choices_sample():
    assert mapped(temperature=0.7).strategy == "sample"
    assert mapped(top_p=0.9).strategy == "sample"
    assert mapped(n=2).n_best == 2


def test_the_decoding_extension_overrides_the_mapped_fields():
    decoding = mapped(temperature=0.0, max_tokens=5, decoding={"strategy": "beam"})
    assert (decoding.strategy, decoding.max_length) == ("beam", 5)


def test_system_messages_are_dropped_and_the_last_user_message_is_the_message():
    messages = [
        {"role": "system", "content": "be nice"},
        USER,
        {"role": "assistant", "content": "Yo"},
    ]
    chat = ChatCompletionRequest(messages=[*messages, {"role": "user", "content": "ok?"}]).to_chat()
    assert chat.message == "ok?"
    assert [(t.role, t.text) for t in chat.history] == [("user", "Hi"), ("assistant", "Yo")]


def test_the_last_message_must_be_a_users():
    with pytest.raises(ValidationError, match="non-empty user message"):
        ChatCompletionRequest(messages=[USER, {"role": "assistant", "content": "Yo"}])


def test_finish_reasons_are_openai_names():
    assert FINISH_REASONS == {
        FinishReason.EOS: "stop",
        FinishReason.LENGTH: "length",
        FinishReason.STOP: "stop",  # cut before a stop sequence
    }


def test_a_chunk_leaves_unsent_delta_fields_out_but_keeps_null_logprobs_and_finish_reason():
    choice = ChatCompletionChunkChoice(index=0, delta=ChoiceDelta(content="hi"))
    chunk = ChatCompletionChunk(id="c", created=1, model="m", choices=[choice])
    assert json.loads(json.dumps(chunk.model_dump()))["choices"] == [
        {"index": 0, "delta": {"content": "hi"}, "logprobs": None, "finish_reason": None}
    ]
