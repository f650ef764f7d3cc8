import numpy as np
import pytest

from chatbot.errors import DataError
from chatbot.evaluation.ranking import (
    choose_distractors,
    draw_distractors,
    hits_at_1,
    rank_replies,
    similar_distractors,
)


def test_hits_at_1_counts_strict_wins_only():
    true = np.array([-1.0, -5.0, -2.0])
    distractors = np.array([[-2.0, -3.0], [-1.0, -9.0], [-2.0, -4.0]])  # win, loss, tie
    assert hits_at_1(true, distractors) == pytest.approx(1 / 3)


def test_distractors_come_from_other_dialogues_and_other_texts():
    dialogues = [f"d{i // 3}" for i in range(30)]
    replies = [f"reply {i % 7}" for i in range(30)]
    rows = draw_distractors(dialogues, replies, k=5, seed=3)
    assert rows.shape == (30, 4)
    for i, row in enumerate(rows):
        assert len(set(row)) == 4
        assert all(dialogues[j] != dialogues[i] and replies[j] != replies[i] for j in row)
    assert (draw_distractors(dialogues, replies, k=5, seed=3) == rows).all()
    assert (draw_distractors(dialogues, replies, k=5, seed=4) != rows).any()


def test_too_few_distractors_is_an_error_naming_the_example():
    dialogues, replies = ["a", "a", "b", "c"], ["x", "y", "z", "w"]
    assert sorted(draw_distractors(dialogues, replies, k=3)[2]) in ([0, 1], [0, 3], [1, 3])
    with pytest.raises(
        DataError, match=r"hits@1/4 needs 3 distractor replies .* example 0 has only 2"
    ):
        draw_distractors(["a", "a", "b", "b"], replies, k=4)
    with pytest.raises(DataError, match="K of at least 2"):
        draw_distractors(dialogues, replies, k=1)


def test_similar_distractors_answer_the_most_similar_messages_of_other_dialogues():
    dialogues = ["d0", "d0", "d1", "d2", "d3", "d4", "d5"]
    messages = [
        "how do i submit an expense report",
        "how do i submit an expense report",  # same dialogue: never a distractor
        "how much was the expense report",
        "the report is late",
        "how do i submit an expense report",  # a near copy: its reply may fit too
        "what a lovely garden",
        "lovely garden party",
    ]
    replies = ["fill in the form", "a", "about 3,000 dollars", "talk to him", "b", "thanks", "c"]
    rows = similar_distractors(dialogues, messages, replies, k=3)
    assert rows.shape == (7, 2)
    assert list(rows[0]) == [2, 3]  # most similar first
    assert rows[5][0] == 6  # one message shares words; a random other fills the row
    for i, row in enumerate(rows):
        assert all(dialogues[j] != dialogues[i] and replies[j] != replies[i] for j in row)
        assert len(set(row)) == 2
    assert (choose_distractors("similar", dialogues, messages, replies, 3) == rows).all()
    random_rows = choose_distractors("random", dialogues, messages, replies, 3, seed=1)
    assert (random_rows == draw_distractors(dialogues, replies, 3, seed=1)).all()
    with pytest.raises(DataError, match=r"hits@1/8 needs 7 distractor replies .* example 0"):
        similar_distractors(dialogues, messages, replies, k=8)


def test_rank_replies_hand_computed():
    # Three examples, one distractor each (K = 2). Sources 10, 11, 12; targets below with
    # lengths 1, 2, 4. Scores are looked up, so every figure can be checked by hand.
    sources = [[10], [11], [12]]
    targets = [[1], [2, 2], [3, 3, 3, 3]]
    distractors = np.array([[1], [2], [0]])
    table = {
        # (source, first target id): summed log-likelihood
        (10, 1): -2.0,  # true 0: per token -2.0
        (10, 2): -3.0,  # distractor 1 under source 0: per token -1.5 -> per-token miss
        (11, 2): -4.0,  # true 1: per token -2.0
        (11, 3): -4.4,  # per token -1.1 -> per-token miss; summed win
        (12, 3): -4.0,  # true 2: per token -1.0
        (12, 1): -5.0,  # per token -5.0 -> win both ways
        (99, 1): -1.0,  # blind scores, per token -1.0, -1.5, -0.5
        (99, 2): -3.0,
        (99, 3): -2.0,
    }
    calls = []

    def score(batch_sources, batch_targets):
        calls.append(len(batch_sources))
        return np.array(
            [table[s[0], t[0]] for s, t in zip(batch_sources, batch_targets, strict=True)]
        )

    true = np.array([-2.0, -4.0, -4.0])
    ranking = rank_replies(score, sources, targets, true, distractors, [99], batch_size=2)
    assert ranking.k == 2
    assert ranking.summed == pytest.approx(3 / 3)  # -2 > -3, -4 > -4.4, -4 > -5
    assert ranking.per_token == pytest.approx(1 / 3)
    # blind summed: 0: -1 > -3 win; 1: -3 vs -2 loss; 2: -2 vs -1 loss
    assert ranking.blind_summed == pytest.approx(1 / 3)
    # blind per token: 0: -1 vs -1.5 win; 1: -1.5 vs -0.5 loss; 2: -0.5 vs -1 win
    assert ranking.blind_per_token == pytest.approx(2 / 3)
    assert ranking.as_dict()["hits_at_1"] == ranking.per_token
    assert max(calls) <= 2  # batches of at most batch_size examples' distractors
