import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.config import DataConfig, TokenizerConfig, parse_config
from chatbot.errors import ConfigError, TokenizerError
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
    split_context,
    unmark_spaces,
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


MODEL_TYPES = ["unigram", "bpe", "char", "word"]
SYMBOLS = ("<num>", "km/h")
# Every type, and every option on each type that takes it (a word model takes neither).
VARIANTS = {
    **{kind: TokenizerConfig(model_type=kind, vocab_size=400) for kind in MODEL_TYPES},
    **{
        f"{kind}-split_digits": TokenizerConfig(model_type=kind, vocab_size=400, split_digits=True)
        for kind in ("unigram", "bpe", "char")
    },
    **{
        f"{kind}-symbols": TokenizerConfig(
            model_type=kind, vocab_size=400, user_defined_symbols=SYMBOLS
        )
        for kind in ("unigram", "bpe", "char")
    },
}
SUMS = [f"{a}+{b}={a + b}" for a in range(0, 1000, 37) for b in range(0, 1000, 91)]
CORPUS = TINY_CORPUS + SUMS + ["Drive at 50 km/h to <num> town.", "<num> km/h is fast"] * 5


@pytest.fixture(scope="module")
def variants() -> dict[str, Tokenizer]:
    return {name: Tokenizer.train(CORPUS, config) for name, config in VARIANTS.items()}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_model_type_trains_and_round_trips(variants, model_type):
    tokenizer = variants[model_type]
    pieces = [tokenizer.id_to_piece(i) for i in range(5)]
    assert pieces == ["<pad>", "<unk>", "<s>", "</s>", "<sep>"]
    for text in ["Hello, do you like pizza?", "Unseen words: zebra 日本語 😀", "123+456=579"]:
        ids = tokenizer.encode([text])[0]
        assert UNK_ID not in ids  # byte fallback, whatever the type
        assert tokenizer.decode(ids) == text


def test_char_and_word_models_use_sentencepiece_pieces(variants):
    char, word = variants["char"], variants["word"]
    ids = char.encode(["pizza 12"])[0]
    assert [char.id_to_piece(i) for i in ids] == list("\u2581pizza\u258112")
    assert [word.id_to_piece(i) for i in word.encode(["I like pizza"])[0]] == [
        "\u2581I",
        "\u2581like",
        "\u2581pizza",
    ]


def test_an_unknown_word_of_a_word_model_decodes_with_its_spaces(variants):
    """SentencePiece spells an unknown word's piece ("▁zebra") in bytes, mark included, and
    decodes the mark verbatim; `decode` makes it the space it stands for."""
    word = variants["word"]
    ids = word.encode(["zebra likes pizza zebra"])[0]
    assert word.id_to_piece(ids[0]) == "<0xE2>"  # the first byte of "▁"
    assert word.decode(ids) == "zebra likes pizza zebra"
    assert word.decode(word.encode(["pizza"])[0] + word.encode(["zebra"])[0]) == "pizza zebra"
    assert unmark_spaces("\u2581zebra likes\u2581pizza") == "zebra likes pizza"
    assert unmark_spaces("a_b") == "a_b"


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_split_digits_leaves_no_multi_digit_piece(variants, model_type):
    def digits(piece: str) -> int:  # a byte piece, such as <0x31> for "1", is one character
        if byte := re.fullmatch("<0x([0-9A-F]{2})>", piece):
            return int(chr(int(byte[1], 16)).isdigit())
        return sum(map(str.isdigit, piece))

    split, merged = variants[f"{model_type}-split_digits"], variants[model_type]
    assert max(digits(split.id_to_piece(i)) for i in range(split.vocab_size)) == 1
    assert max(digits(merged.id_to_piece(i)) for i in range(merged.vocab_size)) > 1
    ids = split.encode(["It is 12345 and 2024-06-30."])[0]
    assert sum(map(digits, map(split.id_to_piece, ids))) == 13  # one piece a digit
    assert split.decode(ids) == "It is 12345 and 2024-06-30."


@pytest.mark.parametrize("model_type", ["unigram", "bpe", "char"])
def test_user_defined_symbols_are_one_piece_after_the_special_ids(variants, model_type):
    tokenizer = variants[f"{model_type}-symbols"]
    assert [tokenizer.id_to_piece(i) for i in (5, 6, 7)] == ["<num>", "km/h", "<0x00>"]
    ids = tokenizer.encode(["go <num>km/h, <num>"])[0]
    assert ids.count(5) == 2 and ids.count(6) == 1
    assert tokenizer.decode(ids) == "go <num>km/h, <num>"
    assert SEP_ID not in tokenizer.encode(["<sep>"])[0]  # control pieces stay out of text


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_a_vocabulary_the_data_cannot_fill_shrinks_to_what_it_has(model_type):
    """SentencePiece's `hard_vocab_limit: false`: asking for more pieces than the data holds
    gives the pieces it holds, for every type (a char model: specials, bytes, characters)."""
    texts = ["12+34=46", "5+6=11", "7+80=87"] * 20
    tokenizer = Tokenizer.train(texts, TokenizerConfig(model_type=model_type, vocab_size=50_000))
    assert tokenizer.vocab_size < 400
    if model_type == "char":
        assert tokenizer.vocab_size == 5 + 256 + len(set("".join(texts))) + 1  # and "▁"
    assert all(tokenizer.decode(tokenizer.encode([text])[0]) == text for text in texts)


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


# Text drawn from anything Unicode has, and from what the tokenizers were trained on (digits,
# words, symbols), so that known pieces, unknown ones and symbols all meet.
TEXT = st.lists(
    st.text(max_size=12)
    | st.sampled_from([*SYMBOLS, "pizza", "the", "number", "12", "999", "+", "=", " ", "\u2581"])
    | st.integers(0, 10**6).map(str),
    max_size=8,
).map("".join)


@settings(max_examples=40, deadline=None)
@given(raw=TEXT, name=st.sampled_from(sorted(VARIANTS)))
def test_every_variant_round_trips_normalized_text_exactly(variants, raw, name):
    """The property the exact-answer tasks rest on: the text a model is trained to produce is
    the text its ids decode to, whatever the model type and options."""
    tokenizer = variants[name]
    text = normalize(raw)
    ids = tokenizer.encode([text])[0]
    assert UNK_ID not in ids
    assert tokenizer.decode(ids) == text


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


@pytest.mark.parametrize(
    ("model_type", "kept"), [("char", ["\u2581", "e"]), ("word", ["\u2581is"])]
)
def test_a_small_char_or_word_vocabulary_keeps_the_commonest_and_spells_the_rest(model_type, kept):
    tokenizer = Tokenizer.train(TINY_CORPUS, TokenizerConfig(model_type=model_type, vocab_size=270))
    assert tokenizer.vocab_size == 270
    first = [tokenizer.id_to_piece(i) for i in range(261, 261 + len(kept))]
    assert first == kept
    assert all(tokenizer.decode(tokenizer.encode([text])[0]) == text for text in TINY_CORPUS)


def test_join_context_puts_separators_between_turns_and_eos_last():
    assert join_context([[10, 11], [12], [13, 14]]) == [10, 11, SEP_ID, 12, SEP_ID, 13, 14, EOS_ID]
    assert join_context([[7]]) == [7, EOS_ID]


def test_split_context_undoes_join_context_padded_or_not():
    turns = [[10, 11], [12], [13, 14]]
    assert split_context(join_context(turns)) == turns
    assert split_context([*join_context(turns), PAD_ID, PAD_ID]) == turns
    assert split_context([5, 6, EOS_ID]) == [[5, 6]]
    assert split_context([5, 6, SEP_ID, 7, 8, EOS_ID])[-1] == [7, 8]  # the newest turn


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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model_type": "word", "split_digits": True}, "no effect on a word model"),
        ({"model_type": "word", "user_defined_symbols": ["<num>"]}, "no effect on a word model"),
        ({"user_defined_symbols": ["a b"]}, "'a b' must be non-empty, without whitespace"),
        ({"user_defined_symbols": [""]}, "must be non-empty"),
        ({"user_defined_symbols": ["\u2581x"]}, "without whitespace or \u2581"),
        ({"user_defined_symbols": ["<sep>"]}, "'<sep>' is a special piece"),
        ({"user_defined_symbols": ["<num>", "<num>"]}, "listed twice"),
        ({"model_type": "wordpiece"}, "'unigram', 'bpe', 'char' or 'word'"),
    ],
)
def test_options_that_cannot_work_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(DataConfig, {"tokenizer": options})


def test_a_config_without_the_new_fields_means_what_it_meant():
    """Prepared data and bundles from before these options have none of their keys."""
    config = parse_config(TokenizerConfig, {"model_type": "unigram", "vocab_size": 8000})
    assert (config.split_digits, config.user_defined_symbols) == (False, ())


def test_a_bundle_from_before_the_options_loads_and_answers(tiny_bundle, tmp_path):
    """A bundle trained before these options has none of their keys in its config.yaml, and
    its card.json counts the settings without them: it loads with their defaults."""
    import json
    import shutil

    import yaml

    from chatbot.bot import Chatbot

    bundle = shutil.copytree(tiny_bundle, tmp_path / "old")
    tree = yaml.safe_load((bundle / "config.yaml").read_text("utf-8"))
    for key in ("split_digits", "user_defined_symbols"):
        del tree["data"]["tokenizer"][key]
    (bundle / "config.yaml").write_text(yaml.safe_dump(tree, sort_keys=False), "utf-8")
    card = json.loads((bundle / "card.json").read_text("utf-8"))
    card["files"]["config.yaml"]["settings"] -= 2
    (bundle / "card.json").write_text(json.dumps(card), "utf-8")
    bot = Chatbot.load(bundle)
    assert (
        bot.config.data.tokenizer.split_digits,
        bot.config.data.tokenizer.user_defined_symbols,
    ) == (False, ())
    assert bot.reply("Hi, how are you?", min_length=2).reply_tokens >= 2
