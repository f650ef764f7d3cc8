import json

import pytest

from chatbot.config import DataConfig, TokenizerConfig
from chatbot.errors import DataError
from chatbot.prepare import PreparedData, prepare
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

    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "skipped.jsonl",
        "stats.json",
        "tokenizer.model",
        "tokenizer.vocab",
        "train.jsonl",
        "valid.jsonl",
    ]
    assert json.loads((out / "stats.json").read_text()) == stats
    train, valid = stats["splits"]["train"], stats["splits"]["valid"]
    assert (train["dialogues"], valid["dialogues"]) == (24, 6)
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
    with pytest.raises(DataError, match=r"format_version 99 is not 1"):
        PreparedData.load(tmp_path / "half")


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
