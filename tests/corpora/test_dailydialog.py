"""DailyDialog importer: release zip layout, extracted files, quirks of the real corpus."""

import zipfile
from pathlib import Path

import pytest

from chatbot.corpora import ImportResult, Turn, load_corpus
from chatbot.errors import DataError

DIALOGUES = (
    "Say , Jim , how about going for a few beers after dinner ? __eou__ "
    "You know that is tempting but is really not good for our fitness . __eou__ "
    "What do you mean ? __eou__\n"
    "Can you do push-ups ? __eou__ Of course I can . It \u2019 s a piece of cake ! __eou__\n"
)


def write_zip(path: Path, split: str, dialogues: str, acts: str, emotions: str) -> Path:
    """A zip laid out like the release: `<split>/` holding the text and both label files."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{split}/", "")
        archive.writestr(f"{split}/dialogues_act_{split}.txt", acts)
        archive.writestr(f"{split}/dialogues_emotion_{split}.txt", emotions)
        archive.writestr(f"{split}/dialogues_{split}.txt", dialogues.encode("utf-8"))
    return path


def test_release_zip_reads_only_the_dialogues_member(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "train.zip", "train", DIALOGUES, "3 4 2\n2 1\n", "0 0 0\n0 4\n")

    result = load_corpus("dailydialog", [archive])

    member = f"{archive}/train/dialogues_train.txt"
    assert result.skipped == []
    assert [d.source for d in result.dialogues] == [f"{member}:1", f"{member}:2"]
    assert result.dialogues[0].turns == (
        Turn("Say , Jim , how about going for a few beers after dinner ?", "A"),
        Turn("You know that is tempting but is really not good for our fitness .", "B"),
        Turn("What do you mean ?", "A"),
    )


def test_act_label_count_mismatch_does_not_lose_utterances(tmp_path: Path) -> None:
    # The real train split has one dialogue with 12 utterances and 11 act labels.
    acts = "3 4\n1\n"
    archive = write_zip(tmp_path / "train.zip", "train", DIALOGUES, acts, "0 0 0 0\n")

    result = load_corpus("dailydialog", [archive])

    assert [len(d.turns) for d in result.dialogues] == [3, 2]
    assert result.skipped == []


def test_pretokenized_text_and_mixed_apostrophes_are_kept_verbatim(tmp_path: Path) -> None:
    text = "I don't know . __eou__ It \u2019 s fine , isn't it ? __eou__\n"
    archive = write_zip(tmp_path / "validation.zip", "validation", text, "1 2\n", "0 0\n")

    (dialogue,) = load_corpus("dailydialog", [archive]).dialogues

    assert [t.text for t in dialogue.turns] == ["I don't know .", "It \u2019 s fine , isn't it ?"]


def test_extracted_file_with_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "dialogues_test.txt"
    path.write_bytes(
        b"Hi . __eou__ Hello . __eou__\r\n\r\n   \r\nBye . __eou__ See you . __eou__\r\n"
    )

    result = load_corpus("dailydialog", [path])

    assert result.skipped == []
    assert [d.source for d in result.dialogues] == [f"{path}:1", f"{path}:4"]
    assert result.dialogues[1].turns == (Turn("Bye .", "A"), Turn("See you .", "B"))


def test_bad_lines_are_skipped_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "dialogues_train.txt"
    path.write_bytes(
        b"One . __eou__ Two . __eou__\n"
        b"Alone . __eou__\n"
        b"First . __eou__ cut off in the mid\n"
        b"no marker at all\n"
        b"Caf\xe9 ? __eou__ Yes . __eou__\n"
        b"Three . __eou__ Four . __eou__"
    )

    result = load_corpus("dailydialog", [path])

    assert [(s.line, s.kind) for s in result.skipped] == [
        (5, "undecodable"),
        (2, "too_few_turns"),
        (3, "truncated"),
        (4, "malformed"),
    ]
    assert "cut off in the mid" in result.skipped[2].detail
    assert [d.source for d in result.dialogues] == [f"{path}:1", f"{path}:6"]


def test_empty_utterances_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "dialogues_train.txt"
    path.write_text("Hi . __eou__  __eou__ Hello . __eou__\n", encoding="utf-8")

    (dialogue,) = load_corpus("dailydialog", [path]).dialogues

    assert dialogue.turns == (Turn("Hi .", "A"), Turn("Hello .", "A"))


def test_directory_finds_dialogue_files_and_ignores_label_files(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "dialogues_train.txt").write_text(DIALOGUES, encoding="utf-8")
    (tmp_path / "train" / "dialogues_act_train.txt").write_text("1 2 3\n", encoding="utf-8")
    (tmp_path / "train" / "dialogues_emotion_train.txt").write_text("0 0 0\n", encoding="utf-8")

    result = load_corpus("dailydialog", [tmp_path])

    assert len(result.dialogues) == 2
    assert result.skipped == []


def test_label_file_given_explicitly_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dialogues_act_train.txt"
    path.write_text("1 2 3\n", encoding="utf-8")

    with pytest.raises(DataError, match=r"dialogues_act_train\.txt: a label file, not dialogues"):
        load_corpus("dailydialog", [path])


def test_zip_without_dialogues_member_is_an_error(tmp_path: Path) -> None:
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("train/dialogues_act_train.txt", "1 2\n")

    with pytest.raises(DataError, match=r"other.zip: no dialogues_<split>.txt inside this zip"):
        load_corpus("dailydialog", [archive])


def test_corrupt_zip_is_an_error(tmp_path: Path) -> None:
    archive = tmp_path / "train.zip"
    archive.write_bytes(b"not a zip at all")

    with pytest.raises(DataError, match=r"train\.zip: not a valid zip file"):
        load_corpus("dailydialog", [archive])


def test_directory_without_dialogue_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no dialogues_<split>.txt files found"):
        load_corpus("dailydialog", [tmp_path])


@pytest.fixture(scope="module")
def real_train(shared_data: Path) -> ImportResult:
    return load_corpus("dailydialog", [shared_data / "dailydialog" / "train.zip"])


@pytest.mark.shared_data
def test_real_train_zip(real_train: ImportResult) -> None:
    result = real_train

    assert len(result.dialogues) == 11_118
    assert sum(len(d.turns) for d in result.dialogues) == 87_171
    assert sum(len(d.turns) - 1 for d in result.dialogues) == 76_053
    assert result.skipped == []


@pytest.mark.shared_data
def test_real_train_keeps_the_dialogue_with_too_few_act_labels(real_train: ImportResult) -> None:
    dialogue = real_train.dialogues[7851]
    assert dialogue.source.endswith("train/dialogues_train.txt:7852")
    assert len(dialogue.turns) == 12
    assert dialogue.turns[0].text.startswith("Sam , can we stop at this bicycle shop ?")


@pytest.mark.shared_data
def test_real_train_keeps_curly_apostrophes(real_train: ImportResult) -> None:
    texts = [t.text for d in real_train.dialogues for t in d.turns]
    assert sum(text.count("\u2019") for text in texts) == 12_084
    assert any("'" in text for text in texts)


@pytest.mark.shared_data
def test_real_validation_zip(shared_data: Path) -> None:
    result = load_corpus("dailydialog", [shared_data / "dailydialog" / "validation.zip"])

    assert len(result.dialogues) == 1_000
    assert sum(len(d.turns) - 1 for d in result.dialogues) == 7_069
    assert result.skipped == []
