"""The exported SavedModel replies exactly as the `Chatbot` facade does, from strings alone."""

from __future__ import annotations

import re
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text  # (also registers the SentencePiece and normalization ops)
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.bot import Chatbot
from chatbot.bundle import CONFIG
from chatbot.cli import main
from chatbot.config import DataConfig, NormalizerConfig
from chatbot.errors import BundleError, ConfigError, DataError
from chatbot.export import (
    ExportedChatbot,
    export_saved_model,
    normalize_graph,
    squeeze_spaces,
    unmark_spaces_graph,
)
from chatbot.normalize import Normalizer
from chatbot.tokenizer import Tokenizer

from .conftest import train_tiny
from .test_tokenizer import CORPUS, VARIANTS

TRICKY_TEXTS = [
    "Hello , how are you ?",
    "I ’ m  fine , thanks .",
    "“Great”   day\t\n",
    "You don ’ t have to , we ’ ll see , they ’ ve gone",
    "I ’ Ve seen it , We'Re late , you ’ Ll go , I'VE won , O'Connell",
    "It ' s 50 % off ( maybe ) . $ 5 ...",
    "rock 'n' roll in the '90s",
    "ｆｕｌｌ width\u00a0space ﬁne",
    "a\u0007b\u200bc\ufeff d\u0378e\ue000f",  # control, format, unassigned (Cn), private
    "a\u2581b \u2028 c\u3000d\u0085e\x1cf",
    "I'M HERE ſ ᴬℌ İ ΟΔΟΣ ΑΣ\x00B \x000",
    "don't.won'tS it'sé itʼs",
    "日本語 😀 ok",
    "   ",
    "",
]
CASES = [  # (message, history oldest first)
    ("Hello, how are you today?", []),
    ("I ’ m  fine , thanks .", ["Hello , how are you today ?"]),
    ("What's your “favorite” food?", ["Hi", "  ", "I'm   fine.", "\u200b"]),
    ("It starts at eight o'clock.", ["Great, see you there!", "Sure, what time?", "Movies?"]),
    (" ".join(["the number is seven"] * 12), ["日本語 😀"]),
    ("ｆｕｌｌ width", ["", "", ""]),
]


def _history(cases: list[tuple[str, list[str]]]) -> tf.Tensor:
    """Histories as the signature takes them: [batch, turns], padded with empty strings."""
    width = max(len(history) for _, history in cases)
    rows = [[*history, *[""] * (width - len(history))] for _, history in cases]
    return tf.constant(rows, tf.string, shape=[len(cases), width])


def _call(signature, cases: list[tuple[str, list[str]]]) -> dict[str, np.ndarray]:
    messages = tf.constant([message for message, _ in cases])
    return {k: v.numpy() for k, v in signature(message=messages, history=_history(cases)).items()}


def _rows(out: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    return [dict(zip(out, values, strict=True)) for values in zip(*out.values(), strict=True)]


def _assert_same_reply(row: dict[str, np.ndarray], expected) -> None:
    candidate = expected.candidates[0]
    assert row["reply"].decode("utf-8") == expected.text
    assert row["reply_ids"][: row["reply_length"]].tolist() == list(candidate.ids)
    assert row["reply_length"] == candidate.tokens
    assert row["score"] == pytest.approx(candidate.score, rel=1e-5, abs=1e-4)
    assert row["log_prob"] == pytest.approx(candidate.log_prob, rel=1e-5, abs=1e-4)


def _variant(bundle: Path, path: Path, **decoding: Any) -> Path:
    """A copy of `bundle` with other decoding defaults."""
    path.mkdir()
    for file in bundle.iterdir():
        (path / file.name).write_bytes(file.read_bytes())
    config = yaml.safe_load((path / CONFIG).read_text("utf-8"))
    config["decoding"].update(decoding)
    (path / CONFIG).write_text(yaml.safe_dump(config), "utf-8")
    return path


@pytest.fixture(scope="module")
def bot(tiny_bundle: Path) -> Chatbot:
    return Chatbot.load(tiny_bundle)


@pytest.fixture(scope="module")
def exported(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    out = export_saved_model(tiny_bundle, tmp_path_factory.mktemp("export") / "chatbot" / "1")
    return tf.saved_model.load(str(out))


def test_signatures_take_and_return_strings(exported) -> None:
    assert set(exported.signatures) == {"serving_default", "context_ids", "normalize"}
    serving = exported.signatures["serving_default"]
    inputs = serving.structured_input_signature[1]
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in inputs.items()} == {
        "message": (tf.string, [None]),
        "history": (tf.string, [None, None]),
    }
    assert serving.structured_outputs["reply"].dtype == tf.string


def test_normalize_signature_matches_the_normalizer(exported, bot: Chatbot) -> None:
    out = exported.signatures["normalize"](text=tf.constant(TRICKY_TEXTS))["normalized"]
    assert [text.decode("utf-8") for text in out.numpy()] == list(map(bot.normalizer, TRICKY_TEXTS))


CONFIGS = [
    NormalizerConfig(),
    NormalizerConfig(lowercase=True),
    NormalizerConfig(nfkc=False, unify_quotes=False),
    NormalizerConfig(detokenize_punctuation=False, lowercase=True),
]


def _unicode_version_differences() -> list[str]:
    """The assigned characters (to Python) that a config normalizes differently on its own in
    the graph: those whose case mapping or decomposition one side's Unicode version lacks (such
    as U+A7D6, a capital letter since Unicode 14, which TensorFlow's ICU does not lower-case)."""
    chars = [
        c
        for c in map(chr, range(sys.maxunicode + 1))
        if unicodedata.category(c) not in ("Cs", "Cn")
    ]
    differing = set()
    for config in CONFIGS[:2]:  # NFKC, and NFKC then lower-casing: where the tables matter
        graph = normalize_graph(tf.constant(chars), config).numpy()
        python = map(Normalizer(config), chars)
        pairs = zip(chars, graph, python, strict=True)
        differing |= {c for c, g, p in pairs if g.decode("utf-8") != p}
    return sorted(differing)


# Python's Unicode tables and TensorFlow's ICU differ on code points one of them has not
# assigned yet (the module docstring of chatbot.export), so random text is drawn from the
# assigned characters they treat alike (plus the tricky ones above).
TEXT = st.text(
    st.deferred(  # built when the test first draws, not when the module is imported
        lambda: st.characters(
            exclude_categories=("Cs", "Cn"), exclude_characters=_unicode_version_differences()
        )
    )
    | st.sampled_from(list(" ,.'’‘“”`´?!$%()s mtdrevlSMT\u200b\u00a0\u2581\u0378\ue000\t\n")),
    max_size=40,
)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.model_dump())))
def test_graph_normalizer_agrees_with_python_on_every_rule(config: NormalizerConfig) -> None:
    graph = normalize_graph(tf.constant(TRICKY_TEXTS), config).numpy()
    assert [text.decode("utf-8") for text in graph] == list(map(Normalizer(config), TRICKY_TEXTS))


@settings(max_examples=40, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=20), st.sampled_from(CONFIGS))
def test_graph_normalizer_agrees_with_python_on_random_text(
    texts: list[str], config: NormalizerConfig
) -> None:
    graph = [text.decode("utf-8") for text in normalize_graph(tf.constant(texts), config).numpy()]
    assert graph == list(map(Normalizer(config), texts))


def test_context_ids_signature_matches_the_facade(exported, bot: Chatbot) -> None:
    out = _call(exported.signatures["context_ids"], CASES)
    for row, (message, history) in enumerate(CASES):
        expected = bot.context_ids(message, history)
        assert out["source_ids"][row, : out["source_length"][row]].tolist() == expected
        assert not out["source_ids"][row, out["source_length"][row] :].any()  # PAD after
    assert out["source_length"][4] == bot.config.data.max_source_len  # cut from the left


def test_history_may_have_no_columns(exported, bot: Chatbot) -> None:
    signature = exported.signatures["context_ids"]
    out = signature(message=tf.constant(["Hello ,  you"]), history=tf.zeros([1, 0], tf.string))
    assert out["source_ids"].numpy()[0].tolist() == bot.context_ids("Hello ,  you")


def test_detokenizing_matches_the_facade(bot: Chatbot) -> None:
    """Replies of the tiny model are mostly blank; byte pieces, specials and words are not."""
    module = ExportedChatbot(bot)
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, bot.tokenizer.vocab_size, size).tolist() for size in range(0, 40, 3)]
    rows += [bot.tokenizer.encode(["日本語 😀  ok"])[0], [261, 261, 5, 261]]
    graph = squeeze_spaces(module.tokenizer.detokenize(tf.ragged.constant(rows, tf.int32)))
    expected = [" ".join(bot.tokenizer.decode(row).split()) for row in rows]
    assert [text.decode("utf-8") for text in graph.numpy()] == expected


def test_replies_match_the_facade(exported, bot: Chatbot) -> None:
    assert bot.config.decoding.strategy == "greedy"  # tiny_bundle's default
    serving = exported.signatures["serving_default"]
    for message, history in CASES:
        (row,) = _rows(_call(serving, [(message, history)]))
        _assert_same_reply(row, bot.reply(message, history))


def test_batched_replies_match_the_facade_batch(exported, bot: Chatbot) -> None:
    rows = _rows(_call(exported.signatures["serving_default"], CASES))
    expected = bot.reply_batch([m for m, _ in CASES], [h for _, h in CASES])
    for row, reply in zip(rows, expected, strict=True):
        _assert_same_reply(row, reply)


def test_an_empty_message_fails_the_call(exported) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match="message is empty"):
        exported.signatures["serving_default"](
            message=tf.constant([" \u200b "]), history=tf.constant([["Hi"]])
        )


def test_cli_exports_beam_and_mmi_and_refuses_to_overwrite(tiny_bundle: Path, tmp_path, capsys):
    """A bundle whose defaults use beam search, constraints and MMI reranking, via the CLI."""
    variant = _variant(
        tiny_bundle,
        tmp_path / "bundle",
        strategy="beam",
        beam_width=3,
        n_best=2,
        max_length=6,
        mmi_lambda=0.5,
        no_repeat_ngram=2,
        banned_phrases=["pizza"],
    )
    out = tmp_path / "served" / "1"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("keep me")

    assert main(["export", "--model", str(variant), "--out", str(out)]) == 1
    assert f"error: {out}: already exists" in capsys.readouterr().err
    assert (out / "old.txt").read_text() == "keep me"

    assert main(["export", "--model", str(variant), "--out", str(out), "--force"]) == 0
    assert f"to {out}" in capsys.readouterr().out
    assert not (out / "old.txt").exists()
    assert (out / "assets.extra" / CONFIG).read_bytes() == (variant / CONFIG).read_bytes()
    assert not list(out.parent.glob(".*.tmp"))  # no temporary folder left behind

    serving = tf.saved_model.load(str(out)).signatures["serving_default"]
    variant_bot = Chatbot.load(variant)
    for case in CASES[:3]:
        (row,) = _rows(_call(serving, [case]))
        _assert_same_reply(row, variant_bot.reply(*case))


def test_seeded_sampling_matches_the_facade(tiny_bundle: Path, tmp_path) -> None:
    decoding = dict(strategy="sample", n_best=3, top_k=20, temperature=0.8, max_length=6)
    variant = _variant(tiny_bundle, tmp_path / "bundle", seed=7, repetition_penalty=1.3, **decoding)
    serving = tf.saved_model.load(str(export_saved_model(variant, tmp_path / "out")))
    variant_bot = Chatbot.load(variant)
    for case in CASES[:2]:
        (row,) = _rows(_call(serving.signatures["serving_default"], [case]))
        _assert_same_reply(row, variant_bot.reply(*case))


def test_specificity_defaults_export_and_decode_as_the_facade(tiny_bundle: Path, tmp_path) -> None:
    decoding = dict(strategy="beam", beam_width=3, max_length=6, specificity=4.0)
    variant = _variant(tiny_bundle, tmp_path / "bundle", **decoding)
    serving = tf.saved_model.load(str(export_saved_model(variant, tmp_path / "out")))
    variant_bot = Chatbot.load(variant)
    rows = _rows(_call(serving.signatures["serving_default"], CASES[:3]))
    for row, case in zip(rows, CASES[:3], strict=True):
        _assert_same_reply(row, variant_bot.reply(*case))


def test_a_missing_bundle_is_named(tmp_path, capsys) -> None:
    with pytest.raises(BundleError, match="nope"):
        export_saved_model(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "error: " in capsys.readouterr().err


def test_the_library_refuses_an_existing_directory(tiny_bundle: Path, tmp_path) -> None:
    with pytest.raises(DataError, match="--force"):
        export_saved_model(tiny_bundle, tmp_path)


@pytest.mark.parametrize(
    "decoding",
    [
        dict(strategy="beam", beam_width=4, length_penalty=0.6, mmi_backward=1.0),
        dict(strategy="sample", n_best=4, seed=3, mmi_backward=3.0, mmi_lambda=0.3),
    ],
)
def test_mmi_bidi_defaults_export_and_rerank_as_the_facade(
    bidi_bundle: Path, tmp_path, decoding: dict[str, Any]
) -> None:
    path = tmp_path / "bundle"
    shutil.copytree(bidi_bundle, path)
    config = yaml.safe_load((path / CONFIG).read_text("utf-8"))
    config["decoding"].update(decoding, max_length=8)
    (path / CONFIG).write_text(yaml.safe_dump(config), "utf-8")
    serving = tf.saved_model.load(str(export_saved_model(path, tmp_path / "out")))
    variant_bot = Chatbot.load(path)
    rows = _rows(_call(serving.signatures["serving_default"], CASES[:4]))
    for row, expected in zip(
        rows, variant_bot.reply_batch(*zip(*CASES[:4], strict=True)), strict=True
    ):
        _assert_same_reply(row, expected)


@pytest.mark.parametrize(("name", "value", "off"), [("stop", ["."], "[]"), ("logprobs", 0, "null")])
def test_stop_and_logprobs_defaults_are_refused_saying_what_to_change(
    tiny_bundle: Path, tmp_path, name: str, value: object, off: str
) -> None:
    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, path)
    config = yaml.safe_load((path / CONFIG).read_text("utf-8"))
    config["decoding"][name] = value
    (path / CONFIG).write_text(yaml.safe_dump(config), "utf-8")
    expected = f"set decoding.{name} to {off} in its config.yaml"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        export_saved_model(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tensorflow_text_tokenizes_every_tokenizer_variant_as_python_does() -> None:
    """Model types and options live in the SentencePiece model, which the graph's op applies:
    the graph's ids and detokenized text (as `ExportedChatbot` builds them) match the facade's,
    unknown words of a word model (spelled in bytes, word-boundary mark included) too."""
    texts = [*TRICKY_TEXTS, "123+456=579", "go <num>km/h, <num>", "zebra likes 99 zebras"]
    texts = [Normalizer()(text) for text in texts]
    rng = np.random.default_rng(0)
    for name, config in VARIANTS.items():
        tokenizer = Tokenizer.train(CORPUS, config)
        graph = tf_text.SentencepieceTokenizer(model=tokenizer.model_proto)
        ids = tokenizer.encode(texts)
        assert graph.tokenize(tf.constant(texts)).to_list() == ids, name
        rows = [*ids, *(rng.integers(0, tokenizer.vocab_size, 12).tolist() for _ in range(20))]
        text = squeeze_spaces(unmark_spaces_graph(graph.detokenize(tf.ragged.constant(rows))))
        expected = [" ".join(tokenizer.decode(row).split()) for row in rows]
        assert [t.decode("utf-8") for t in text.numpy()] == expected, name
        assert expected[: len(texts)] == texts


@pytest.fixture(scope="module")
def char_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle with the exact-answer tokenizer: characters, split digits, user symbols."""
    root = tmp_path_factory.mktemp("char_bundle")
    lines = [f"{a}+{a % 7}=?\t{a + a % 7} <num>" for a in range(0, 400, 7)]
    (root / "sums.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = {"model_type": "char", "split_digits": True, "user_defined_symbols": ["<num>"]}
    data = DataConfig(history=2, valid_fraction=0.1, tokenizer=tokenizer)
    overrides = ["model.embedding_dim=8", "model.hidden_size=16", "model.attention_units=8"]
    overrides += ["training.epochs=1", "training.batch_size=8", "training.warmup_steps=2"]
    return train_tiny(root, "tsv", root / "sums.tsv", data, overrides)


def test_a_char_bundle_with_symbols_exports_and_replies_as_the_facade(
    char_bundle: Path, tmp_path
) -> None:
    exported = tf.saved_model.load(str(export_saved_model(char_bundle, tmp_path / "out")))
    char_bot = Chatbot.load(char_bundle)
    cases = [("12+5=?", []), ("<num> 7+0=?", ["3+3=?", "6 <num>"]), *CASES[:2]]
    out = _call(exported.signatures["context_ids"], cases)
    for row, (message, history) in enumerate(cases):
        assert out["source_ids"][row, : out["source_length"][row]].tolist() == (
            char_bot.context_ids(message, history)
        )
    rows = _rows(_call(exported.signatures["serving_default"], cases))
    expected = char_bot.reply_batch([m for m, _ in cases], [h for _, h in cases])
    for row, reply in zip(rows, expected, strict=True):
        _assert_same_reply(row, reply)
