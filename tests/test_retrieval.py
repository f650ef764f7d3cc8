import gzip

import numpy as np
import pytest

from chatbot.errors import BundleError
from chatbot.examples import Example
from chatbot.retrieval import Pair, ReplyBank, bank_pairs, build_bank, words

TRAIN = [
    Example(("hello there",), "hi, how are you?", "d1"),
    Example(("how much is the red coat",), "it is forty dollars.", "d2"),
    Example(("is the coat red or blue",), "the coat is red.", "d3"),
    Example(("hello there",), "hi, how are you?", "d4"),  # a duplicate pair
    Example(("say it twice",), "go go go go go go", "d5"),  # repeats a 3-gram
    Example(("where is the station",), "the station is next to the old bank.", "d6"),
]
HELD_OUT = [Example(("where is the station",), "the station is next to the old bank.", "v1")]


def reference_similarities(messages: list[str], query: str) -> np.ndarray:
    """Brute-force TF-IDF cosine similarity (sublinear tf, idf = log(N / df))."""
    vocabulary = sorted({w for m in messages for w in words(m)})
    df = np.array([sum(w in words(m) for m in messages) for w in vocabulary], float)
    idf = np.log(len(messages) / df)

    def vector(text: str) -> np.ndarray:
        counts = np.array([words(text).count(w) for w in vocabulary], float)
        v = np.where(counts > 0, 1 + np.log(np.maximum(counts, 1)), 0) * idf
        return v / max(np.linalg.norm(v), 1e-12)

    return np.array([vector(m) @ vector(query) for m in messages])


def test_pairs_drop_duplicates_repeats_and_held_out_copies():
    pairs = bank_pairs(TRAIN, HELD_OUT)
    assert [p.reply for p in pairs] == [
        "hi, how are you?",
        "it is forty dollars.",
        "the coat is red.",
    ]


def test_similarities_match_a_brute_force_tf_idf():
    bank = build_bank(TRAIN)
    messages = [p.message for p in bank.pairs]
    for query in ["red coat", "hello hello", "the station", "nothing matches"]:
        np.testing.assert_allclose(
            bank.similarities(query), reference_similarities(messages, query), atol=1e-6
        )


def test_search_ranks_by_similarity_and_returns_distinct_replies():
    bank = build_bank(TRAIN)
    found = bank.search("red or blue?", 2)
    assert [reply for reply, _ in found] == ["the coat is red.", "it is forty dollars."]
    expected = reference_similarities([p.message for p in bank.pairs], "red or blue?")
    np.testing.assert_allclose([similarity for _, similarity in found], expected[[2, 1]], atol=1e-6)
    assert bank.search("zzz", 5) == []


# The same message in two scenes: which reply fits depends on the turn before it.
SCENES = [
    Example(
        ("i would like the fish soup.", "will that be all?"), "yes, and the bill please.", "s1"
    ),
    Example(("i need stamps for this letter.", "will that be all?"), "yes, just the stamps.", "s2"),
    Example(("will that be all for today?",), "that is all, thanks.", "s3"),
]


def test_pairs_keep_the_turn_before_the_message():
    pairs = bank_pairs(SCENES)
    assert [p.previous for p in pairs] == [
        "i would like the fish soup.",
        "i need stamps for this letter.",
        "",
    ]


def test_the_previous_turn_reorders_pairs_with_like_messages():
    bank = build_bank([*TRAIN, *SCENES])
    message, previous = "will that be all?", "some stamps, please"
    assert [reply for reply, _ in bank.search(message, 2)] == [
        "yes, and the bill please.",  # ties in pair order
        "yes, just the stamps.",
    ]
    found = bank.search(message, len(bank), previous, previous_weight=0.5)
    expected = reference_similarities([p.message for p in bank.pairs], message)
    expected += 0.5 * reference_similarities([p.previous for p in bank.pairs], previous)
    matched = [(p.reply, e) for p, e in zip(bank.pairs, expected, strict=True) if e > 0]
    assert [reply for reply, _ in found] == [
        "yes, just the stamps.",
        "yes, and the bill please.",
        "that is all, thanks.",
    ]
    assert dict(found) == pytest.approx(dict(matched))
    assert bank.search("soup", 3, previous, previous_weight=0.5) == []  # found by message only


def test_round_trip_is_byte_stable(tmp_path):
    bank = build_bank([*TRAIN, *SCENES])
    path = tmp_path / "replies.jsonl.gz"
    path.write_bytes(bank.to_bytes())
    again = ReplyBank.load(path)
    assert again.pairs == bank.pairs
    assert again.to_bytes() == bank.to_bytes()


def test_a_bank_written_without_previous_turns_still_loads(tmp_path):
    path = tmp_path / "replies.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"message": "hi", "reply": "hello"}\n'))
    assert ReplyBank.load(path).pairs == [Pair("hi", "hello", "")]


def test_a_damaged_bank_names_the_file_and_line(tmp_path):
    path = tmp_path / "replies.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"message": "a", "reply": "b"}\n{"message": "a"}\n'))
    with pytest.raises(BundleError, match=r"replies.jsonl.gz:2: not a \{message, reply\}"):
        ReplyBank.load(path)
    path.write_bytes(b"not gzip")
    with pytest.raises(BundleError, match="not a gzip-compressed"):
        ReplyBank.load(path)


def test_a_bank_can_leave_out_replies_that_follow_many_messages():
    generic = [Example((message,), "why not?", f"g{i}") for i, message in enumerate("abcd")]
    train = [*TRAIN, *generic]  # "why not?" follows 4 messages: 2 bits
    assert "why not?" in {p.reply for p in build_bank(train, max_reply_entropy=2.0).pairs}
    kept = build_bank(train, max_reply_entropy=1.9).pairs
    assert [p.reply for p in kept] == [p.reply for p in build_bank(TRAIN).pairs]
