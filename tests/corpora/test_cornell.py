"""Cornell Movie-Dialogs importer: ISO-8859-1, CRLF, a cut-off last line, missing references."""

from pathlib import Path

import pytest

from chatbot.corpora import ImportResult, Turn, load_corpus
from chatbot.errors import DataError

LINES = [
    b"L1045 +++$+++ u0 +++$+++ m0 +++$+++ BIANCA +++$+++ They do not!",
    b"L1044 +++$+++ u2 +++$+++ m0 +++$+++ CAMERON +++$+++ They do to!",
    b"L985 +++$+++ u0 +++$+++ m0 +++$+++ BIANCA +++$+++ I hope so.",
    b"L984 +++$+++ u2 +++$+++ m0 +++$+++ CAMERON +++$+++ Caf\xe9 tonight? It's on me.",
    b"L474 +++$+++ u5 +++$+++ m0 +++$+++ KAT +++$+++ ",
    b"L475 +++$+++ u5 +++$+++ m0 +++$+++ KAT +++$+++ Fine.",
    b"L9 +++$+++ u5 +++$+++ m0 +++$+++ only four fields",
]
CUT_OFF = (
    b"L203490 +++$+++ u897 +++$+++ m58 +++$+++ SUE +++$+++ Reed. I was ready for the next step"
)
CONVERSATIONS = [
    b"u0 +++$+++ u2 +++$+++ m0 +++$+++ ['L1044', 'L1045']",
    b"u0 +++$+++ u2 +++$+++ m0 +++$+++ ['L984', 'L985', 'L1045']",
    b"u0 +++$+++ u2 +++$+++ m0 +++$+++ ['L985', 'L999', 'L1000']",
    b"u5 +++$+++ u0 +++$+++ m0 +++$+++ ['L474', 'L475']",
    b"u895 +++$+++ u897 +++$+++ m58 +++$+++ ['L203490', 'L1045']",
    b"u0 +++$+++ u2 +++$+++ m0 +++$+++ L1044, L1045",
    b"u0 +++$+++ u2 +++$+++ ['L1044', 'L1045']",
]


def write_sample(folder: Path) -> tuple[Path, Path]:
    """Files shaped like the published prefix: CRLF lines cut off at the end, LF conversations."""
    folder.mkdir(exist_ok=True)
    lines = folder / "movie_lines.PREFIX.txt"
    lines.write_bytes(b"".join(line + b"\r\n" for line in LINES) + CUT_OFF)
    conversations = folder / "movie_conversations.PREFIX.txt"
    conversations.write_bytes(b"".join(line + b"\n" for line in CONVERSATIONS))
    (folder / "movie_titles_metadata.txt").write_bytes(b"m0 +++$+++ 10 things i hate about you\r\n")
    return lines, conversations


@pytest.fixture
def sample(tmp_path: Path) -> ImportResult:
    write_sample(tmp_path)
    return load_corpus("cornell", [tmp_path])


def test_conversations_are_joined_with_speakers_and_latin1_text(
    sample: ImportResult, tmp_path: Path
) -> None:
    conversations = tmp_path / "movie_conversations.PREFIX.txt"
    assert [d.source for d in sample.dialogues] == [f"{conversations}:1", f"{conversations}:2"]
    assert sample.dialogues[0].turns == (
        Turn("They do to!", "CAMERON"),
        Turn("They do not!", "BIANCA"),
    )
    assert sample.dialogues[1].turns == (
        Turn("Café tonight? It's on me.", "CAMERON"),
        Turn("I hope so.", "BIANCA"),
        Turn("They do not!", "BIANCA"),
    )


def test_cut_off_last_line_is_skipped_as_truncated(sample: ImportResult, tmp_path: Path) -> None:
    (truncated,) = [s for s in sample.skipped if s.kind == "truncated"]

    assert truncated.file == str(tmp_path / "movie_lines.PREFIX.txt")
    assert truncated.line == 8
    assert "L203490" in truncated.detail


def test_missing_references_are_skipped_and_named(sample: ImportResult) -> None:
    missing = [s for s in sample.skipped if s.kind == "missing_reference"]

    assert [s.line for s in missing] == [3, 5]
    assert missing[0].detail == "names line(s) not in movie_lines: L999, L1000"
    assert missing[1].detail == "names line(s) not in movie_lines: L203490"


def test_malformed_lines_and_empty_turns(sample: ImportResult, tmp_path: Path) -> None:
    lines = str(tmp_path / "movie_lines.PREFIX.txt")
    conversations = str(tmp_path / "movie_conversations.PREFIX.txt")
    others = sorted(
        (s.file, s.line, s.kind) for s in sample.skipped if s.kind in {"malformed", "too_few_turns"}
    )

    assert others == [
        (conversations, 4, "too_few_turns"),
        (conversations, 6, "malformed"),
        (conversations, 7, "malformed"),
        (lines, 7, "malformed"),
    ]
    details = {(s.file, s.line): s.detail for s in sample.skipped if s.kind == "malformed"}
    assert details[lines, 7] == "expected 5 fields separated by '+++$+++', found 4"
    assert details[conversations, 7] == "expected 4 fields separated by '+++$+++', found 3"
    assert details[conversations, 6].startswith("expected a list of line ids like ['L1', 'L2']")
    assert sample.skip_counts() == {
        "truncated": 1,
        "malformed": 3,
        "missing_reference": 2,
        "too_few_turns": 1,
    }


def test_complete_file_has_no_truncated_skip(tmp_path: Path) -> None:
    lines, _ = write_sample(tmp_path)
    lines.write_bytes(lines.read_bytes() + b"\r\n")

    result = load_corpus("cornell", [tmp_path])

    assert "truncated" not in result.skip_counts()
    assert result.skip_counts()["missing_reference"] == 1


def test_two_files_given_explicitly(tmp_path: Path) -> None:
    lines, conversations = write_sample(tmp_path)

    result = load_corpus("cornell", [conversations, lines])

    assert len(result.dialogues) == 2


def test_missing_conversations_file_is_an_error(tmp_path: Path) -> None:
    lines, conversations = write_sample(tmp_path)

    with pytest.raises(DataError, match=r"movie_conversations\*.txt missing"):
        load_corpus("cornell", [lines])
    conversations.unlink()
    with pytest.raises(DataError, match=r"no movie_conversations\*.txt in this directory"):
        load_corpus("cornell", [tmp_path])


def test_ambiguous_directory_is_an_error(tmp_path: Path) -> None:
    lines, _ = write_sample(tmp_path)
    (tmp_path / "movie_lines.txt").write_bytes(lines.read_bytes())

    with pytest.raises(DataError, match=r"more than one movie_lines\*.txt"):
        load_corpus("cornell", [tmp_path])


def test_file_name_that_is_neither_role_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "movie_titles_metadata.txt"
    path.write_text("m0\n", encoding="latin-1")

    with pytest.raises(DataError, match="cannot tell movie_lines from movie_conversations"):
        load_corpus("cornell", [path])


def test_several_directories_are_merged(tmp_path: Path) -> None:
    write_sample(tmp_path / "a")
    write_sample(tmp_path / "b")

    result = load_corpus("cornell", [tmp_path / "a", tmp_path / "b"])

    assert len(result.dialogues) == 4
    assert result.dialogues[2].source.startswith(str(tmp_path / "b"))


@pytest.mark.shared_data
def test_real_sample(shared_data: Path) -> None:
    folder = shared_data / "cornell-sample"
    result = load_corpus("cornell", [folder])

    assert len(result.dialogues) == 8_064
    assert sum(len(d.turns) - 1 for d in result.dialogues) == 20_605
    assert result.skip_counts() == {
        "truncated": 1,
        "missing_reference": 11_908,
        "too_few_turns": 2,
    }
    (truncated,) = [s for s in result.skipped if s.kind == "truncated"]
    assert (truncated.file, truncated.line) == (str(folder / "movie_lines.PREFIX.txt"), 28_676)
    assert result.dialogues[0].turns[0].speaker == "BIANCA"
