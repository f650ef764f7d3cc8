"""TSV importer: one `source<TAB>target` pair a line."""

from pathlib import Path

import pytest

from chatbot.corpora import Turn, load_corpus
from chatbot.errors import DataError


def test_pairs_become_two_turn_dialogues(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"hi there\thello !\r\n\r\nDon't go\tI\xe2\x80\x99m staying .  \r\n")

    result = load_corpus("tsv", [path])

    assert result.skipped == []
    assert [d.source for d in result.dialogues] == [f"{path}:1", f"{path}:3"]
    assert result.dialogues[0].turns == (Turn("hi there"), Turn("hello !"))
    assert result.dialogues[1].turns == (Turn("Don't go"), Turn("I\u2019m staying ."))


def test_undecodable_line_costs_only_that_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"one\ttwo\ncaf\xe9 ?\tyes\nthree\tfour")

    result = load_corpus("tsv", [path])

    (skip,) = result.skipped
    assert (skip.file, skip.line, skip.kind) == (str(path), 2, "undecodable")
    assert skip.detail == "not valid utf-8: byte(s) b'\\xe9' at column 4"
    assert [d.turns[0].text for d in result.dialogues] == ["one", "three"]


def test_wrong_field_counts_and_empty_sides_are_malformed(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("no tab here\na\tb\tc\n\tonly target\nonly source\t  \nok\tfine\n")

    result = load_corpus("tsv", [path])

    assert [(s.line, s.kind, s.detail) for s in result.skipped] == [
        (1, "malformed", "expected 2 tab-separated fields (source, target), found 1"),
        (2, "malformed", "expected 2 tab-separated fields (source, target), found 3"),
        (3, "malformed", "empty source"),
        (4, "malformed", "empty target"),
    ]
    assert [d.source for d in result.dialogues] == [f"{path}:5"]


def test_directory_reads_tsv_files_only(tmp_path: Path) -> None:
    (tmp_path / "b.tsv").write_text("b\tB\n")
    (tmp_path / "a.tsv").write_text("a\tA\n")
    (tmp_path / "readme.md").write_text("# not\tdata\n")

    result = load_corpus("tsv", [tmp_path])

    assert [d.turns[0].text for d in result.dialogues] == ["a", "b"]


def test_directory_without_tsv_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \*.tsv files found in this directory"):
        load_corpus("tsv", [tmp_path])
