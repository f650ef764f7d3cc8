import json

import pytest

from chatbot.cli import main
from chatbot.config import DataConfig, TokenizerConfig
from chatbot.errors import ConfigError, DataError
from chatbot.examples import encode_examples
from chatbot.pipeline import read_shards
from chatbot.prepare import Part, PreparedData, merge_parts, prepare, prepare_tokenizer
from chatbot.tokenizer import SPECIAL_IDS

from .conftest import TINY_CORPUS

CONFIG = DataConfig(history=2, valid_fraction=0.2, tokenizer=TokenizerConfig(vocab_size=400))


def write_jsonl_corpus(path, dialogues=30, bad_lines=()):
    lines = [
        json.dumps({"turns": [TINY_CORPUS[(i + j) % len(TINY_CORPUS)] for j in range(3 + i % 3)]})
        for i in range(dialogues)
    ]
    for number, text in bad_lines:
        lines.insert(number - 1, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_prepare_writes_a_complete_directory(tmp_path):
    corpus = write_jsonl_corpus(tmp_path / "chats.jsonl", bad_lines=[(3, "{not json")])
    out = tmp_path / "prepared"
    stats = prepare("jsonl", [corpus], out, CONFIG)

    shards = [
        f"{split}-{i:05d}-of-00008.tfrecord" for split in ("train", "valid") for i in range(8)
    ]
    files = ["manifest.json", "skipped.jsonl", "stats.json", "tokenizer.model", "tokenizer.vocab"]
    files += ["train.jsonl", "valid.jsonl", *shards]
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    assert json.loads((out / "stats.json").read_text()) == stats
    train, valid = stats["splits"]["train"], stats["splits"]["valid"]
    assert train["dialogues"] + valid["dialogues"] == 30 and valid["dialogues"] > 0
    turns = sum(3 + i % 3 for i in range(30))
    assert train["examples"] + valid["examples"] == turns - 30
    assert train["turns"] + valid["turns"] == turns
    assert stats["skipped"]["total"] == 1
    assert stats["skipped"]["first"][0]["line"] == 3
    assert stats["skipped"]["by_kind"] == {"malformed": 1}
    assert stats["tokenizer"]["special_ids"] == SPECIAL_IDS
    source = train["source_tokens"]
    assert source["p50"] <= source["p95"] <= source["max"] and source["limit"] == 64
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert skipped == [stats["skipped"]["first"][0]]

    data = PreparedData.load(out)
    assert data.config == CONFIG
    assert len(data.examples("train")) == train["examples"]
    assert len(data.examples("valid")) == valid["examples"]
    assert all(1 <= len(ex.context) <= 2 for ex in data.examples("train"))
    assert data.manifest["inputs"] == [str(corpus)]


def test_backward_data_turns_the_same_examples_around_with_the_same_tokenizer(tmp_path):
    corpus = write_jsonl_corpus(tmp_path / "chats.jsonl")
    prepare("jsonl", [corpus], tmp_path / "forward", CONFIG)
    backward_config = CONFIG.model_copy(update={"direction": "backward"})
    prepare("jsonl", [corpus], tmp_path / "backward", backward_config)
    forward, backward = (
        PreparedData.load(tmp_path / "forward"),
        PreparedData.load(tmp_path / "backward"),
    )
    assert backward.config.direction == "backward"
    for split in ("train", "valid"):
        assert [(ex.response, ex.context[-1]) for ex in forward.examples(split)] == [
            (ex.context[0], ex.response) for ex in backward.examples(split)
        ]
    # MMI-bidi scores the forward model's replies with the backward model: same ids needed
    assert (tmp_path / "forward" / "tokenizer.model").read_bytes() == (
        tmp_path / "backward" / "tokenizer.model"
    ).read_bytes()


def test_texts_are_normalized_before_they_are_written(tmp_path):
    corpus = tmp_path / "c.tsv"
    corpus.write_text("How are you ?\tI ’ m fine , thanks .\n" * 4, encoding="utf-8")
    out = tmp_path / "p"
    prepare("tsv", [corpus], out, DataConfig(valid_fraction=0, tokenizer={"vocab_size": 300}))
    example = PreparedData.load(out).examples("train")[0]
    assert (example.context, example.response) == (("How are you?",), "I'm fine, thanks.")


def test_explicit_validation_inputs_replace_the_fraction(tmp_path):
    train = write_jsonl_corpus(tmp_path / "train.jsonl", dialogues=20)
    valid = write_jsonl_corpus(tmp_path / "valid.jsonl", dialogues=5)
    stats = prepare("jsonl", [train], tmp_path / "p", CONFIG, valid_inputs=[valid])
    assert stats["splits"]["train"]["dialogues"] == 20
    assert stats["splits"]["valid"]["dialogues"] == 5


def test_nothing_usable_is_an_error_that_names_the_input_and_writes_nothing(tmp_path):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"turns": ["only one"]}\n[1, 2]\n', encoding="utf-8")
    out = tmp_path / "p"
    with pytest.raises(
        DataError, match=r"no usable dialogues in .*bad\.jsonl .*2 record\(s\) skipped"
    ):
        prepare("jsonl", [corpus], out, CONFIG)
    assert not out.exists()


def test_missing_input_is_an_error_that_names_it(tmp_path):
    with pytest.raises(DataError, match=r"missing\.jsonl: no such file"):
        prepare("jsonl", [tmp_path / "missing.jsonl"], tmp_path / "p", CONFIG)


def test_a_crash_while_writing_leaves_no_directory(tmp_path, monkeypatch):
    corpus = write_jsonl_corpus(tmp_path / "c.jsonl")

    def crash(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("chatbot.tokenizer.Tokenizer.save", crash)
    with pytest.raises(OSError):
        prepare("jsonl", [corpus], tmp_path / "p", CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    corpus = write_jsonl_corpus(tmp_path / "c.jsonl")
    out = tmp_path / "p"
    prepare("jsonl", [corpus], out, CONFIG)
    with pytest.raises(DataError, match="already exists"):
        prepare("jsonl", [corpus], out, CONFIG)
    stats = prepare(
        "jsonl", [corpus], out, CONFIG.model_copy(update={"history": 1}), overwrite=True
    )
    assert PreparedData.load(out).config.history == 1
    assert stats["splits"]["train"]["examples"] > 0


def test_loading_a_directory_that_is_not_prepared_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: no such prepared data directory"):
        PreparedData.load(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match=r"half/manifest\.json: missing"):
        PreparedData.load(tmp_path / "half")
    (tmp_path / "half" / "manifest.json").write_text('{"format_version": 99}')
    with pytest.raises(DataError, match=r"format_version 99 is not 2"):
        PreparedData.load(tmp_path / "half")


def test_a_directory_prepared_before_shards_fails_with_one_line_saying_to_prepare_again(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text('{"format_version": 1}')
    with pytest.raises(DataError) as caught:
        PreparedData.load(tmp_path / "old")
    message = str(caught.value)
    assert "\n" not in message and "run `chatbot prepare` on the corpus again" in message


def test_training_on_a_directory_prepared_before_shards_is_one_line_of_error(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text('{"format_version": 1}')
    code = main(["train", "--data", str(tmp_path / "old"), "--out", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1, err
    assert err.startswith("error: ") and "run `chatbot prepare` on the corpus again" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


@pytest.mark.shared_data
def test_real_dailydialog_train_zip_gives_the_published_counts(shared_data, tmp_path):
    config = DataConfig(history=1, tokenizer=TokenizerConfig(vocab_size=2000))
    stats = prepare(
        "dailydialog", [shared_data / "dailydialog" / "train.zip"], tmp_path / "dd", config
    )
    splits = stats["splits"].values()
    assert sum(s["dialogues"] for s in splits) == 11_118
    assert sum(s["examples"] for s in splits) == 76_053
    assert stats["skipped"]["total"] == 0


def write_sums(path):
    """A TSV of sums and a line with user symbols, as an exact-answer task would have."""
    lines = [f"{a}+{a * 3 + 7}\t{a * 4 + 7}" for a in range(0, 999, 25)]
    lines.append("speed of <num> in km/h?\t<num> km/h")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


EXACT = DataConfig(
    history=1,
    valid_fraction=0.1,
    normalizer={"nfkc": False, "unify_quotes": False, "detokenize_punctuation": False},
    tokenizer={"model_type": "char", "user_defined_symbols": ["<num>", "km/h"]},
)


def test_a_char_model_with_symbols_keeps_every_answer_exactly(tmp_path):
    out = tmp_path / "p"
    stats = prepare("tsv", [write_sums(tmp_path / "sums.tsv")], out, EXACT)
    tokenizer = stats["tokenizer"]
    assert tokenizer["model_type"] == "char" and tokenizer["requested_vocab_size"] == 8000
    assert tokenizer["vocab_size"] < 300  # specials, 2 symbols, 256 bytes, the characters
    data = PreparedData.load(out)
    assert data.config == EXACT
    examples = data.examples("train") + data.examples("valid")
    texts = [text for ex in examples for text in (*ex.context, ex.response)]
    assert [data.tokenizer.decode(ids) for ids in data.tokenizer.encode(texts)] == texts
    pieces = [data.tokenizer.id_to_piece(i) for i in data.tokenizer.encode(["<num> km/h"])[0]]
    assert pieces == ["\u2581", "<num>", "\u2581", "km/h"]


@pytest.mark.parametrize(
    ("normalizer", "symbol", "instead"),
    [({}, "it’s", "it's"), ({"lowercase": True}, "<NUM>", "<num>")],
)
def test_a_symbol_the_normalizer_rewrites_is_an_error_before_anything_is_written(
    tmp_path, normalizer, symbol, instead
):
    config = DataConfig(
        normalizer=normalizer, tokenizer={"model_type": "char", "user_defined_symbols": [symbol]}
    )
    with pytest.raises(ConfigError, match=f"{symbol!r} never occurs .* has {instead!r} instead"):
        prepare("tsv", [write_sums(tmp_path / "sums.tsv")], tmp_path / "p", config)
    assert not (tmp_path / "p").exists()


def test_a_directory_prepared_before_the_tokenizer_options_still_loads(tmp_path):
    """Such a manifest's tokenizer section has no split_digits nor user_defined_symbols."""
    out = tmp_path / "p"
    prepare("jsonl", [write_jsonl_corpus(tmp_path / "c.jsonl")], out, CONFIG)
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("split_digits", "user_defined_symbols"):
        del manifest["config"]["tokenizer"][key]
    (out / "manifest.json").write_text(json.dumps(manifest))
    data = PreparedData.load(out)
    assert data.config == CONFIG
    assert data.tokenizer.decode(data.tokenizer.encode(["Hello, 123"])[0]) == "Hello, 123"


def test_prepare_flags_set_the_tokenizer_options(tmp_path, capsys):
    sums = write_sums(tmp_path / "sums.tsv")
    out = tmp_path / "p"
    flags = ["prepare", "--corpus", "tsv", "--input", str(sums), "--out", str(out)]
    code = main(
        [
            *flags,
            "--model-type",
            "char",
            "--split-digits",
            "--user-defined-symbols",
            "<num>",
            "km/h",
        ]
    )
    assert code == 0
    assert "tokenizer: char, 2" in capsys.readouterr().out  # "276 pieces of 8,000 asked: ..."
    tokenizer = PreparedData.load(out).config.tokenizer
    assert (tokenizer.model_type, tokenizer.split_digits) == ("char", True)
    assert tokenizer.user_defined_symbols == ("<num>", "km/h")

    assert main([*flags[:-1], str(tmp_path / "w"), "--model-type", "word", "--split-digits"]) == 1
    assert "no effect on a word model" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_a_given_tokenizer_is_reused_byte_for_byte(tmp_path):
    corpus = write_jsonl_corpus(tmp_path / "chats.jsonl")
    prepare("jsonl", [corpus], tmp_path / "first", CONFIG)
    other = write_jsonl_corpus(tmp_path / "other.jsonl", dialogues=12)
    given = tmp_path / "first" / "tokenizer.model"
    stats = prepare("jsonl", [other], tmp_path / "second", CONFIG, tokenizer_from=given)
    assert (tmp_path / "second" / "tokenizer.model").read_bytes() == given.read_bytes()
    assert stats["tokenizer"]["from"] == str(given)


def test_the_tokenizer_flag_takes_a_directory_and_a_bad_file_is_named(tmp_path, capsys):
    corpus = write_jsonl_corpus(tmp_path / "chats.jsonl")
    prepare("jsonl", [corpus], tmp_path / "first", CONFIG)
    args = ["prepare", "--corpus", "jsonl", "--input", str(corpus), "--vocab-size", "400"]
    assert (
        main([*args, "--out", str(tmp_path / "second"), "--tokenizer", str(tmp_path / "first")])
        == 0
    )
    assert "tokenizer: " + str(tmp_path / "first" / "tokenizer.model") in capsys.readouterr().out
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    assert main([*args, "--out", str(tmp_path / "third"), "--tokenizer", str(bad)]) != 0
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "third").exists()


def test_generic_replies_are_dropped_from_the_training_split_only(tmp_path):
    generic = [
        json.dumps({"turns": [f"Here is gift number {i}.", "Thank you."]}) for i in range(40)
    ]
    specific = [
        json.dumps({"turns": [f"What is {i} plus one?", f"It is {i + 1}."]}) for i in range(40)
    ]
    corpus = tmp_path / "chats.jsonl"
    corpus.write_text("\n".join(generic + specific) + "\n", encoding="utf-8")
    config = CONFIG.model_copy(update={"max_reply_entropy": 2.0})
    stats = prepare("jsonl", [corpus], tmp_path / "p", config)
    data = PreparedData.load(tmp_path / "p")
    assert all(ex.response != "Thank you." for ex in data.examples("train"))
    assert any(ex.response.startswith("It is") for ex in data.examples("train"))
    assert any(ex.response == "Thank you." for ex in data.examples("valid"))
    dropped = stats["generic_filter"]
    assert dropped["replies_dropped"] == 1 and dropped["most_dropped"][0]["reply"] == "thank you"
    valid = stats["splits"]["valid"]["examples"]
    assert stats["splits"]["train"]["examples"] == 80 - valid - dropped["examples_dropped"]
    assert len(data.examples("train")) == stats["splits"]["train"]["examples"]


def test_shards_hold_the_token_ids_of_the_jsonl_examples(tmp_path):
    corpus = write_jsonl_corpus(tmp_path / "chats.jsonl")
    prepare("jsonl", [corpus], tmp_path / "p", CONFIG)
    data = PreparedData.load(tmp_path / "p")
    for split in ("train", "valid"):
        shards = data.shards(split)
        assert sum(s.examples for s in shards) == len(data.examples(split)) > 0
        encoded = encode_examples(data.examples(split), data.tokenizer)
        expected = sorted(
            (tuple(s.tolist()), tuple(t.tolist()))
            for s, t in zip(encoded.sources, encoded.targets, strict=True)
        )
        dataset = read_shards([s.path for s in shards], shuffle=False, seed=0)
        read = sorted(
            (tuple(s.tolist()), tuple(t.tolist())) for s, t in dataset.as_numpy_iterator()
        )
        assert read == expected


def _example_set(data, split):
    return sorted(ex.to_json() for ex in data.examples(split))


def test_parts_prepared_apart_and_merged_equal_one_process(tmp_path):
    corpus = write_jsonl_corpus(tmp_path / "chats.jsonl", dialogues=60, bad_lines=[(3, "{")])
    whole = prepare("jsonl", [corpus], tmp_path / "whole", CONFIG)
    info = prepare_tokenizer("jsonl", [corpus], tmp_path / "tok", CONFIG)
    assert info["train_dialogues"] == whole["splits"]["train"]["dialogues"]
    assert (tmp_path / "tok" / "tokenizer.model").read_bytes() == (
        tmp_path / "whole" / "tokenizer.model"
    ).read_bytes()
    tokenizer = tmp_path / "tok" / "tokenizer.model"
    for index in (2, 0, 1):
        prepare("jsonl", [corpus], tmp_path / "parts", CONFIG, tokenizer_from=tokenizer,
                part=Part(index, 3))  # fmt: skip
    with pytest.raises(DataError, match="no such prepared data"):
        PreparedData.load(tmp_path / "nothing")
    with pytest.raises(DataError, match=r"manifest\.json: missing"):
        PreparedData.load(tmp_path / "parts")  # not a prepared directory until merged
    merged = merge_parts(tmp_path / "parts")

    a, b = PreparedData.load(tmp_path / "whole"), PreparedData.load(tmp_path / "parts")
    for split in ("train", "valid"):
        assert _example_set(a, split) == _example_set(b, split)
        assert merged["splits"][split] == whole["splits"][split]
        assert len(b.shards(split)) == 3 * 8
    assert merged["skipped"]["by_kind"] == whole["skipped"]["by_kind"] == {"malformed": 1}
    assert (tmp_path / "parts" / "skipped.jsonl").read_text() == (
        tmp_path / "whole" / "skipped.jsonl"
    ).read_text()


def test_merging_refuses_a_missing_part_and_parts_need_a_shared_tokenizer(tmp_path):
    corpus = write_jsonl_corpus(tmp_path / "chats.jsonl")
    with pytest.raises(ConfigError, match="--tokenizer-only"):
        prepare("jsonl", [corpus], tmp_path / "parts", CONFIG, part=Part(0, 2))
    prepare_tokenizer("jsonl", [corpus], tmp_path / "tok", CONFIG)
    tokenizer = tmp_path / "tok" / "tokenizer.model"
    prepare("jsonl", [corpus], tmp_path / "parts", CONFIG, tokenizer_from=tokenizer,
            part=Part(1, 2))  # fmt: skip
    with pytest.raises(DataError, match=r"1 part\(s\) found for 2; .*part-00000-of-00002"):
        merge_parts(tmp_path / "parts")
    assert not (tmp_path / "parts" / "manifest.json").exists()
