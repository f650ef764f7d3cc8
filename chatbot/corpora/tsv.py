"""Tab-separated pairs: one `source<TAB>target` line (UTF-8) per two-turn dialogue.

A line that does not split into exactly two fields, or has an empty side, is `malformed`; blank
lines are ignored. Text is only stripped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from chatbot.corpora._io import TextLines, add_dialogue, expand, iter_line_blocks
from chatbot.corpora.records import ImportResult, Skip

ENCODING = "utf-8"


def read_tsv(paths: Sequence[Path]) -> Iterator[ImportResult]:
    """Read TSV files and directories of `*.tsv` files (recursively, in sorted order), a block
    of lines at a time."""
    for path in expand(paths, lambda name: name.endswith(".tsv"), "*.tsv files"):
        yield from map(parse, iter_line_blocks(path, ENCODING))


def parse(text: TextLines) -> ImportResult:
    """Pairs of one decoded TSV file."""
    result = ImportResult(skipped=list(text.skipped))
    for line in text.lines:
        fields = line.text.split("\t")
        if len(fields) != 2:
            detail = f"expected 2 tab-separated fields (source, target), found {len(fields)}"
            result.skipped.append(Skip(text.file, line.number, "malformed", detail))
        elif not all(field.strip() for field in fields):
            side = "source" if not fields[0].strip() else "target"
            result.skipped.append(Skip(text.file, line.number, "malformed", f"empty {side}"))
        else:
            add_dialogue(result, text.file, line.number, fields)
    return result
