import pytest

from chatbot.corpora import Dialogue, Skip, Turn
from chatbot.errors import DataError
from chatbot.examples import (
    Example,
    backward_example,
    dialogue_examples,
    dialogue_from_json,
    dialogue_to_json,
    in_valid_split,
    normalize_dialogue,
    read_examples,
    write_examples,
)
from chatbot.normalize import Normalizer


def _dialogue(*texts: str, source: str = "f.txt:3") -> Dialogue:
    return Dialogue(tuple(Turn(t) for t in texts), source)


def test_history_one_gives_plain_pairs():
    examples = list(dialogue_examples(_dialogue("a", "b", "c"), history=1))
    assert [(e.context, e.response) for e in examples] == [(("a",), "b"), (("b",), "c")]
    assert all(e.source == "f.txt:3" for e in examples)


def test_history_keeps_the_newest_turns_oldest_first():
    examples = list(dialogue_examples(_dialogue("a", "b", "c", "d", "e"), history=3))
    assert [e.context for e in examples] == [
        ("a",),
        ("a", "b"),
        ("a", "b", "c"),
        ("b", "c", "d"),
    ]
    assert [e.response for e in examples] == ["b", "c", "d", "e"]


def test_backward_examples_predict_the_last_context_turn_from_the_response():
    dialogue = _dialogue("a", "b", "c", "d")
    forward = list(dialogue_examples(dialogue, history=3))
    backward = list(dialogue_examples(dialogue, history=3, direction="backward"))
    assert [(e.context, e.response) for e in backward] == [
        (("b",), "a"),
        (("c",), "b"),
        (("d",), "c"),
    ]
    assert backward == [backward_example(e) for e in forward]
    assert all(e.source == "f.txt:3" for e in backward)


def test_a_dialogue_of_n_turns_gives_n_minus_one_examples():
    assert len(list(dialogue_examples(_dialogue(*"abcdefg"), history=2))) == 6


def test_normalize_dialogue_drops_empty_turns_and_keeps_speakers():
    dialogue = Dialogue((Turn("Hi , you", "A"), Turn("\u200b", "B"), Turn("Yes !", "A")), "x:1")
    normalized = normalize_dialogue(dialogue, Normalizer())
    assert normalized == Dialogue((Turn("Hi, you", "A"), Turn("Yes!", "A")), "x:1")


def test_normalize_dialogue_reports_too_few_turns_with_file_and_line():
    outcome = normalize_dialogue(_dialogue("Hello", "\x00", source="dir/a.yml:12"), Normalizer())
    assert isinstance(outcome, Skip)
    assert (outcome.file, outcome.line, outcome.kind) == ("dir/a.yml", 12, "too_few_turns")


def test_split_is_a_seeded_hash_of_each_dialogue_alone():
    dialogues = [_dialogue("q", f"a{i}", source=f"f:{i}") for i in range(2000)]
    valid = [d for d in dialogues if in_valid_split(d, 0.1, seed=1)]
    assert 150 < len(valid) < 250  # each held out with probability 0.1
    assert valid == [d for d in reversed(dialogues) if in_valid_split(d, 0.1, seed=1)][::-1]
    assert valid != [d for d in dialogues if in_valid_split(d, 0.1, seed=2)]
    assert not any(in_valid_split(d, 0.0, seed=0) for d in dialogues)
    # where a dialogue came from does not matter, only its turns: copies share a split
    moved = [_dialogue(*(t.text for t in d.turns), source="elsewhere:1") for d in dialogues]
    assert [in_valid_split(d, 0.1, 1) for d in moved] == [
        in_valid_split(d, 0.1, 1) for d in dialogues
    ]


def test_dialogues_round_trip_through_the_spool_format():
    dialogue = _dialogue("Hi ☃", "there\nfriend", source="a.txt:7")
    assert dialogue_from_json(dialogue_to_json(dialogue)) == dialogue


def test_examples_round_trip_through_jsonl(tmp_path):
    examples = [Example(("Hi", "there ☃"), "Hello!", "a.txt:1"), Example(("q",), "r", "")]
    path = tmp_path / "train.jsonl"
    assert write_examples(path, examples) == 2
    assert read_examples(path) == examples


def test_bad_example_lines_name_the_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"context": ["a"], "response": "b"}\n{"context": "a"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl:2: not an example record"):
        read_examples(path)
    path.write_text('{"context": [], "response": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl:1: expected 'context'"):
        read_examples(path)
