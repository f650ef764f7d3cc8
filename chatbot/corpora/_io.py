"""File reading and dialogue building shared by the importers.

Lines are decoded one by one so that a single bad byte costs one record (an `undecodable` skip)
instead of the whole file, and every record keeps its 1-based line number for error messages.
"""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from chatbot.corpora.records import ImportResult, Skip, make_dialogue
from chatbot.errors import DataError

BLOCK_LINES = 10_000  # lines decoded at a time by `iter_line_blocks`


@dataclass(frozen=True, slots=True)
class Line:
    """One decoded line, without its line terminator; `number` is 1-based."""

    number: int
    text: str


@dataclass(slots=True)
class TextLines:
    """A file's non-blank lines, decoded, and its undecodable lines as skips.

    `terminated` tells whether the file's last line ends in a line terminator; `count` is the
    number of physical lines, blank and undecodable ones included.
    """

    file: str
    lines: list[Line]
    skipped: list[Skip]
    terminated: bool
    count: int

    def pop_cut_off(self) -> Line | None:
        """Remove and return the last line when it alone lacks a line terminator.

        In a machine-written file whose other lines all end in one, that is a file cut off in the
        middle of its last record.
        """
        if self.terminated or self.count < 2 or not self.lines:
            return None
        if self.lines[-1].number != self.count:
            return None
        return self.lines.pop()


def read_bytes(path: Path) -> bytes:
    """The file's content, or a DataError that names the path."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from err


def split_lines(data: bytes, file: str, encoding: str, *, first: int = 1) -> TextLines:
    """Split on LF (dropping a CR before it) and decode each line alone; `data` starts at line
    `first` of `file`, so numbers (and `count`) are the file's.

    `encoding` must be ASCII-compatible (UTF-8, ISO-8859-1...) so that byte 0x0A is always a line
    feed. A UTF-8 byte-order mark at the start of the file is dropped.
    """
    if first == 1 and codecs.lookup(encoding).name == "utf-8":
        data = data.removeprefix(codecs.BOM_UTF8)
    chunks = data.split(b"\n")
    terminated = chunks[-1] == b""
    if terminated:
        chunks.pop()
    lines: list[Line] = []
    skipped: list[Skip] = []
    for number, chunk in enumerate(chunks, start=first):
        raw = chunk.removesuffix(b"\r")
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as err:
            bad = raw[err.start : err.end]
            detail = f"not valid {encoding}: byte(s) {bad!r} at column {err.start + 1}"
            skipped.append(Skip(file, number, "undecodable", detail))
            continue
        if text.strip():
            lines.append(Line(number, text))
    return TextLines(file, lines, skipped, terminated, first - 1 + len(chunks))


def read_lines(path: Path, encoding: str) -> TextLines:
    """`split_lines` of a file on disk."""
    return split_lines(read_bytes(path), str(path), encoding)


def iter_line_blocks(path: Path, encoding: str, size: int = BLOCK_LINES) -> Iterator[TextLines]:
    """`split_lines` of a file on disk, `size` lines at a time, numbered as in the whole file:
    one-record-a-line formats are read in memory that does not grow with the file."""
    try:
        with path.open("rb") as handle:
            first = 1
            while block := list(itertools.islice(handle, size)):
                yield split_lines(b"".join(block), str(path), encoding, first=first)
                first += len(block)
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from err


def expand(paths: Sequence[Path], wanted: Callable[[str], bool], what: str) -> list[Path]:
    """Files given explicitly, plus the `wanted` file names found under directories (recursively,
    in sorted order). A directory with none of them is a DataError naming `what` was expected."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        try:
            found = sorted(p for p in path.rglob("*") if p.is_file() and wanted(p.name))
        except OSError as err:
            raise DataError(f"{path}: cannot list directory: {err.strerror or err}") from err
        if not found:
            raise DataError(f"{path}: no {what} found in this directory")
        files.extend(found)
    return files


def add_dialogue(
    result: ImportResult,
    file: str,
    line: int,
    texts: Sequence[str],
    speakers: Sequence[str | None] | None = None,
) -> None:
    """Append the dialogue read at `file:line`, or a `too_few_turns` skip when fewer than two
    non-empty turns remain."""
    dialogue = make_dialogue(texts, speakers, f"{file}:{line}")
    if dialogue is None:
        kept = sum(1 for text in texts if text.strip())
        detail = f"{kept} non-empty turn(s); a dialogue needs at least 2"
        result.skipped.append(Skip(file, line, "too_few_turns", detail))
    else:
        result.dialogues.append(dialogue)
