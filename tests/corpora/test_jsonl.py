"""JSONL importer: one `{"turns": [...]}` object a line."""

import json
from pathlib import Path

from chatbot.corpora import Turn, load_corpus


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_string_turns_and_object_turns(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "dialogues.jsonl",
        [
            json.dumps({"turns": ["Hi !", " Don't you \u2019 know ? "]}),
            "",
            json.dumps(
                {
                    "turns": [
                        {"text": "Hello", "speaker": "ann"},
                        {"text": "Hey"},
                        {"text": "Bye", "speaker": None},
                    ],
                    "id": 7,
                }
            ),
        ],
    )

    result = load_corpus("jsonl", [path])

    assert result.skipped == []
    assert [d.source for d in result.dialogues] == [f"{path}:1", f"{path}:3"]
    assert result.dialogues[0].turns == (Turn("Hi !"), Turn("Don't you \u2019 know ?"))
    assert result.dialogues[1].turns == (Turn("Hello", "ann"), Turn("Hey"), Turn("Bye"))


def test_wrong_shapes_are_malformed_with_what_was_expected(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            '{"turns": ["a", "b"',
            '["a", "b"]',
            '{"text": "a"}',
            '{"turns": "a b"}',
            '{"turns": ["a", 2]}',
            '{"turns": [{"text": "a"}, {"text": 1}]}',
            '{"turns": [{"text": "a", "speaker": 3}, "b"]}',
            '{"turns": ["only one"]}',
        ],
    )

    result = load_corpus("jsonl", [path])

    turn = 'a string or an object {"text": string, "speaker": string (optional)}'
    assert [(s.line, s.kind, s.detail) for s in result.skipped] == [
        (1, "malformed", "invalid JSON: Expecting ',' delimiter at column 20"),
        (2, "malformed", 'expected an object {"turns": [...]}, found an array'),
        (3, "malformed", "expected 'turns' to be a list of turns, found no 'turns' key"),
        (4, "malformed", "expected 'turns' to be a list of turns, found a string"),
        (5, "malformed", f"turn 2: expected {turn}, found a number"),
        (6, "malformed", f"turn 2: expected {turn}, found an object {{text: a number}}"),
        (
            7,
            "malformed",
            f"turn 1: expected {turn}, found an object {{text: a string, speaker: a number}}",
        ),
        (8, "too_few_turns", "1 non-empty turn(s); a dialogue needs at least 2"),
    ]
    assert result.dialogues == []


def test_undecodable_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"turns": ["caf\xe9", "x"]}\r\n{"turns": ["a", "b"]}\r\n')

    result = load_corpus("jsonl", [path])

    assert [(s.line, s.kind) for s in result.skipped] == [(1, "undecodable")]
    assert [d.source for d in result.dialogues] == [f"{path}:2"]
