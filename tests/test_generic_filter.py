import math
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from chatbot.examples import Example
from chatbot.generic_filter import (
    CountMinSketch,
    GenericFilter,
    identity_key,
    reply_entropies,
    words,
)


def pairs(*items: tuple[str, str]) -> list[Example]:
    return [Example((message,), reply) for message, reply in items]


def test_identity_key_folds_case_punctuation_and_spacing():
    assert identity_key("Thank you!") == identity_key("thank  you .") == "thank you"


def test_identity_key_splits_words_as_the_reply_bank_matches_them():
    # One notion of a word, so the bank's held-out check and the entropy filter agree.
    assert identity_key("Room_2B, 10:30!") == " ".join(words("Room_2B, 10:30!")) == "room 2b 10 30"


def test_entropy_is_over_the_messages_a_reply_follows():
    examples = pairs(
        ("Here is your tea.", "Thank you."),
        ("I fixed it.", "Thank you!"),
        ("I fixed it.", "thank you"),
        ("Happy birthday!", "Thank you."),
        ("Where is the station?", "Two blocks north."),
    )
    entropies = reply_entropies(lambda: examples)
    # "thank you" follows three message classes with counts 1, 2, 1: H = 1.5 bits
    assert entropies["thank you"] == pytest.approx(-(2 * 0.25 * math.log2(0.25) + 0.5 * -1))
    assert entropies["two blocks north"] == 0.0


def test_the_filter_keeps_replies_at_or_under_the_threshold_and_reports_the_rest():
    examples = pairs(
        ("a", "Yes."),
        ("b", "Yes."),
        ("c", "yes"),
        ("d", "yes!"),
        ("a", "Maybe tomorrow."),
        ("b", "Maybe tomorrow."),
        ("e", "The red one."),
    )
    generic = GenericFilter.over(lambda: examples, max_entropy=1.0)
    kept = [ex for ex in examples if generic.keep(ex)]
    report = generic.report()
    # "yes" follows four messages (2 bits), "maybe tomorrow" two (1 bit, kept at the threshold)
    assert [ex.response for ex in kept] == ["Maybe tomorrow.", "Maybe tomorrow.", "The red one."]
    assert report == {
        "max_reply_entropy": 1.0,
        "examples_dropped": 4,
        "replies_dropped": 1,
        "most_dropped": [{"reply": "yes", "examples": 4, "entropy": 2.0}],
    }


def exact_entropies(examples: list[Example]) -> dict[str, float]:
    followed: dict[str, Counter[str]] = defaultdict(Counter)
    for example in examples:
        followed[identity_key(example.response)][identity_key(example.context[-1])] += 1
    return {
        reply: -sum(n / sum(c.values()) * math.log2(n / sum(c.values())) for n in c.values())
        for reply, c in followed.items()
    }


def test_a_small_sketch_never_counts_below_the_truth():
    keys = np.random.default_rng(0).integers(0, 2**63, 500, dtype=np.uint64).repeat(3)
    sketch = CountMinSketch(rows=2, width=64)  # 500 keys in 64 columns: collisions everywhere
    sketch.add(keys)
    assert (sketch.estimate(keys[::3]) >= 3).all()


def test_the_two_passes_find_every_reply_over_the_threshold_and_its_exact_entropy():
    rng = random.Random(0)
    examples = [  # replies from a growing set, after messages from sets of 1, 3 or 40
        Example(
            (f"message {rng.randrange(rng.choice([1, 3, 40]))}",),
            f"reply {rng.randrange(i // 10 + 1)}",
        )
        for i in range(3000)
    ]
    exact = exact_entropies(examples)
    passes = []

    def stream():
        passes.append(1)
        yield from examples

    generic = GenericFilter.over(stream, max_entropy=3.0)
    assert len(passes) == 2
    over = {reply for reply, bits in exact.items() if bits > 3.0}
    assert over and over <= set(generic.entropies)
    assert all(generic.entropies[r] == pytest.approx(exact[r]) for r in generic.entropies)
    counts = Counter(identity_key(ex.response) for ex in examples)
    assert all(counts[r] > 8 for r in generic.entropies)  # only replies that could exceed 3 bits
    kept = [ex for ex in examples if generic.keep(ex)]
    assert kept == [ex for ex in examples if exact[identity_key(ex.response)] <= 3.0]
