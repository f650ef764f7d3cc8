"""Hard negatives for the ranking loss: for each training example, replies that answered the
most similar messages elsewhere in the training split.

Random replies from other examples (`training.contrastive_negatives`, rolled within a batch)
are easy to rank below the true one: they are about something else. The reply bank's failures
are harder: a fluent reply to a message with the same words in another scene ("About 3,000
dollars." to "How do I submit an expense report?"). The bank finds such replies by TF-IDF
similarity between messages, so mining negatives the same way trains the model on exactly the
choices it meets at decoding time (as dense retrievers do with BM25 negatives: Karpukhin et al.
2020, "Dense Passage Retrieval").

A backward model p(message | reply) ranks the other way round (`training.contrastive_side`
"source"): the message is fixed and the candidate replies are its sources, so its negatives
are the sources of the examples whose targets are most like its own.

A message almost identical to the example's own ("How are you?" twice) likely got a reply that
would fit here too, so candidates above `max_similarity` (`retrieval.NEAR_COPY`) are skipped;
each example's negatives are drawn at random from the next `pool` most similar messages, and
topped up with random replies where fewer qualify. The mined shards are written once into the
run's work dir (each file atomically, so workers sharing the dir under `multi_worker` write the
same bytes safely), next to a stamp that says what they were mined from, and reused by a
resumed run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from chatbot.atomic import atomic_write_bytes, atomic_write_text
from chatbot.pipeline import read_shards
from chatbot.retrieval import NEAR_COPY, TfIdf
from chatbot.shards import Shard, example_record
from chatbot.tokenizer import Tokenizer, split_context

log = logging.getLogger(__name__)

POOL = 20
_STAMP = "mined.json"


def choose_negatives(
    messages: Sequence[str],
    replies: Sequence[str],
    count: int,
    *,
    seed: int,
    pool: int = POOL,
    max_similarity: float = NEAR_COPY,
) -> np.ndarray:
    """int64 [examples, count]: for each example, the indexes of `count` other examples whose
    replies serve as its negatives, drawn from the `pool` whose messages are most similar to
    its own (cosine similarity of TF-IDF vectors, at most `max_similarity`), never one with the
    same reply text as its own or another negative's; random others where fewer qualify."""
    size = len(messages)
    if size < 2:
        raise ValueError(f"mining negatives needs at least 2 examples; got {size}")
    rng = np.random.default_rng(seed)
    unique, message_of = np.unique(np.array(messages, dtype=object), return_inverse=True)
    index = TfIdf(list(unique))
    order = np.argsort(message_of, kind="stable")
    bounds = np.searchsorted(message_of[order], np.arange(len(unique) + 1))
    by_message = [order[bounds[m] : bounds[m + 1]] for m in range(len(unique))]
    chosen = np.empty((size, count), np.int64)
    for m, text in enumerate(unique):
        similar = _similar_messages(index, str(text), m, pool, max_similarity)
        candidates = np.concatenate([by_message[s] for s in similar]) if len(similar) else []
        for example in by_message[m]:
            allowed = list(
                {replies[c]: c for c in candidates[::-1] if replies[c] != replies[example]}.values()
            )
            picked = list(rng.permutation(allowed)[:count]) if allowed else []
            chosen[example] = picked + _random_others(replies, example, picked, count, rng)
    return chosen


def _random_others(
    replies: Sequence[str],
    example: int,
    picked: list[int],
    count: int,
    rng: np.random.Generator,
) -> list[int]:
    """Random examples to make `picked` up to `count`: never one with the example's reply
    text, nor, while a few hundred draws find others, a reply text already picked."""
    taken = {replies[i] for i in picked}
    others: list[int] = []
    for attempt in range(100 * count + 1000):
        if len(picked) + len(others) == count:
            return others
        other = int(rng.integers(len(replies)))
        if replies[other] == replies[example] or (replies[other] in taken and attempt < 100):
            continue
        taken.add(replies[other])
        others.append(other)
    raise ValueError(f"no reply other than example {example}'s to use as its negative")


def _similar_messages(
    index: TfIdf, text: str, own: int, pool: int, max_similarity: float
) -> np.ndarray:
    """The indexes of up to `pool` messages most similar to `text` (message `own`), most similar
    first, leaving out those above `max_similarity` and those with no word in common."""
    scores = index.similarities(text)
    scores[own] = 0.0
    scores[scores > max_similarity] = 0.0
    top = np.argpartition(-scores, min(pool, len(scores) - 1))[:pool]
    top = top[np.argsort(-scores[top], kind="stable")]
    return top[scores[top] > 0.0]


def mined_shards(
    shards: Sequence[Shard],
    tokenizer: Tokenizer,
    count: int,
    directory: Path,
    *,
    seed: int,
    side: Literal["target", "source"] = "target",
) -> list[Shard]:
    """Copies of `shards` whose examples also hold `count` hard negatives each (the
    "negatives" feature, `chatbot.pipeline` reads it), written into `directory`, or the copies
    already there when mined from the same shards with the same settings.

    `side="target"`: the targets of the examples whose newest context turn is most like the
    example's own. `side="source"`: the sources (whole contexts) of the examples whose target
    is most like its own; for a backward model, whose source is a reply and target the message
    it answered, those are the replies to messages like this one, the candidates MMI-bidi
    compares."""
    stamp = {
        "shards": [str(shard.path.resolve()) for shard in shards],
        "examples": sum(shard.examples for shard in shards),
        "count": count,
        "seed": seed,
        "pool": POOL,
        "max_similarity": NEAR_COPY,
        "side": side,
    }
    mined = [directory / shard.path.name for shard in shards]
    stamp_path = directory / _STAMP
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return [replace(shard, path=path) for shard, path in zip(shards, mined, strict=True)]
    directory.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)
    per_shard = [_read(shard) for shard in shards]
    sources = [source for rows in per_shard for source, _ in rows]
    targets = [target for rows in per_shard for _, target in rows]
    replies = [tokenizer.decode(target) for target in targets]
    log.info("mining %d %s-side hard negatives for each of %d examples", count, side, len(sources))
    if side == "target":
        messages = [tokenizer.decode(split_context(source)[-1]) for source in sources]
        chosen, negatives = choose_negatives(messages, replies, count, seed=seed), targets
    else:
        contexts = [tokenizer.decode(source) for source in sources]
        chosen, negatives = choose_negatives(replies, contexts, count, seed=seed), sources
    start = 0
    for rows, path in zip(per_shard, mined, strict=True):
        records = (
            example_record(source, target, [negatives[other] for other in chosen[start + offset]])
            for offset, (source, target) in enumerate(rows)
        )
        atomic_write_bytes(path, b"".join(records))
        start += len(rows)
    atomic_write_text(stamp_path, json.dumps(stamp, indent=2))
    return [replace(shard, path=path) for shard, path in zip(shards, mined, strict=True)]


def _read(shard: Shard) -> list[tuple[list[int], list[int]]]:
    examples = read_shards([shard.path], shuffle=False, seed=0)
    return [(list(source), list(target)) for source, target in examples.as_numpy_iterator()]
