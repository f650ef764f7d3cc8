import math

import pytest

from chatbot.examples import Example
from chatbot.generic_filter import GenericFilter, identity_key, reply_entropies


def pairs(*items: tuple[str, str]) -> list[Example]:
    return [Example((message,), reply) for message, reply in items]


def test_identity_key_folds_case_punctuation_and_spacing():
    assert identity_key("Thank you!") == identity_key("thank  you .") == "thank you"


def test_entropy_is_over_the_messages_a_reply_follows():
    examples = pairs(
        ("Here is your tea.", "Thank you."),
        ("I fixed it.", "Thank you!"),
        ("I fixed it.", "thank you"),
        ("Happy birthday!", "Thank you."),
        ("Where is the station?", "Two blocks north."),
    )
    entropies = reply_entropies(examples)
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
    generic = GenericFilter(reply_entropies(examples), max_entropy=1.0)
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
