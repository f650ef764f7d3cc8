"""Corpus importers: read the dialogue corpora people have into one canonical record.

`load_corpus("dailydialog", ["train.zip"])` returns an `ImportResult`: the usable `Dialogue`s and
a `Skip` for every record that could not be used, with its file, line and reason. Importers keep
text as written (stripped only); normalization happens later. `stream_corpus` yields the same
records a part at a time (a block of lines of a JSONL, TSV or DailyDialog text file; a YAML
file; a zip member; a Cornell corpus), so a corpus of any size can be read in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from chatbot.corpora.chatterbot import read_chatterbot
from chatbot.corpora.cornell import read_cornell
from chatbot.corpora.dailydialog import read_dailydialog
from chatbot.corpora.jsonl import read_jsonl
from chatbot.corpora.records import SKIP_KINDS, Dialogue, ImportResult, Skip, Turn
from chatbot.corpora.tsv import read_tsv
from chatbot.errors import DataError

__all__ = [
    "FORMATS",
    "SKIP_KINDS",
    "Dialogue",
    "ImportResult",
    "Skip",
    "Turn",
    "load_corpus",
    "stream_corpus",
]

FORMATS: dict[str, Callable[[Sequence[Path]], Iterator[ImportResult]]] = {
    "dailydialog": read_dailydialog,
    "cornell": read_cornell,
    "chatterbot": read_chatterbot,
    "tsv": read_tsv,
    "jsonl": read_jsonl,
}


def load_corpus(fmt: str, paths: Sequence[str | Path]) -> ImportResult:
    """Import files or directories of one format, merged into one result (a lone string is
    taken as one path, not as a sequence of characters); `stream_corpus` says what raises."""
    return ImportResult.merged(stream_corpus(fmt, paths))


def stream_corpus(fmt: str, paths: Sequence[str | Path]) -> Iterator[ImportResult]:
    """The records of files or directories of one format, a part at a time, in order.

    Raises DataError for an unknown format, no paths or a path that does not exist (at once),
    or, as it is read, for a path that cannot be read or input the format cannot use at all
    (e.g. a Cornell lines file without its conversations).
    """
    importer = FORMATS.get(fmt)
    if importer is None:
        raise DataError(f"unknown corpus format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise DataError(f"no input paths given for the {fmt} corpus")
    resolved = [Path(path) for path in paths]
    for path in resolved:
        if not path.exists():
            raise DataError(f"{path}: no such file or directory")
    return importer(resolved)
