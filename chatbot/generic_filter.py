"""Entropy-based filtering of generic replies (Csáky et al. 2019, "Improving Neural
Conversational Models with Entropy-Based Data Filtering").

A reply that follows many different messages ("Thank you.", "Yes.", "OK.") says little about
what it answers, and a model trained on many such pairs learns to say them to anything. A
reply's entropy is the entropy, in bits, of the distribution of the messages it follows, each
text its own class after folding case, punctuation and spacing (the paper's IDENTITY
clustering). Dropping the training pairs whose reply's entropy exceeds a threshold leaves the
model fewer safe answers to fall back on. Only the training split is filtered: validation
measures the data as people write it.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from chatbot.examples import Example

_WORD = re.compile(r"\w+")
DROPPED_IN_STATS = 10


def identity_key(text: str) -> str:
    """The text's class: its lower-cased word characters, so "Thank you!" is "thank you."."""
    return " ".join(_WORD.findall(text.lower()))


class ReplyCounts:
    """How often each reply class follows each message class, counted an example at a time: a
    streaming pass over the training split, in memory that grows with the distinct (reply,
    message) pairs, not with the examples."""

    def __init__(self) -> None:
        self._followed: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, example: Example) -> None:
        self._followed[identity_key(example.response)][identity_key(example.context[-1])] += 1

    def entropies(self) -> dict[str, float]:
        """Each reply class's entropy (bits) over the classes of the messages it follows."""
        return {reply: _entropy(counts.values()) for reply, counts in self._followed.items()}


def reply_entropies(examples: Iterable[Example]) -> dict[str, float]:
    """Each reply class's entropy (bits) over the classes of the messages it follows."""
    counts = ReplyCounts()
    for example in examples:
        counts.add(example)
    return counts.entropies()


def _entropy(counts: Any) -> float:
    counts = list(counts)
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts)


class GenericFilter:
    """Keeps the examples whose reply's entropy is at most `max_entropy`, and counts the rest."""

    def __init__(self, entropies: dict[str, float], max_entropy: float) -> None:
        self.entropies = entropies
        self.max_entropy = max_entropy
        self.dropped: Counter[str] = Counter()

    def keep(self, example: Example) -> bool:
        key = identity_key(example.response)
        if self.entropies[key] > self.max_entropy:
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
