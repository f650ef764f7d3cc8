"""Decoding strategies: how the next tokens are chosen from a step's ruled log-probabilities.

Like KerasHub's samplers and OpenNMT-tf's decoding strategies, the loop
(`chatbot.decoding.search.decode`) owns the bookkeeping and a strategy only decides:
- `initial_scores`: each row's log-probability before the first step;
- `propose`: each row's best `candidates` tokens, with their log-probabilities, best first;
- `select`: from all rows' candidates, the next token and log-probability of every row, and,
  when rows are reordered (beam search), which row each one continues;
- `scores`: what finished hypotheses are ranked by.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, NamedTuple

import tensorflow as tf

from chatbot.decoding import noise
from chatbot.decoding.kernels import NEG_INF
from chatbot.decoding.sampling import filter_for_sampling

if TYPE_CHECKING:
    from chatbot.decoding.search import Knobs, SearchSpec


class Selection(NamedTuple):
    token: Any  # int32 [R]: each row's next token
    log_probs: Any  # float32 [R]: each row's log-probability with it
    parent: Any  # int32 [R]: the row each row continues, or None when rows keep their place


def gnmt_penalty(length: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """Wu et al. (2016): ((5 + length) / 6) ** alpha."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


class Strategy(ABC):
    """`width` hypotheses per input, each an independent row unless `select` reorders them."""

    candidates = 1  # tokens each row proposes per step

    def __init__(self, width: int) -> None:
        self.width = width

    def initial_scores(self, batch: Any) -> tf.Tensor:
        return tf.zeros([batch * self.width])

    @abstractmethod
    def propose(self, allowed: tf.Tensor, knobs: Knobs, step: tf.Tensor) -> tuple[Any, Any]:
        """(values, ids), float32 and int32 [R, candidates]: each row's proposed tokens."""

    def select(
        self,
        log_probs: tf.Tensor,
        values: tf.Tensor,
        ids: tf.Tensor,
        *,
        finished: tf.Tensor,
        lengths: tf.Tensor,
        knobs: Knobs,
        batch: Any,
    ) -> Selection:
        """From `values` and `ids` [R, candidates] of rows with log-probabilities `log_probs`
        [R]: each row continues itself with its one candidate."""
        return Selection(token=ids[:, 0], log_probs=log_probs + values[:, 0], parent=None)

    def scores(self, log_probs: tf.Tensor, lengths: tf.Tensor, knobs: Knobs) -> tf.Tensor:
        """What finished hypotheses [B, N] are ranked by: their log-probability."""
        return log_probs


class Greedy(Strategy):
    """The most likely token (one hypothesis per input)."""

    def propose(self, allowed: tf.Tensor, knobs: Knobs, step: tf.Tensor) -> tuple[Any, Any]:
        ids = tf.argmax(allowed, axis=-1, output_type=tf.int32)[:, None]
        return tf.gather(allowed, ids, axis=1, batch_dims=1), ids


class Sample(Strategy):
    """A draw after temperature, top-k and top-p filtering (`width` independent hypotheses)."""

    def propose(self, allowed: tf.Tensor, knobs: Knobs, step: tf.Tensor) -> tuple[Any, Any]:
        ids = noise.categorical(filter_for_sampling(allowed, knobs), knobs.seed, step)[:, None]
        return tf.gather(allowed, ids, axis=1, batch_dims=1), ids


class Beam(Strategy):
    """The best `width` continuations over all hypotheses of an input, ranked by
    log-probability divided by the GNMT length penalty. Each row proposes its best `width`
    tokens, so `width * width` candidates per input are ranked rather than
    `width * vocabulary`: the result is the same, token for token."""

    def __init__(self, width: int, vocab_size: int) -> None:
        super().__init__(width)
        self.candidates = min(width, vocab_size)

    def initial_scores(self, batch: Any) -> tf.Tensor:
        """All beams start equal: only the first is kept at step one."""
        first = tf.concat([[0.0], tf.fill([self.width - 1], NEG_INF)], 0)
        return tf.tile(first, [batch])

    def propose(self, allowed: tf.Tensor, knobs: Knobs, step: tf.Tensor) -> tuple[Any, Any]:
        return tf.math.top_k(allowed, k=self.candidates)

    def select(
        self,
        log_probs: tf.Tensor,
        values: tf.Tensor,
        ids: tf.Tensor,
        *,
        finished: tf.Tensor,
        lengths: tf.Tensor,
        knobs: Knobs,
        batch: Any,
    ) -> Selection:
        """The best `width` of each input's candidates, by the score they would finish with."""
        width, candidates = self.width, self.candidates
        total = log_probs[:, None] + values
        grown = lengths + tf.cast(~finished, tf.int32)
        ranking = total / gnmt_penalty(grown + 1, knobs.length_penalty)[:, None]
        ranking = tf.reshape(ranking, [batch, width * candidates])
        _, best = tf.math.top_k(ranking, k=width)
        chosen = tf.reshape(best + tf.range(batch)[:, None] * (width * candidates), [-1])
        return Selection(
            token=tf.gather(tf.reshape(ids, [-1]), chosen),
            log_probs=tf.gather(tf.reshape(total, [-1]), chosen),
            parent=chosen // candidates,
        )

    def scores(self, log_probs: tf.Tensor, lengths: tf.Tensor, knobs: Knobs) -> tf.Tensor:
        return log_probs / gnmt_penalty(lengths + 1, knobs.length_penalty)


def strategy_for(spec: SearchSpec, vocab_size: int) -> Strategy:
    """The strategy `spec.strategy` names, for `spec.width` hypotheses per input."""
    if spec.strategy == "beam":
        return Beam(spec.width, vocab_size)
    return {"greedy": Greedy, "sample": Sample}[spec.strategy](spec.width)
