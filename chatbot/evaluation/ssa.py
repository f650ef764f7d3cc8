"""Blind sensibleness-and-specificity ratings (Adiwardana et al. 2020, "Towards a Human-like
Open-Domain Chatbot"): packs for raters, and their scores per system.

A pack shows raters each (context, reply) pair with nothing that tells who wrote the reply:
every system's replies and the human references go through the same display normalization,
are shuffled together and carry random ids; which system wrote what is in a separate key. A
rater marks each reply sensible (it makes sense in context) and specific (sensible, and
specific to this context rather than a reply that would fit almost anything); the rubric is
`bench/ssa_rubric.md`. SSA is the mean of the sensible rate and the sensible-and-specific rate.
The human references are the control: raters who give them far less than 0.85 SSA are not
rating carefully, so every result is reported with the control's score.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.errors import DataError
from chatbot.examples import Example
from chatbot.normalize import QUOTES

HUMAN = "human"
SPEAKERS = ("A", "B")
_RANKED = re.compile(r"^(?P<system>.*), rank (?P<rank>[0-9]+)$")


@dataclass(frozen=True)
class Item:
    """One pair for raters, and (in the key only) who wrote the reply."""

    id: str
    context: tuple[str, ...]
    reply: str
    system: str
    example: int

    def for_raters(self) -> dict[str, Any]:
        return {"id": self.id, "context": list(self.context), "reply": self.reply}

    def for_key(self) -> dict[str, Any]:
        return {"id": self.id, "system": self.system, "example": self.example}


def display(text: str) -> str:
    """Text as raters see it, the same for every source: NFKC, plain quotes, lower case, one
    space between words (model and human texts differ in casing and spacing habits that
    would otherwise tell them apart)."""
    text = unicodedata.normalize("NFKC", text).translate(QUOTES).lower()
    return " ".join(text.split())


def choose_examples(examples: Sequence[Example], count: int, seed: int = 0) -> list[int]:
    """Indices of `count` examples from as many different dialogues, drawn with `seed`."""
    by_dialogue: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        by_dialogue[example.source].append(index)
    if len(by_dialogue) < count:
        raise DataError(
            f"{count} contexts asked for, but the examples come from {len(by_dialogue)} "
            "dialogues; one context a dialogue keeps the pack varied"
        )
    rng = random.Random(seed)
    dialogues = rng.sample(sorted(by_dialogue), count)
    return sorted(rng.choice(by_dialogue[dialogue]) for dialogue in dialogues)


def speaker_turns(context: Sequence[str]) -> tuple[str, ...]:
    """The context's turns labelled by speaker: the last turn is B's, so the reply is A's."""
    last = len(context) - 1
    return tuple(
        f"{SPEAKERS[1 - (last - i) % 2]}: {display(turn)}" for i, turn in enumerate(context)
    )


def build_pack(
    examples: Sequence[Example],
    chosen: Sequence[int],
    replies: Mapping[str, Sequence[str]],
    seed: int = 0,
) -> list[Item]:
    """Every system's reply to every chosen example, plus the human reference, shuffled, each
    with a random id. `replies[system][k]` answers `examples[chosen[k]]`.

    Systems that give a context the same reply (as displayed) share one id, so it is rated
    once and its rating counts for each: systems that differ in a few replies then differ in
    their scores only there, not by two raters' different verdicts on the same reply."""
    if HUMAN in replies:
        raise DataError(f"system name {HUMAN!r} is the human references' own")
    systems = {**replies, HUMAN: [examples[i].response for i in chosen]}
    for system, texts in systems.items():
        if len(texts) != len(chosen):
            raise DataError(f"system {system!r}: {len(texts)} replies for {len(chosen)} contexts")
    rng = random.Random(seed)
    ids = rng.sample(range(16**6), len(systems) * len(chosen))
    id_of: dict[tuple[int, str], str] = {}
    items = []
    for system, texts in systems.items():
        for k, index in enumerate(chosen):
            reply = display(texts[k])
            item_id = id_of.setdefault((index, reply), f"{ids.pop():06x}")
            context = speaker_turns(examples[index].context)
            items.append(Item(item_id, context, reply, system, index))
    rng.shuffle(items)
    return items


def write_pack(items: Sequence[Item], out: Path, parts: int = 1) -> list[Path]:
    """key.jsonl, and the pack in `parts` similar parts (part-N.jsonl for programs and
    part-N.md for people), each id once however many systems share it; returns the parts'
    markdown paths."""
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "key.jsonl", (item.for_key() for item in items))
    last = {item.id: position for position, item in enumerate(items)}
    distinct = [item for position, item in enumerate(items) if last[item.id] == position]
    written = []
    for number in range(1, parts + 1):
        part = distinct[number - 1 :: parts]
        _write_jsonl(out / f"part-{number}.jsonl", (item.for_raters() for item in part))
        path = out / f"part-{number}.md"
        path.write_text(_markdown(part, number, parts), encoding="utf-8")
        written.append(path)
    return written


def _markdown(items: Sequence[Item], number: int, parts: int) -> str:
    lines = [
        f"# Rating pack, part {number} of {parts}: {len(items)} replies",
        "",
        "Rate each reply by bench/ssa_rubric.md. The reply is A's next turn.",
    ]
    for item in items:
        lines += ["", f"## {item.id}", "", *[f"    {turn}" for turn in item.context]]
        lines += [f"    A (reply): {item.reply}"]
    return "\n".join(lines) + "\n"


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    path.write_text(text, encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON lines, or a `DataError` naming the file and line."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not JSON: {error}") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object")
        records.append(record)
    return records


@dataclass(frozen=True)
class Rating:
    id: str
    sensible: bool
    specific: bool


def parse_ratings(path: Path) -> list[Rating]:
    """A rater's file: one {"id", "sensible", "specific"} object a line, flags 0/1 or
    true/false."""
    ratings = []
    for number, record in enumerate(read_jsonl(path), start=1):
        flags = {}
        for name in ("sensible", "specific"):
            value = record.get(name)
            if value not in (0, 1):  # True and False compare equal to 1 and 0
                raise DataError(f"{path}: rating {number}: {name} must be 0 or 1, got {value!r}")
            flags[name] = bool(value)
        if not isinstance(record.get("id"), str):
            raise DataError(f"{path}: rating {number}: no string 'id'")
        ratings.append(Rating(record["id"], **flags))
    return ratings


def score(key: Sequence[dict[str, Any]], ratings: Sequence[Rating]) -> dict[str, dict[str, Any]]:
    """Per system: replies rated, sensible rate, sensible-and-specific rate, SSA, and how many
    replies were marked specific but not sensible (counted as not specific, as the protocol
    says). An item rated more than once counts the mean of its ratings; one that several
    systems share (`build_pack`) counts for each."""
    systems_of: dict[str, list[str]] = defaultdict(list)
    for record in key:
        systems_of[record["id"]].append(record["system"])
    unknown = sorted({rating.id for rating in ratings} - set(systems_of))
    if unknown:
        raise DataError(f"{len(unknown)} rated id(s) not in the key, e.g. {unknown[0]!r}")
    by_item: dict[str, list[Rating]] = defaultdict(list)
    for rating in ratings:
        by_item[rating.id].append(rating)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for item, given in by_item.items():
        for system in systems_of[item]:
            total = totals[system]
            total["rated"] += 1
            total["sensible"] += sum(r.sensible for r in given) / len(given)
            total["specific"] += sum(r.sensible and r.specific for r in given) / len(given)
            total["specific_not_sensible"] += sum(r.specific and not r.sensible for r in given)
    in_key: dict[str, int] = defaultdict(int)
    for record in key:
        in_key[record["system"]] += 1
    results = {}
    for system, count in sorted(in_key.items(), key=lambda pair: _system_order(pair[0])):
        total = totals.get(system)
        if not total:
            results[system] = {"replies": count, "rated": 0}
            continue
        sensible = total["sensible"] / total["rated"]
        specific = total["specific"] / total["rated"]
        results[system] = {
            "replies": count,
            "rated": int(total["rated"]),
            "sensible": sensible,
            "specific": specific,
            "ssa": (sensible + specific) / 2,
            "specific_not_sensible": int(total["specific_not_sensible"]),
        }
    return results


def _system_order(system: str) -> tuple[bool, str, int]:
    """The human references first, then systems by name, each one's ranks in numeric order
    ("rank 2" before "rank 10")."""
    match = _RANKED.match(system)
    name, rank = (match["system"], int(match["rank"])) if match else (system, 1)
    return system != HUMAN, name, rank


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| system | rated | sensible | specific | SSA |", "|---|---|---|---|---|"]
    for system, row in results.items():
        if not row.get("rated"):
            lines.append(f"| {system} | 0 of {row['replies']} | | | |")
            continue
        lines.append(
            f"| {system} | {row['rated']} of {row['replies']} | {row['sensible']:.2f} "
            f"| {row['specific']:.2f} | {row['ssa']:.2f} |"
        )
    return "\n".join(lines)


def ranked_name(system: str, rank: int) -> str:
    """The pack's name for `system`'s `rank`-th best candidate (`bench/ssa_pack.py --ranks`):
    the system's own name for the first, its reply."""
    return system if rank == 1 else f"{system}, rank {rank}"


def sensible_by_rank(
    key: Sequence[dict[str, Any]], ratings: Sequence[Rating]
) -> dict[str, dict[int, dict[int, bool]]]:
    """Per system rated by rank (`ranked_name`), per example, per rank: whether that candidate
    was rated sensible (by more than half of its ratings; unrated counts as not)."""
    votes: dict[str, list[bool]] = defaultdict(list)
    for rating in ratings:
        votes[rating.id].append(rating.sensible)
    found: dict[str, dict[int, dict[int, bool]]] = defaultdict(lambda: defaultdict(dict))
    for record in key:
        match = _RANKED.match(record["system"])
        system, rank = (match["system"], int(match["rank"])) if match else (record["system"], 1)
        given = votes.get(record["id"], [])
        found[system][record["example"]][rank] = sum(given) * 2 > len(given)
    return {system: dict(examples) for system, examples in found.items()}


def sensible_within(
    key: Sequence[dict[str, Any]], ratings: Sequence[Rating]
) -> dict[str, list[float]]:
    """Per system rated by rank (`ranked_name`), for k = 1..N: the share of its contexts
    where one of its first k candidates was rated sensible (`sensible_by_rank`): how often
    the ranking had a sensible reply to choose."""
    shares = {}
    for system, examples in sensible_by_rank(key, ratings).items():
        ranks = max(rank for by_rank in examples.values() for rank in by_rank)
        if ranks == 1:
            continue
        first = [
            min((r for r, ok in by_rank.items() if ok), default=None)
            for by_rank in examples.values()
        ]
        shares[system] = [
            sum(rank is not None and rank <= k for rank in first) / len(first)
            for k in range(1, ranks + 1)
        ]
    return shares


def within_context_auc(
    values: Sequence[Sequence[float]], sensible: Sequence[Sequence[bool]]
) -> float:
    """How well `values` tell sensible candidates from the others of the same context: the
    share of (sensible, not sensible) pairs within a context where the sensible one has the
    higher value, ties counting half (0.5: no better than chance). Raises `DataError` when
    no context holds both kinds."""
    wins = pairs = 0.0
    for row, labels in zip(values, sensible, strict=True):
        good = np.array([v for v, ok in zip(row, labels, strict=True) if ok], np.float64)
        bad = np.array([v for v, ok in zip(row, labels, strict=True) if not ok], np.float64)
        wins += float(
            (good[:, None] > bad[None, :]).sum() + 0.5 * (good[:, None] == bad[None, :]).sum()
        )
        pairs += len(good) * len(bad)
    if not pairs:
        raise DataError("no context has both a sensible and a not-sensible candidate")
    return wins / pairs


def top_pick_sensible(
    values: Sequence[Sequence[float]], sensible: Sequence[Sequence[bool]]
) -> float:
    """The share of contexts whose candidate of the highest value (the first of equals, as a
    stable ranking keeps them) was rated sensible: the sense that choosing by `values` among
    the rated candidates alone gives."""
    picks = [labels[int(np.argmax(row))] for row, labels in zip(values, sensible, strict=True)]
    return float(np.mean(picks))
