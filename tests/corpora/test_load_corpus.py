"""load_corpus and the shared reading helpers every importer relies on."""

import re
from pathlib import Path

import pytest

import chatbot.corpora
from chatbot.corpora import FORMATS, Dialogue, ImportResult, Skip, Turn, load_corpus
from chatbot.corpora._io import Line, iter_line_blocks, read_bytes, split_lines
from chatbot.corpora.records import make_dialogue
from chatbot.errors import DataError


def test_formats_and_reexports() -> None:
    assert list(FORMATS) == ["dailydialog", "cornell", "chatterbot", "tsv", "jsonl"]
    assert {"Turn", "Dialogue", "Skip", "ImportResult", "load_corpus"} <= set(
        chatbot.corpora.__all__
    )


def test_unknown_format_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"unknown corpus format 'csv'; expected one of: dailydialog, cornell, chatterbot, "
        r"tsv, jsonl",
    ):
        load_corpus("csv", [tmp_path])


def test_missing_path_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text("a\tb\n")
    missing = tmp_path / "nope.tsv"

    with pytest.raises(DataError, match=rf"^{re.escape(str(missing))}: no such file or directory$"):
        load_corpus("tsv", [tmp_path / "a.tsv", str(missing)])


def test_no_paths_is_an_error() -> None:
    with pytest.raises(DataError, match="no input paths given for the jsonl corpus"):
        load_corpus("jsonl", [])


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.tsv"
    path.write_text("a\tb\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    message = rf"^{re.escape(str(path))}: cannot read: Permission denied$"
    with pytest.raises(DataError, match=message):
        load_corpus("tsv", [path])


def test_reading_a_directory_as_a_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path))}: cannot read"):
        read_bytes(tmp_path)


def test_several_paths_are_merged_in_order(tmp_path: Path) -> None:
    (tmp_path / "one.tsv").write_text("a\tb\nbroken\n")
    (tmp_path / "two.tsv").write_text("c\td\n")

    result = load_corpus("tsv", [str(tmp_path / "one.tsv"), tmp_path / "two.tsv"])

    assert [d.turns[0].text for d in result.dialogues] == ["a", "c"]
    assert [str(s) for s in result.skipped] == [
        f"{tmp_path / 'one.tsv'}:2: malformed: "
        "expected 2 tab-separated fields (source, target), found 1"
    ]


def test_a_lone_string_is_one_path(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text("a\tb\n")

    result = load_corpus("tsv", str(tmp_path / "a.tsv"))

    assert len(result.dialogues) == 1


def test_each_format_loads_through_load_corpus(tmp_path: Path) -> None:
    (tmp_path / "dialogues_train.txt").write_text("a __eou__ b __eou__\n")
    (tmp_path / "movie_lines.txt").write_bytes(
        b"L1 +++$+++ u0 +++$+++ m0 +++$+++ X +++$+++ a\r\n"
        b"L2 +++$+++ u1 +++$+++ m0 +++$+++ Y +++$+++ b\r\n"
    )
    (tmp_path / "movie_conversations.txt").write_text(
        "u0 +++$+++ u1 +++$+++ m0 +++$+++ ['L1', 'L2']\n"
    )
    (tmp_path / "c.yml").write_text("conversations:\n- - a\n  - b\n")
    (tmp_path / "p.tsv").write_text("a\tb\n")
    (tmp_path / "d.jsonl").write_text('{"turns": ["a", "b"]}\n')

    for fmt in FORMATS:
        result = load_corpus(fmt, [tmp_path])
        assert [[t.text for t in d.turns] for d in result.dialogues] == [["a", "b"]], fmt


def test_split_lines_handles_crlf_and_reports_the_terminator() -> None:
    text = split_lines(b"\xef\xbb\xbfone\r\n\r\ntwo\r\nthr", "f.txt", "utf-8")

    assert text.lines == [Line(1, "one"), Line(3, "two"), Line(4, "thr")]
    assert (text.terminated, text.count) == (False, 4)
    assert text.pop_cut_off() == Line(4, "thr")
    assert text.lines == [Line(1, "one"), Line(3, "two")]


def test_split_lines_undecodable_line_becomes_a_skip() -> None:
    text = split_lines(b"ok\nbad \xff\nok too\n", "f.txt", "utf-8")

    assert text.lines == [Line(1, "ok"), Line(3, "ok too")]
    assert text.skipped == [
        Skip("f.txt", 2, "undecodable", "not valid utf-8: byte(s) b'\\xff' at column 5")
    ]
    assert (text.terminated, text.count) == (True, 3)


@pytest.mark.parametrize("data", [b"one\ntwo\n", b"only line", b"", b"one\nbad \xff"])
def test_pop_cut_off_needs_a_lone_unterminated_last_line(data: bytes) -> None:
    text = split_lines(data, "f.txt", "utf-8")

    assert text.pop_cut_off() is None


def test_make_dialogue_drops_empty_turns_with_their_speakers() -> None:
    dialogue = make_dialogue([" hi ", "  ", "yo"], ["A", "B", " "], "f:1")

    assert dialogue == Dialogue((Turn("hi", "A"), Turn("yo", None)), "f:1")
    assert make_dialogue(["hi", ""], None, "f:2") is None
    assert ImportResult().skip_counts() == {}


def test_line_blocks_keep_the_files_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"\xef\xbb\xbfone\n\ntwo\nbad \xff\nfive\nsix")
    blocks = list(iter_line_blocks(path, "utf-8", size=2))
    assert [(line.number, line.text) for b in blocks for line in b.lines] == [
        (1, "one"),
        (3, "two"),
        (5, "five"),
        (6, "six"),
    ]
    assert [(s.line, s.kind) for b in blocks for s in b.skipped] == [(4, "undecodable")]
    assert blocks[-1].count == 6 and not blocks[-1].terminated
    assert blocks[-1].pop_cut_off() == Line(6, "six")
