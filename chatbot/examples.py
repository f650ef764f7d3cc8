"""Dialogues become training examples: each response turn paired with the turns before it.

The context keeps the newest `history` turns; turns are kept as a list so the pipeline can join
them with the separator id (a control token that no user text can spell), and so truncation can
drop the oldest material first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatbot.config import Direction
from chatbot.corpora import Dialogue, Skip, Turn
from chatbot.errors import DataError
from chatbot.normalize import Normalizer
from chatbot.tokenizer import Tokenizer, join_context


@dataclass(frozen=True, slots=True)
class Example:
    """One training pair: the preceding turns (oldest first) and the reply to learn."""

    context: tuple[str, ...]
    response: str
    source: str = ""

    def to_json(self) -> str:
        record = {"context": list(self.context), "response": self.response, "source": self.source}
        return json.dumps(record, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str, *, where: str) -> Example:
        try:
            record = json.loads(line)
            context, response = record["context"], record["response"]
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise DataError(f"{where}: not an example record ({error})") from None
        if not (
            isinstance(context, list)
            and context
            and all(isinstance(turn, str) for turn in context)
            and isinstance(response, str)
        ):
            raise DataError(
                f"{where}: expected 'context' (non-empty list of strings) and 'response' (string)"
            )
        return cls(tuple(context), response, str(record.get("source", "")))


@dataclass(frozen=True)
class EncodedExamples:
    """Untruncated ids: sources (context joined by SEP, ended by EOS) and bare responses."""

    sources: list[np.ndarray]
    targets: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.sources)


def encode_examples(examples: Sequence[Example], tokenizer: Tokenizer) -> EncodedExamples:
    """Encode every distinct turn once, then assemble each example's ids."""
    texts = sorted({t for ex in examples for t in ex.context} | {ex.response for ex in examples})
    ids_of = dict(zip(texts, tokenizer.encode(texts), strict=True))
    sources = [
        np.asarray(join_context([ids_of[t] for t in ex.context]), np.int32) for ex in examples
    ]
    targets = [np.asarray(ids_of[ex.response], np.int32) for ex in examples]
    return EncodedExamples(sources, targets)


def normalize_dialogue(dialogue: Dialogue, normalizer: Normalizer) -> Dialogue | Skip:
    """Normalize every turn and drop the ones that become empty; too little left is a `Skip`."""
    turns = tuple(
        Turn(text, turn.speaker) for turn in dialogue.turns if (text := normalizer(turn.text))
    )
    if len(turns) >= 2:
        return Dialogue(turns, dialogue.source)
    file, _, line = dialogue.source.rpartition(":")
    return Skip(
        file or dialogue.source,
        int(line) if line.isdigit() else 0,
        "too_few_turns",
        f"{len(turns)} non-empty turn(s) after normalization; a dialogue needs at least 2",
    )


def dialogue_examples(
    dialogue: Dialogue, history: int, direction: Direction = "forward"
) -> Iterator[Example]:
    """One example per turn after the first, with up to `history` preceding turns as context;
    `direction` "backward" turns each around (`backward_example`)."""
    texts = [turn.text for turn in dialogue.turns]
    for i in range(1, len(texts)):
        example = Example(tuple(texts[max(0, i - history) : i]), texts[i], dialogue.source)
        yield backward_example(example) if direction == "backward" else example


def backward_example(example: Example) -> Example:
    """The example turned around: the response is the context, its last turn the target
    (Li et al. 2016 score p(message | reply) with such a model to rerank replies)."""
    return Example((example.response,), example.context[-1], example.source)


def in_valid_split(dialogue: Dialogue, valid_fraction: float, seed: int) -> bool:
    """Whether the dialogue is held out for validation: a seeded hash of its turns, so the split
    is by dialogue (no conversation leaks into both splits), needs no other dialogue, and is the
    same however the corpus is ordered, sharded or spread over processes. Each dialogue is
    held out with probability `valid_fraction`; identical dialogues land in the same split."""
    digest = hashlib.blake2b(f"{seed}".encode(), digest_size=8)
    for turn in dialogue.turns:
        digest.update(b"\x1e" + turn.text.encode("utf-8"))
    return int.from_bytes(digest.digest(), "big") < valid_fraction * 2**64


def dialogue_to_json(dialogue: Dialogue) -> str:
    """One line of a dialogue spool: its turn texts and source (speakers are not used)."""
    return json.dumps(
        {"turns": [turn.text for turn in dialogue.turns], "source": dialogue.source},
        ensure_ascii=False,
    )


def dialogue_from_json(line: str) -> Dialogue:
    """A dialogue written by `dialogue_to_json`."""
    record = json.loads(line)
    return Dialogue(tuple(Turn(text) for text in record["turns"]), record["source"])


def write_examples(path: Path, examples: Iterable[Example]) -> int:
    """Write one JSON example a line (the caller makes the directory atomic); returns the count."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(example.to_json() + "\n")
            count += 1
    return count


def read_examples(path: str | Path) -> list[Example]:
    """Every example of a JSONL examples file; a bad line is a DataError naming file:line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read examples: {error}") from None
    return [
        Example.from_json(line, where=f"{path}:{number}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]
