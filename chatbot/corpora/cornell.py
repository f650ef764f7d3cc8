"""Cornell Movie-Dialogs: `movie_lines.txt` holds the utterances, `movie_conversations.txt` the
ordered line ids of each conversation; fields are separated by ` +++$+++ `, text is ISO-8859-1.

Input is a directory holding `movie_lines*.txt` and `movie_conversations*.txt`, or the two files
themselves (told apart by "lines" / "conversations" in their names). A last line that lacks the
line ending every other line has is skipped as `truncated` (the published sample is cut off
mid-utterance); a conversation naming a line that is absent or was skipped is a
`missing_reference`. The speaker is the character name; text is only stripped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from chatbot.corpora._io import add_dialogue, read_lines
from chatbot.corpora.records import ImportResult, Skip, Turn
from chatbot.errors import DataError

ENCODING = "iso-8859-1"
SEPARATOR = "+++$+++"
LINE_FIELDS = 5  # lineID, characterID, movieID, character name, text
CONVERSATION_FIELDS = 4  # characterID, characterID, movieID, ['L1', 'L2', ...]
_ID_LIST = re.compile(r"\[\s*(?:'[^']+'\s*(?:,\s*'[^']+'\s*)*)?\]")
_ID = re.compile(r"'([^']+)'")
_ROLES = {"lines": "movie_lines*.txt", "conversations": "movie_conversations*.txt"}


@dataclass(frozen=True, slots=True)
class _Corpus:
    lines: Path
    conversations: Path


def read_cornell(paths: Sequence[Path]) -> Iterator[ImportResult]:
    """Read every corpus named by `paths` (directories, or one lines + conversations pair), a
    corpus at a time (its conversations name lines anywhere in its lines file)."""
    for corpus in _find_corpora(paths):
        yield _read(corpus)


def _find_corpora(paths: Sequence[Path]) -> list[_Corpus]:
    corpora = [_Corpus(_find(p, "lines"), _find(p, "conversations")) for p in paths if p.is_dir()]
    files = [p for p in paths if not p.is_dir()]
    if not files:
        return corpora
    by_role = {role: [p for p in files if _role(p) == role] for role in _ROLES}
    for role, found in by_role.items():
        if len(found) != 1:
            names = ", ".join(str(p) for p in files)
            problem = "missing" if not found else "given more than once"
            raise DataError(f"Cornell {_ROLES[role]} {problem} among {names}")
    return [*corpora, _Corpus(by_role["lines"][0], by_role["conversations"][0])]


def _role(path: Path) -> str:
    for role in _ROLES:
        if role in path.name:
            return role
    raise DataError(f"{path}: cannot tell movie_lines from movie_conversations by this name")


def _find(directory: Path, role: str) -> Path:
    found = sorted(directory.glob(_ROLES[role]))
    if len(found) != 1:
        problem = "no" if not found else "more than one"
        raise DataError(f"{directory}: {problem} {_ROLES[role]} in this directory")
    return found[0]


def _read(corpus: _Corpus) -> ImportResult:
    result = ImportResult()
    lines = _records(corpus.lines, LINE_FIELDS, result)
    turns = {fields[0]: Turn(fields[4], fields[3]) for _, fields in lines}
    for number, fields in _records(corpus.conversations, CONVERSATION_FIELDS, result):
        _add_conversation(result, str(corpus.conversations), number, fields[3], turns)
    return result


def _records(path: Path, count: int, result: ImportResult) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) of each usable line of one file; undecodable, cut-off and
    malformed lines go to `result.skipped`."""
    text = read_lines(path, ENCODING)
    result.skipped.extend(text.skipped)
    cut = text.pop_cut_off()
    if cut is not None:
        detail = f"last line has no line ending, cut off mid-record: {cut.text[:80]!r}"
        result.skipped.append(Skip(text.file, cut.number, "truncated", detail))
    records = []
    for line in text.lines:
        fields = [field.strip() for field in line.text.split(SEPARATOR)]
        if len(fields) == count:
            records.append((line.number, fields))
        else:
            detail = f"expected {count} fields separated by {SEPARATOR!r}, found {len(fields)}"
            result.skipped.append(Skip(text.file, line.number, "malformed", detail))
    return records


def _add_conversation(
    result: ImportResult, file: str, number: int, id_list: str, turns: dict[str, Turn]
) -> None:
    if not _ID_LIST.fullmatch(id_list):
        detail = f"expected a list of line ids like ['L1', 'L2'], found {id_list[:60]!r}"
        result.skipped.append(Skip(file, number, "malformed", detail))
        return
    ids = _ID.findall(id_list)
    missing = [line_id for line_id in ids if line_id not in turns]
    if missing:
        detail = f"names line(s) not in movie_lines: {', '.join(missing)}"
        result.skipped.append(Skip(file, number, "missing_reference", detail))
        return
    found = [turns[line_id] for line_id in ids]
    add_dialogue(result, file, number, [t.text for t in found], [t.speaker for t in found])
