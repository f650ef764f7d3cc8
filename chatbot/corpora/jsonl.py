"""JSON Lines: one dialogue per line, `{"turns": ["...", "..."]}` or
`{"turns": [{"text": "...", "speaker": "..."}, ...]}` (speaker optional, may be null), UTF-8.

A line that is not valid JSON, not an object, lacks a `turns` list or holds a turn of another
shape is `malformed`, with a detail saying what was expected; blank lines are ignored.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from chatbot.corpora._io import TextLines, add_dialogue, expand, iter_line_blocks
from chatbot.corpora.records import ImportResult, Skip

ENCODING = "utf-8"
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
_SHOWN_KEYS = 5  # keys of a malformed turn object named in its skip detail
_KEY_CHARS = 40
_TURN = 'a string or an object {"text": string, "speaker": string (optional)}'


class _MalformedError(ValueError):
    """A JSON value that does not have the shape of a dialogue."""


def read_jsonl(paths: Sequence[Path]) -> Iterator[ImportResult]:
    """Read JSONL files and directories of `*.jsonl` files (recursively, in sorted order), a
    block of lines at a time."""
    for path in expand(paths, lambda name: name.endswith(".jsonl"), "*.jsonl files"):
        yield from map(parse, iter_line_blocks(path, ENCODING))


def parse(text: TextLines) -> ImportResult:
    """Dialogues of one decoded JSONL file."""
    result = ImportResult(skipped=list(text.skipped))
    for line in text.lines:
        try:
            texts, speakers = _turns(line.text)
        except _MalformedError as err:
            result.skipped.append(Skip(text.file, line.number, "malformed", str(err)))
        else:
            add_dialogue(result, text.file, line.number, texts, speakers)
    return result


def _turns(line: str) -> tuple[list[str], list[str | None]]:
    """Texts and speakers of one JSON line; `_MalformedError` says what was expected."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise _MalformedError(f"invalid JSON: {err.msg} at column {err.colno}") from err
    except (ValueError, RecursionError) as err:
        raise _MalformedError(f"invalid JSON: {err}") from err
    if not isinstance(record, dict):
        raise _MalformedError(f'expected an object {{"turns": [...]}}, found {_type(record)}')
    if not isinstance(record.get("turns"), list):
        found = _type(record["turns"]) if "turns" in record else "no 'turns' key"
        raise _MalformedError(f"expected 'turns' to be a list of turns, found {found}")
    turns = [_turn(index, turn) for index, turn in enumerate(record["turns"], start=1)]
    return [text for text, _ in turns], [speaker for _, speaker in turns]


def _turn(index: int, turn: object) -> tuple[str, str | None]:
    if isinstance(turn, str):
        return turn, None
    if isinstance(turn, dict):
        text, speaker = turn.get("text"), turn.get("speaker")
        if isinstance(text, str) and (speaker is None or isinstance(speaker, str)):
            return text, speaker
    raise _MalformedError(f"turn {index}: expected {_TURN}, found {_describe(turn)}")


def _describe(turn: object) -> str:
    """A turn's shape for messages, e.g. 'a number' or 'an object {text: a number}'.

    At most `_SHOWN_KEYS` keys are listed, each cut to `_KEY_CHARS` characters and escaped when
    it holds control characters, so a hostile line cannot make a huge or multi-line message.
    """
    if not isinstance(turn, dict):
        return _type(turn)
    shown = itertools.islice(turn.items(), _SHOWN_KEYS)
    fields = ", ".join(f"{_key(key)}: {_type(value)}" for key, value in shown)
    more = f", ... ({len(turn)} keys)" if len(turn) > _SHOWN_KEYS else ""
    return f"an object {{{fields}{more}}}"


def _key(key: str) -> str:
    cut = key[:_KEY_CHARS] + ("..." if len(key) > _KEY_CHARS else "")
    return cut if cut.isprintable() else ascii(cut)


def _type(value: object) -> str:
    """The JSON name of a decoded value's type."""
    return _JSON_TYPES[type(value)]
