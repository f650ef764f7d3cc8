"""chatterbot-corpus importer: YAML conversations, the malformed trivia item, bad files."""

from pathlib import Path

import pytest

from chatbot.corpora import Turn, load_corpus
from chatbot.errors import DataError

TRIVIA = """\
categories:
- trivia
conversations:
- - Who was the 37th President of the United States?
  - Richard Nixon
- - What year was President John F. Kennedy assassinated?
  - '1963'
- In a game of bingo, which number is represented by the phrase "two little ducks"?
  - '22'
- - The Space Race was a 20th-century competition between what two Cold War rivals,
    for supremacy in spaceflight capability?
  - The Soviet Union and the United States.
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_conversations_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "trivia.yml", TRIVIA)

    result = load_corpus("chatterbot", [path])

    assert [d.source for d in result.dialogues] == [f"{path}:4", f"{path}:6", f"{path}:10"]
    assert result.dialogues[1].turns == (
        Turn("What year was President John F. Kennedy assassinated?"),
        Turn("1963"),
    )
    assert result.dialogues[2].turns[0].text == (
        "The Space Race was a 20th-century competition between what two Cold War rivals,"
        " for supremacy in spaceflight capability?"
    )


def test_string_conversation_is_malformed(tmp_path: Path) -> None:
    path = write(tmp_path / "trivia.yml", TRIVIA)

    (skip,) = load_corpus("chatterbot", [path]).skipped

    assert (skip.file, skip.line, skip.kind) == (str(path), 8, "malformed")
    assert skip.detail == "conversation is a str of 88 characters, not a list of turns"


def test_unquoted_scalars_are_kept_as_written(tmp_path: Path) -> None:
    text = "conversations:\n- - In what year?\n  - 1963\n- - Python 3.10?\n  - yes\n  - ~\n"
    path = write(tmp_path / "numbers.yml", text)

    result = load_corpus("chatterbot", [path])

    assert [[t.text for t in d.turns] for d in result.dialogues] == [
        ["In what year?", "1963"],
        ["Python 3.10?", "yes"],
    ]


def test_apostrophes_are_kept_verbatim(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yml", "conversations:\n- - Don't you?\n  - I\u2019m not sure .\n")

    (dialogue,) = load_corpus("chatterbot", [path]).dialogues

    assert [t.text for t in dialogue.turns] == ["Don't you?", "I\u2019m not sure ."]


def test_nested_turn_is_malformed_and_single_turn_is_too_few(tmp_path: Path) -> None:
    text = "conversations:\n- - Hi\n  - - nested\n- - Alone\n- - A\n  - B\n"
    path = write(tmp_path / "bad.yml", text)

    result = load_corpus("chatterbot", [path])

    assert [(s.line, s.kind, s.detail) for s in result.skipped] == [
        (2, "malformed", "turn 2 is a list, not a string"),
        (4, "too_few_turns", "1 non-empty turn(s); a dialogue needs at least 2"),
    ]
    assert [d.source for d in result.dialogues] == [f"{path}:5"]


@pytest.mark.parametrize(
    ("text", "line", "detail"),
    [
        ("conversations:\n- - a\n  - b\n - c: [\n", 4, "not valid YAML: "),
        ("- - a\n  - b\n", 1, "top level is a list, expected a mapping with 'conversations'"),
        ("categories:\n- x\n", 1, "no 'conversations' key"),
        ("conversations: hello\n", 1, "'conversations' is a str of 5 characters, expected a list"),
        ("", 0, "empty file: no conversations"),
    ],
)
def test_unusable_file_is_one_malformed_skip(
    tmp_path: Path, text: str, line: int, detail: str
) -> None:
    path = write(tmp_path / "bad.yml", text)

    result = load_corpus("chatterbot", [path])

    assert result.dialogues == []
    (skip,) = result.skipped
    assert (skip.file, skip.line, skip.kind) == (str(path), line, "malformed")
    assert skip.detail.startswith(detail)


def test_non_utf8_file_is_undecodable_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.yml"
    path.write_bytes(b"\xef\xbb\xbfconversations:\n- - Hi\n  - Caf\xe9\n")

    (skip,) = load_corpus("chatterbot", [path]).skipped

    assert (skip.line, skip.kind) == (3, "undecodable")


def test_directory_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b.yml", "conversations:\n- - b1\n  - b2\n")
    write(tmp_path / "sub" / "a.yaml", "conversations:\n- - a1\n  - a2\n")
    write(tmp_path / "a.yml", "conversations:\n- - c1\n  - c2\n")
    write(tmp_path / "notes.txt", "not yaml: [")

    result = load_corpus("chatterbot", [tmp_path])

    assert [d.turns[0].text for d in result.dialogues] == ["c1", "b1", "a1"]
    assert result.skipped == []


def test_directory_without_yaml_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \*.yml / \*.yaml files found"):
        load_corpus("chatterbot", [tmp_path])


@pytest.mark.shared_data
def test_real_english_corpus(shared_data: Path) -> None:
    folder = shared_data / "chatterbot-english"
    result = load_corpus("chatterbot", [folder])

    assert len({d.source.rsplit(":", 1)[0] for d in result.dialogues}) == 21
    assert len(result.dialogues) == 2_025
    assert sum(len(d.turns) - 1 for d in result.dialogues) == 2_306
    (skip,) = result.skipped
    assert (skip.file, skip.line, skip.kind) == (str(folder / "trivia.yml"), 35, "malformed")
    assert "str of 88 characters" in skip.detail
