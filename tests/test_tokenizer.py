import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.config import TokenizerConfig
from chatbot.errors import TokenizerError
from chatbot.normalize import Normalizer
from chatbot.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SEP_ID,
    SPECIAL_IDS,
    UNK_ID,
    Tokenizer,
    join_context,
)

from .conftest import TINY_CORPUS

normalize = Normalizer()


def test_special_ids_are_fixed(tiny_tokenizer):
    pieces = [tiny_tokenizer.id_to_piece(i) for i in range(5)]
    assert pieces == ["<pad>", "<unk>", "<s>", "</s>", "<sep>"]
    assert SPECIAL_IDS == {
        "pad": PAD_ID,
        "unk": UNK_ID,
        "bos": BOS_ID,
        "eos": EOS_ID,
        "sep": SEP_ID,
    }
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID, SEP_ID) == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_both_model_types_train_and_round_trip(model_type):
    tokenizer = Tokenizer.train(TINY_CORPUS, TokenizerConfig(model_type=model_type, vocab_size=400))
    text = "Hello, do you like pizza?"
    assert tokenizer.decode(tokenizer.encode([text])[0]) == text


@pytest.mark.parametrize(
    "raw",
    [
        "Hello, how are you today?",
        "Say , Jim , I ’ m here .",
        "Unseen script: 日本語, Ελληνικά, emoji 😀🚀",
        "<sep> and <s> typed by a user are plain text",
        "tabs\tand\nnewlines",
        "\u2581 marker",
    ],
)
def test_decode_of_encode_is_the_normalized_text(tiny_tokenizer, raw):
    text = normalize(raw)
    ids = tiny_tokenizer.encode([text])[0]
    assert tiny_tokenizer.decode(ids) == text


def test_byte_fallback_means_no_unknown_ids(tiny_tokenizer):
    ids = tiny_tokenizer.encode(["Ωμέγα 漢字 🦜 ẞ"])[0]
    assert UNK_ID not in ids
    assert max(ids) < tiny_tokenizer.vocab_size


def test_user_text_cannot_spell_the_separator(tiny_tokenizer):
    assert SEP_ID not in tiny_tokenizer.encode(["<sep>"])[0]


def test_special_ids_decode_to_nothing(tiny_tokenizer):
    hello = tiny_tokenizer.encode(["Hello"])[0]
    assert tiny_tokenizer.decode([BOS_ID, *hello, SEP_ID, EOS_ID, PAD_ID, PAD_ID]) == "Hello"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_round_trip_property(tiny_tokenizer, raw):
    text = normalize(raw)
    ids = tiny_tokenizer.encode([text])[0]
    assert UNK_ID not in ids
    assert tiny_tokenizer.decode(ids) == text


def test_save_and_load_give_the_same_ids(tiny_tokenizer, tmp_path):
    path = tmp_path / "tokenizer.model"
    tiny_tokenizer.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.encode(TINY_CORPUS[:5]) == tiny_tokenizer.encode(TINY_CORPUS[:5])
    vocab = path.with_suffix(".vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == tiny_tokenizer.vocab_size
    assert vocab[SEP_ID].startswith("<sep>\t")


def test_training_is_deterministic():
    first = Tokenizer.train(TINY_CORPUS, TokenizerConfig(vocab_size=400), seed=3)
    second = Tokenizer.train(TINY_CORPUS, TokenizerConfig(vocab_size=400), seed=3)
    assert first.model_proto == second.model_proto


def test_missing_and_corrupt_models_name_the_file(tmp_path):
    with pytest.raises(TokenizerError, match=r"nope\.model: cannot read tokenizer model"):
        Tokenizer.load(tmp_path / "nope.model")
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(b"this is not a protobuf")
    with pytest.raises(TokenizerError, match=r"corrupt\.model: not a SentencePiece model"):
        Tokenizer.load(corrupt)


def test_too_small_vocabulary_is_a_clear_error():
    with pytest.raises(
        TokenizerError,
        match=r"vocab_size 280 is too small for this corpus: it needs at least 3\d\d",
    ):
        Tokenizer.train(TINY_CORPUS, TokenizerConfig(vocab_size=280))


def test_join_context_puts_separators_between_turns_and_eos_last():
    assert join_context([[10, 11], [12], [13, 14]]) == [10, 11, SEP_ID, 12, SEP_ID, 13, 14, EOS_ID]
    assert join_context([[7]]) == [7, EOS_ID]


def test_canonical_ids_join_pieces_that_differ_only_in_case_or_word_start(tiny_tokenizer):
    canonical = tiny_tokenizer.canonical_ids().tolist()
    assert len(canonical) == tiny_tokenizer.vocab_size
    assert canonical[:5] == [PAD_ID, UNK_ID, BOS_ID, EOS_ID, SEP_ID]  # specials stay apart

    def key(token_id: int) -> str:
        return tiny_tokenizer.id_to_piece(token_id).lstrip("\u2581").lower()

    groups: dict[str, set[int]] = {}
    for token_id in range(5, len(canonical)):
        groups.setdefault(key(token_id), set()).add(canonical[token_id])
    assert all(len(firsts) == 1 for firsts in groups.values())  # one canonical id per reading
    assert len(set(canonical)) == len(groups) + 5  # and different readings stay apart
    upper, lower = (tiny_tokenizer.encode([word])[0] for word in ("What", "what"))
    assert canonical[upper[-2]] == canonical[lower[-2]]  # "W" and "▁w"
