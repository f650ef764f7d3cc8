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
from collections.abc import Sequence
from typing import Any

from chatbot.examples import Example

_WORD = re.compile(r"\w+")
DROPPED_IN_STATS = 10


def identity_key(text: str) -> str:
    """The text's class: its lower-cased word characters, so "Thank you!" is "thank you."."""
    return " ".join(_WORD.findall(text.lower()))


def reply_entropies(examples: Sequence[Example]) -> dict[str, float]:
    """Each reply class's entropy (bits) over the classes of the messages it follows."""
    followed: dict[str, Counter[str]] = defaultdict(Counter)
    for example in examples:
        followed[identity_key(example.response)][identity_key(example.context[-1])] += 1
    return {reply: _entropy(counts.values()) for reply, counts in followed.items()}


def _entropy(counts: Any) -> float:
    counts = list(counts)
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts)


def drop_generic(
    examples: Sequence[Example], max_entropy: float
) -> tuple[list[Example], dict[str, Any]]:
    """The examples whose reply's entropy is at most `max_entropy`, and what was dropped."""
    entropies = reply_entropies(examples)
    kept: list[Example] = []
    dropped: Counter[str] = Counter()
    for example in examples:
        key = identity_key(example.response)
        if entropies[key] > max_entropy:
            dropped[key] += 1
        else:
            kept.append(example)
    report = {
        "max_reply_entropy": max_entropy,
        "examples_dropped": sum(dropped.values()),
        "replies_dropped": len(dropped),
        "most_dropped": [
            {"reply": reply, "examples": n, "entropy": round(entropies[reply], 3)}
            for reply, n in dropped.most_common(DROPPED_IN_STATS)
        ],
    }
    return kept, report
