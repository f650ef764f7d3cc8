"""The canonical record every importer produces: a dialogue is an ordered list of turns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance; `speaker` is kept when the corpus names one."""

    text: str
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class Dialogue:
    """An ordered conversation. `source` says where it came from, as `file:line`."""

    turns: tuple[Turn, ...]
    source: str


def make_dialogue(
    texts: Sequence[str], speakers: Sequence[str | None] | None, source: str
) -> Dialogue | None:
    """Build a dialogue from raw turns: strip each text and speaker, drop empty turns.

    `speakers` (one per text, or None when the corpus names none) are dropped together with
    their empty turns. Returns None when fewer than two turns remain: nothing to learn a reply from.
    """
    named = speakers if speakers is not None else [None] * len(texts)
    turns = tuple(
        Turn(text.strip(), (speaker or "").strip() or None)
        for text, speaker in zip(texts, named, strict=True)
        if text.strip()
    )
    return Dialogue(turns, source) if len(turns) >= 2 else None


SKIP_KINDS = (
    "undecodable",  # bytes that are not valid in the file's encoding
    "malformed",  # a line or record that does not have the format's shape
    "truncated",  # a record cut off (e.g. a last line with no line ending)
    "missing_reference",  # a conversation names a line the corpus does not have
    "too_few_turns",  # fewer than two non-empty turns: nothing to learn a reply from
)


@dataclass(frozen=True, slots=True)
class Skip:
    """A record an importer could not use, and why.

    `line` is 1-based; 0 means the record has no line of its own (the whole file, or a YAML
    item whose position is unknown). `kind` is one of `SKIP_KINDS`; `detail` is for people.
    """

    file: str
    line: int
    kind: str
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in SKIP_KINDS:
            raise ValueError(f"unknown skip kind {self.kind!r}; expected one of {SKIP_KINDS}")

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.detail}"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "kind": self.kind, "detail": self.detail}


@dataclass(slots=True)
class ImportResult:
    """What an importer read: the usable dialogues and every skipped record."""

    dialogues: list[Dialogue] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    @classmethod
    def merged(cls, parts: Iterable[ImportResult]) -> ImportResult:
        """One result holding every part's dialogues and skips, in order."""
        result = cls()
        for part in parts:
            result.extend(part)
        return result

    def extend(self, other: ImportResult) -> None:
        self.dialogues.extend(other.dialogues)
        self.skipped.extend(other.skipped)

    def skip_counts(self) -> dict[str, int]:
        """Skipped records counted by kind."""
        return dict(Counter(s.kind for s in self.skipped))
