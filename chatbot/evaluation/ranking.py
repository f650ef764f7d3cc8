"""Does the model use its context? Hits@1/K ranks the true reply among distractors.

For each example, K - 1 distractor replies are drawn (with a seed) from other dialogues of the
same examples, never one that reads exactly like the true reply. Random ones are mostly about
something else; `similar_distractors` takes instead the replies to the messages most like the
example's own (TF-IDF cosine similarity, as the reply bank retrieves them, near copies left
out), the harder choice a retrieving bot has to make. All K are scored by
log p(reply | context); the example is a hit when the true reply scores strictly above every
distractor (a tie is a miss). Two scores: the summed log-likelihood, which favours short
replies, and the per-token one (the sum over the reply's tokens, end mark included).

The same ranking with the context blanked (the source is only the end mark, as the anti-LM of
MMI reranking scores a reply) is the context-blind baseline: a model that ignores its context
scores as well blind as it does with the context, and chance is 1/K.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from chatbot.errors import DataError
from chatbot.retrieval import NEAR_COPY, TfIdf

Scorer = Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]]], np.ndarray]
"""log p(target | source) summed over each target's tokens, one value per (source, target)."""

MAX_DRAWS_PER_DISTRACTOR = 50
Distractors = Literal["random", "similar"]


@dataclass(frozen=True)
class Ranking:
    """Hits@1/K with the context and with it blanked, by summed and per-token scores."""

    k: int
    per_token: float
    summed: float
    blind_per_token: float
    blind_summed: float

    def as_dict(self) -> dict[str, float]:
        return {
            "hits_k": self.k,
            "hits_at_1": self.per_token,
            "hits_at_1_summed": self.summed,
            "hits_at_1_blind": self.blind_per_token,
            "hits_at_1_summed_blind": self.blind_summed,
        }


def draw_distractors(
    dialogues: Sequence[str], replies: Sequence[str], k: int, seed: int = 0
) -> np.ndarray:
    """[examples, k - 1] indices of distractor replies: other dialogues, other texts, no
    index twice in a row. Raises `DataError` when an example has too few to choose from."""
    if k < 2:
        raise DataError(f"hits@1/K needs K of at least 2, got {k}")
    n = len(dialogues)
    rng = np.random.default_rng(seed)
    rows = np.empty((n, k - 1), np.int64)
    for i in range(n):
        rows[i] = _distractors_for(i, dialogues, replies, k - 1, rng)
    return rows


def _distractors_for(
    i: int, dialogues: Sequence[str], replies: Sequence[str], count: int, rng: np.random.Generator
) -> list[int]:
    def eligible(j: int) -> bool:
        return dialogues[j] != dialogues[i] and replies[j] != replies[i]

    chosen: dict[int, None] = {}  # ordered set: the draw order is part of the seed's result
    for _ in range(count * MAX_DRAWS_PER_DISTRACTOR):
        j = int(rng.integers(len(dialogues)))
        if j not in chosen and eligible(j):
            chosen[j] = None
            if len(chosen) == count:
                return list(chosen)
    # Rejection keeps failing only when few replies qualify: choose among all of them.
    pool = [j for j in range(len(dialogues)) if eligible(j)]
    if len(pool) < count:
        raise _too_few(count + 1, i, len(pool))
    return [int(j) for j in rng.choice(pool, size=count, replace=False)]


def _too_few(k: int, example: int, available: int) -> DataError:
    return DataError(
        f"hits@1/{k} needs {k - 1} distractor replies from other dialogues, but example "
        f"{example} has only {available}; evaluate more examples or lower K"
    )


def similar_distractors(
    dialogues: Sequence[str],
    messages: Sequence[str],
    replies: Sequence[str],
    k: int,
    seed: int = 0,
) -> np.ndarray:
    """[examples, k - 1] indices of distractor replies: those of the other dialogues' messages
    most similar to each example's message, at most `NEAR_COPY` similar, each reply text once
    and never the true one's; random ones (as `draw_distractors`) where too few share a word.
    Raises `DataError` when an example has too few to choose from."""
    if k < 2:
        raise DataError(f"hits@1/K needs K of at least 2, got {k}")
    index = TfIdf(messages)
    rng = np.random.default_rng(seed)
    rows = np.empty((len(messages), k - 1), np.int64)
    for i, message in enumerate(messages):
        scores = index.similarities(message)
        scores[scores > NEAR_COPY] = 0.0
        texts = {replies[i]}
        chosen: list[int] = []
        for j in np.argsort(-scores, kind="stable"):
            if len(chosen) == k - 1 or scores[j] <= 0.0:
                break
            if dialogues[j] != dialogues[i] and replies[j] not in texts:
                texts.add(replies[j])
                chosen.append(int(j))
        if len(chosen) < k - 1:
            eligible = [j for j in range(len(messages)) if replies[j] not in texts]
            rest = [j for j in eligible if dialogues[j] != dialogues[i]]
            if len(rest) < k - 1 - len(chosen):
                raise _too_few(k, i, len(chosen) + len(rest))
            chosen += [int(j) for j in rng.choice(rest, size=k - 1 - len(chosen), replace=False)]
        rows[i] = chosen
    return rows


def choose_distractors(
    kind: Distractors,
    dialogues: Sequence[str],
    messages: Sequence[str],
    replies: Sequence[str],
    k: int,
    seed: int = 0,
) -> np.ndarray:
    """`draw_distractors` (random) or `similar_distractors`, by `kind`."""
    if kind == "similar":
        return similar_distractors(dialogues, messages, replies, k, seed)
    return draw_distractors(dialogues, replies, k, seed)


def hits_at_1(true_scores: np.ndarray, distractor_scores: np.ndarray) -> float:
    """Share of rows whose true score is strictly above all of its distractors' scores."""
    return float(np.mean(true_scores > distractor_scores.max(axis=1)))


def rank_replies(
    score: Scorer,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    true_scores: np.ndarray,
    distractors: np.ndarray,
    blank_source: Sequence[int],
    *,
    batch_size: int = 64,
) -> Ranking:
    """Hits@1/K of each example's target among the targets of its `distractors` row, under
    its own source and under `blank_source`. `targets` end with the end mark; `true_scores`
    are the targets' own scores under their sources (evaluation has them already)."""
    lengths = np.array([len(target) for target in targets], np.float64)
    others = np.concatenate(
        [
            score(
                [sources[i] for i in rows for _ in distractors[i]],
                [targets[j] for i in rows for j in distractors[i]],
            ).reshape(len(rows), -1)
            for rows in _chunks(range(len(targets)), batch_size)
        ]
    )
    blind = np.concatenate(
        [
            score([blank_source] * len(rows), [targets[j] for j in rows])
            for rows in _chunks(range(len(targets)), batch_size * distractors.shape[1])
        ]
    )
    return Ranking(
        k=distractors.shape[1] + 1,
        per_token=hits_at_1(true_scores / lengths, others / lengths[distractors]),
        summed=hits_at_1(true_scores, others),
        blind_per_token=hits_at_1(blind / lengths, (blind / lengths)[distractors]),
        blind_summed=hits_at_1(blind, blind[distractors]),
    )


def _chunks(indices: range, size: int) -> list[range]:
    return [indices[start : start + size] for start in range(0, len(indices), size)]
