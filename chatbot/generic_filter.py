"""Entropy-based filtering of generic replies (Csáky et al. 2019, "Improving Neural
Conversational Models with Entropy-Based Data Filtering").

A reply that follows many different messages ("Thank you.", "Yes.", "OK.") says little about
what it answers, and a model trained on many such pairs learns to say them to anything. A
reply's entropy is the entropy, in bits, of the distribution of the messages it follows, each
text its own class after folding case, punctuation and spacing (the paper's IDENTITY
clustering). Dropping the training pairs whose reply's entropy exceeds a threshold leaves the
model fewer safe answers to fall back on. Only the training split is filtered: validation
measures the data as people write it.

The training split can be larger than memory, so the entropies come from two streaming passes
(`reply_entropies`). A reply that follows k message classes has at most log2(k) bits, so one
above `max_entropy` bits must occur more than 2**max_entropy times: the first pass counts the
replies in a count-min sketch (fixed memory, counts never under-estimated) to find those
candidates, and the second counts the messages of the candidates alone, as 64-bit hashes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from chatbot.examples import Example

_WORD = re.compile(r"[^\W_]+")
DROPPED_IN_STATS = 10
SKETCH_ROWS, SKETCH_WIDTH = 4, 1 << 21  # 32 MiB of counters, touched as they fill
_BLOCK = 65_536  # examples hashed into the sketch at a time


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: what replies are classed and messages matched by."""
    return _WORD.findall(text.lower())


def identity_key(text: str) -> str:
    """The text's class: its lower-cased words, so "Thank you!" is "thank you"."""
    return " ".join(words(text))


def _hash64(text: str) -> int:
    """A 64-bit hash, the same for one text within this process (for counting, not storing)."""
    return hash(text) & 0xFFFF_FFFF_FFFF_FFFF


class CountMinSketch:
    """Approximate counts of 64-bit keys in fixed memory: each of `rows` counter rows is
    indexed by its own hash of the key, and a key's count is its smallest counter, never below
    the true count (Cormode and Muthukrishnan 2005)."""

    def __init__(self, rows: int = SKETCH_ROWS, width: int = SKETCH_WIDTH) -> None:
        self.counts = np.zeros((rows, width), np.uint32)

    def _columns(self, keys: np.ndarray) -> np.ndarray:
        """[rows, keys] counter indices: h1 + i * h2 over the key's two 32-bit halves."""
        low, high = keys & 0xFFFF_FFFF, (keys >> np.uint64(32)) | np.uint64(1)
        rows = np.arange(self.counts.shape[0], dtype=np.uint64)[:, None]
        return ((low[None, :] + rows * high[None, :]) % np.uint64(self.counts.shape[1])).astype(
            np.int64
        )

    def add(self, keys: np.ndarray) -> None:
        """Count each of `keys` (uint64) once."""
        for row, columns in enumerate(self._columns(keys)):
            np.add.at(self.counts[row], columns, 1)

    def estimate(self, keys: np.ndarray) -> np.ndarray:
        """Each key's count, at least the true one."""
        columns = self._columns(keys)
        return np.min([self.counts[row, c] for row, c in enumerate(columns)], axis=0)


def _blocks(examples: Iterable[Example]) -> Iterable[list[Example]]:
    block: list[Example] = []
    for example in examples:
        block.append(example)
        if len(block) == _BLOCK:
            yield block
            block = []
    if block:
        yield block


def _reply_hashes(block: list[Example]) -> tuple[list[str], np.ndarray]:
    replies = [identity_key(example.response) for example in block]
    return replies, np.array([_hash64(reply) for reply in replies], np.uint64)


def reply_entropies(
    examples: Callable[[], Iterable[Example]], min_count: int = 1
) -> dict[str, float]:
    """The entropy (bits) over the classes of the messages it follows of each reply class that
    occurs at least `min_count` times, maybe of a few more; `examples()` streams the examples,
    and is called twice. Memory: the sketch, plus a hash pair per example of those replies."""
    sketch = CountMinSketch()
    for block in _blocks(examples()):
        sketch.add(_reply_hashes(block)[1])
    names: dict[int, str] = {}
    pairs = [np.empty((0, 2), np.uint64)]
    for block in _blocks(examples()):
        replies, hashes = _reply_hashes(block)
        chosen = np.flatnonzero(sketch.estimate(hashes) >= min_count)
        for i in chosen:
            names.setdefault(int(hashes[i]), replies[i])
        messages = [_hash64(identity_key(block[i].context[-1])) for i in chosen]
        pairs.append(np.stack([hashes[chosen], np.array(messages, np.uint64)], axis=1))
    return _entropies(np.concatenate(pairs), names)


def _entropies(pairs: np.ndarray, names: dict[int, str]) -> dict[str, float]:
    """Each reply's entropy from its (reply hash, message hash) rows."""
    if not len(pairs):
        return {}
    distinct, counts = np.unique(pairs, axis=0, return_counts=True)
    entropies: dict[str, float] = {}
    starts = np.flatnonzero(np.r_[True, distinct[1:, 0] != distinct[:-1, 0]])
    for start, end in zip(starts, [*starts[1:], len(distinct)], strict=True):
        entropies[names[int(distinct[start, 0])]] = _entropy(counts[start:end].tolist())
    return entropies


def _entropy(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts)


class GenericFilter:
    """Keeps the examples whose reply's entropy is at most `max_entropy`, and counts the rest.
    `entropies` needs only the replies that may exceed it (`reply_entropies`' candidates)."""

    def __init__(self, entropies: dict[str, float], max_entropy: float) -> None:
        self.entropies = entropies
        self.max_entropy = max_entropy
        self.dropped: Counter[str] = Counter()

    @classmethod
    def over(cls, examples: Callable[[], Iterable[Example]], max_entropy: float) -> GenericFilter:
        """The filter for the examples `examples()` streams (twice): only a reply occurring
        more than 2**max_entropy times can have more than max_entropy bits."""
        min_count = math.floor(2**max_entropy) + 1
        return cls(reply_entropies(examples, min_count), max_entropy)

    def keep(self, example: Example) -> bool:
        key = identity_key(example.response)
        if self.entropies.get(key, 0.0) > self.max_entropy:
            self.dropped[key] += 1
            return False
        return True

    def report(self) -> dict[str, Any]:
        """What was dropped, for stats.json."""
        return {
            "max_reply_entropy": self.max_entropy,
            "examples_dropped": sum(self.dropped.values()),
            "replies_dropped": len(self.dropped),
            "most_dropped": [
                {"reply": reply, "examples": n, "entropy": round(self.entropies[reply], 3)}
                for reply, n in self.dropped.most_common(DROPPED_IN_STATS)
            ],
        }
