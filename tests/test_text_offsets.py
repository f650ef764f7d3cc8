from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.text_offsets import TextOffsets
from chatbot.tokenizer import SEP_ID, Tokenizer

DEFAULT_TOKENIZER = Path(__file__).parent.parent / "models/default/tokenizer.model"


def reply_text(tokenizer: Tokenizer, ids) -> str:
    return " ".join(tokenizer.decode(ids).split())


def offsets_by_prefixes(tokenizer: Tokenizer, ids) -> tuple[int, ...]:
    """The definition, spelled out: decode every prefix, clean it as a reply (keeping a
    trailing space that separates the next word), and advance where the text still agrees."""
    text, sent, offsets = reply_text(tokenizer, ids), 0, []
    for end in range(1, len(ids)):
        raw = tokenizer.decode(ids[:end])
        prefix = " ".join(raw.split()) + (" " if raw[-1:].isspace() and raw.strip() else "")
        if len(prefix) > sent and text.startswith(prefix):
            sent = len(prefix)
        offsets.append(sent)
    return (*offsets, len(text)) if ids else ()


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.load(DEFAULT_TOKENIZER)


def test_offsets_mark_where_each_token_ends(tokenizer):
    ids = tokenizer.encode(["héllo there, how are you? 日本 ok"])[0]
    text = reply_text(tokenizer, ids)
    offsets = TextOffsets(tokenizer)(ids, text)
    assert len(offsets) == len(ids)
    assert [text[:end] for end in offsets][:2] == ["h", "h"]  # a byte piece adds nothing yet
    assert text[: offsets[2]] == "hé"
    assert offsets[-1] == len(text)
    assert list(offsets) == sorted(offsets)


def test_no_ids_have_no_offsets(tokenizer):
    assert TextOffsets(tokenizer)([], "") == ()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_offsets_agree_with_decoding_every_prefix(tokenizer, data):
    """Random ids, byte pieces and lone word marks included, as a sampled reply may hold."""
    vocab = st.integers(SEP_ID + 1, tokenizer.vocab_size - 1)
    # a lone word mark ("▁") and the byte pieces of characters outside the vocabulary
    awkward = st.sampled_from(tokenizer.encode(["you? 日本 é"])[0])
    ids = data.draw(st.lists(st.one_of(vocab, awkward), max_size=12))
    text = reply_text(tokenizer, ids)
    assert TextOffsets(tokenizer)(ids, text) == offsets_by_prefixes(tokenizer, ids)
