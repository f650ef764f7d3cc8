import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbot.evaluation.metrics import (
    GENERIC_PATTERNS,
    corpus_bleu,
    distinct_n,
    generic_share,
    is_generic,
    mean_length,
    most_common_reply_share,
    repeated_ngram_share,
    repeats_ngram,
    reply_metrics,
    tokens,
    word_count,
)

GENERIC = [
    "I don't know.",
    "i don’t know",
    "I DO NOT KNOW!!!",
    "i dont know",
    "I'm not sure.",
    "I am not sure",
    "I don't think so.",
    "I don't understand.",
    "I have no idea.",
    "I’m sorry.",
    "Sorry!",
    "What do you mean?",
    "What?",
    "I don't know what you're talking about.",
    "OK.",
    "Okay",
    "Yes.",
    "Yeah!",
    "yep",
    "No.",
    "Nope.",
    "I see.",
    "Me too!",
    "Thank you.",
    "Thanks!",
    "You're welcome.",
    "I'm fine.",
    "I don't care.",
    "Really?",
    "Uh-huh.",
    "Hmm...",
    "  hmmm  ",
    "Sorry, I don't know.",
    "No. Thank you!",
]

NOT_GENERIC = [
    "I don't know, maybe the blue one is cheaper.",
    "I don't know where he lives.",
    "I'm not sure it will rain tomorrow.",
    "Sorry I'm late, the bus broke down.",
    "What time does the movie start?",
    "Yes, I'd love to go to the beach.",
    "No, the meeting is on Friday.",
    "Thanks for the pizza recipe!",
    "I see a red car outside.",
    "I'm fine with pasta tonight.",
    "Okay, let's meet at eight at the station.",
    "Nobody knows.",
    "",
]


@pytest.mark.parametrize("reply", GENERIC)
def test_generic_replies(reply):
    assert is_generic(reply)


@pytest.mark.parametrize("reply", NOT_GENERIC)
def test_replies_with_content_are_not_generic(reply):
    assert not is_generic(reply)


def test_generic_patterns_are_a_documented_tuple_of_regexes():
    assert isinstance(GENERIC_PATTERNS, tuple)
    assert len(GENERIC_PATTERNS) >= 20
    assert all(isinstance(pattern, str) for pattern in GENERIC_PATTERNS)


def test_generic_share():
    assert generic_share([]) == 0.0
    assert generic_share(["I don't know.", "The train leaves at six.", "ok", "Sure, why not"]) == (
        0.5
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm fine, thanks!", ["i'm", "fine", ",", "thanks", "!"]),
        ("I don’t KNOW...", ["i", "don't", "know", "..."]),
        ("  spaces\tand\nnewlines ", ["spaces", "and", "newlines"]),
        ("It costs $5?!", ["it", "costs", "$", "5", "?", "!"]),
        ("", []),
    ],
)
def test_tokens(text, expected):
    assert tokens(text) == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Don't go!", 6),  # don ' t go ! + end
        ("I'm 25.", 6),  # i ' m 25 . + end
        ("  ", 1),  # the end mark alone
        ("Café... ok", 6),  # café . . . ok + end
        ("snake_case", 4),  # snake _ case + end
    ],
)
def test_word_count(reference, expected):
    assert word_count(reference) == expected


def test_distinct_n_hand_computed():
    replies = ["a b a", "a b c"]
    assert distinct_n(replies, 1) == 0.5  # a b a a b c: 3 distinct of 6
    assert distinct_n(replies, 2) == 0.75  # ab ba | ab bc: 3 distinct of 4
    assert distinct_n(replies, 3) == 1.0  # aba | abc
    assert distinct_n(["i am i am i am"], 2) == 2 / 5


def test_distinct_n_without_ngrams_is_zero():
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["", ""], 1) == 0.0
    assert distinct_n(["a b", "c"], 3) == 0.0


def test_distinct_n_rejects_order_below_one():
    with pytest.raises(ValueError, match="at least 1"):
        distinct_n(["a b"], 0)


@pytest.mark.parametrize(
    ("reply", "n", "expected"),
    [
        ("i am i am i am", 3, True),
        ("i am i am", 3, False),
        ("i am i am", 2, True),
        ("I like pizza. I like pasta.", 2, True),
        ("I like pizza. I like pasta.", 3, False),
        ("the cat sat on the mat", 1, True),
        ("the cat sat on a mat", 2, False),
        ("", 3, False),
    ],
)
def test_repeats_ngram(reply, n, expected):
    assert repeats_ngram(reply, n) is expected


def test_repeated_ngram_share_and_mean_length():
    replies = ["i am i am i am", "hello there", "you know you know you know", "fine."]
    assert repeated_ngram_share(replies) == 0.5
    assert repeated_ngram_share([]) == 0.0
    assert mean_length(replies) == (6 + 2 + 6 + 2) / 4
    assert mean_length([]) == 0.0


def test_most_common_reply_share_normalizes_and_counts():
    replies = ["I don't know.", "i don’t know", "The bus.", "I DON'T KNOW!", "ok"]
    assert most_common_reply_share(replies) == ("i don't know", 0.6)
    assert most_common_reply_share([]) == ("", 0.0)


def test_most_common_reply_share_tie_goes_to_first_seen():
    assert most_common_reply_share(["b", "a", "a", "b", "c"]) == ("b", 0.4)
    assert most_common_reply_share(["a", "b", "b", "a", "c"]) == ("a", 0.4)


def test_corpus_bleu_identical_is_100():
    sentences = ["the cat sat on the mat", "we will meet at the station at eight"]
    assert corpus_bleu(sentences, sentences) == pytest.approx(100.0)


def test_corpus_bleu_hand_computed():
    # Clipped n-gram precisions 5/6, 3/5, 2/4, 1/3 and brevity penalty 1 (equal lengths);
    # `sacrebleu ref.txt -i hyp.txt -w 4` prints 53.7285 for the same pair.
    expected = 100 * math.exp(sum(math.log(p) for p in (5 / 6, 3 / 5, 2 / 4, 1 / 3)) / 4)
    score = corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert score == pytest.approx(expected)
    assert score == pytest.approx(53.7285, abs=1e-4)


def test_corpus_bleu_no_overlap_is_zero():
    assert corpus_bleu(["a b c d e"], ["v w x y z"]) == 0.0
    assert corpus_bleu([], []) == 0.0


def test_corpus_bleu_grows_as_hypotheses_approach_references():
    reference = ["the quick brown fox jumps over the lazy dog"]
    hypotheses = [
        "a slow red cat walks under one busy bird",
        "the quick brown cat walks under one busy bird",
        "the quick brown fox jumps under one busy bird",
        "the quick brown fox jumps over the lazy bird",
        "the quick brown fox jumps over the lazy dog",
    ]
    scores = [corpus_bleu([hypothesis], reference) for hypothesis in hypotheses]
    assert scores == sorted(scores)
    assert len(set(scores)) == len(scores)


def test_corpus_bleu_rejects_unequal_lengths():
    with pytest.raises(ValueError, match=r"3 hypotheses but 2 references"):
        corpus_bleu(["a", "b", "c"], ["a", "b"])


def test_reply_metrics_small_example():
    replies = ["I don't know.", "i am i am i am", "I don't know!", "The park is open."]
    metrics = reply_metrics(replies)
    assert metrics == {
        "replies": 4,
        "mean_length": (4 + 6 + 4 + 5) / 4,
        # 19 tokens; distinct: i don't know . am ! the park is open
        "distinct_1": 10 / 19,
        # 3 + 5 + 3 + 4 bigrams; distinct: 3 from the first reply, "i am" and "am i",
        # "know !", and the 4 of the last reply
        "distinct_2": 10 / 15,
        "generic_share": 0.5,
        "repeated_3gram_share": 0.25,
        "top_reply": "i don't know",
        "top_reply_share": 0.5,
    }


def test_reply_metrics_with_references_adds_bleu():
    replies = ["the cat sat on the mat"]
    metrics = reply_metrics(replies, ["the cat sat on a mat"])
    assert set(metrics) == {
        "replies",
        "mean_length",
        "distinct_1",
        "distinct_2",
        "generic_share",
        "repeated_3gram_share",
        "top_reply",
        "top_reply_share",
        "bleu",
    }
    assert metrics["bleu"] == pytest.approx(53.7285, abs=1e-4)
    with pytest.raises(ValueError, match="1 hypotheses but 0 references"):
        reply_metrics(replies, [])


WORDS = ["i", "am", "don't", "know", "ok", "the", "cat", ",", "?", "sorry"]
replies_strategy = st.lists(
    st.one_of(
        st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join),
        st.text(max_size=20),
    ),
    max_size=10,
)


@given(replies_strategy, st.integers(min_value=1, max_value=4))
def test_distinct_n_is_a_share(replies, n):
    assert 0.0 <= distinct_n(replies, n) <= 1.0


@given(replies_strategy)
def test_shares_are_in_unit_interval(replies):
    assert 0.0 <= generic_share(replies) <= 1.0
    assert 0.0 <= repeated_ngram_share(replies) <= 1.0
    assert 0.0 <= most_common_reply_share(replies)[1] <= 1.0


@given(replies_strategy)
def test_repeating_the_replies_does_not_raise_distinct_1(replies):
    assert distinct_n(replies * 2, 1) <= distinct_n(replies, 1)
