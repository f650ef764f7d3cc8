"""A reply bank: the training split's replies, indexed by the messages they answered.

A small seq2seq model ranks replies better than it writes them: its generated replies are
often ungrammatical or generic, while it can still tell which of several human-written replies
fits a context (hits@1 in `chatbot evaluate`). Retrieve-and-rerank systems use this (ParlAI's
retrieval agents, Weston et al. 2018 "Retrieve and Refine"): the bank offers the replies whose
training messages are most like the user's message, by TF-IDF cosine similarity over words,
and the model ranks them with the generated candidates (`decoding.reply_source`), with a bonus
for how well each one matched (`decoding.match_weight`). A pair's match can count the turn
before its message too (`decoding.previous_weight`): a reply to a like message in a like
scene.

The bank leaves out replies that repeat a word 3-gram, and every pair that shares a
distinctive text (`DISTINCTIVE_WORDS` words or more) with the held-out split: corpora such as
DailyDialog hold the same dialogue more than once, and a bank that knew the held-out replies
would make evaluation on them meaningless.

Stored in a bundle as replies.jsonl.gz, one {"message", "reply", "previous"} object per line
("previous" left out where empty, and in banks written before it existed); the message index is
rebuilt when the bundle loads (about a second for DailyDialog's 68,000 pairs), the previous
turns' index when first searched.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from chatbot.errors import BundleError
from chatbot.evaluation.metrics import repeats_ngram
from chatbot.examples import Example
from chatbot.generic_filter import GenericFilter, identity_key, words

# A held-out text of at least this many words is distinctive enough that a bank pair holding
# it is taken for a copy of the held-out dialogue; shorter ones ("Thank you.") are not.
DISTINCTIVE_WORDS = 4
# Messages at least this similar (TF-IDF cosine) are near copies ("How are you?" and "How are
# you doing?"): the reply to one likely fits the other, so neither is the other's negative
# (training's hard negatives) or distractor (evaluation's hits@1 with similar distractors).
NEAR_COPY = 0.9


@dataclass(frozen=True)
class Pair:
    message: str  # the context's last turn
    reply: str
    previous: str = ""  # the turn before `message`; empty where the dialogue starts with it


def bank_pairs(train: Iterable[Example], held_out: Iterable[Example] = ()) -> list[Pair]:
    """The (message, reply, previous turn) pairs of `train`, each once, without replies that
    repeat a word 3-gram or pairs sharing a distinctive text with `held_out`'s turns and
    replies."""
    seen = {
        key
        for example in held_out
        for text in (*example.context, example.response)
        if len((key := identity_key(text)).split()) >= DISTINCTIVE_WORDS
    }
    pairs: dict[Pair, None] = {}
    for example in train:
        previous = example.context[-2] if len(example.context) > 1 else ""
        pair = Pair(example.context[-1], example.response, previous)
        if not words(pair.reply) or repeats_ngram(pair.reply, 3):
            continue
        if identity_key(pair.message) in seen or identity_key(pair.reply) in seen:
            continue
        pairs[pair] = None
    return list(pairs)


class TfIdf:
    """A TF-IDF index over texts' words (sublinear term frequency, each text's vector of unit
    length), searched by cosine similarity through inverted postings."""

    def __init__(self, texts: Sequence[str]) -> None:
        vocabulary: dict[str, int] = {}
        rows, columns, counts = [], [], []
        for row, text in enumerate(texts):
            tally: dict[int, int] = {}
            for word in words(text):
                column = vocabulary.setdefault(word, len(vocabulary))
                tally[column] = tally.get(column, 0) + 1
            rows.extend([row] * len(tally))
            columns.extend(tally)
            counts.extend(tally.values())
        row_of, column_of = np.array(rows, np.int64), np.array(columns, np.int64)
        frequency = np.bincount(column_of, minlength=len(vocabulary))
        idf = np.log(max(len(texts), 1) / np.maximum(frequency, 1)).astype(np.float32)
        weights = (1.0 + np.log(np.array(counts, np.float32))) * idf[column_of]
        norms = np.sqrt(np.bincount(row_of, weights * weights, minlength=len(texts)))
        weights = weights / np.maximum(norms[row_of], 1e-12)
        order = np.argsort(column_of, kind="stable")
        self._size = len(texts)
        self._vocabulary = vocabulary
        self._idf = idf
        self._starts = np.concatenate([[0], np.cumsum(frequency)]).astype(np.int64)
        self._docs = row_of[order].astype(np.int32)  # word w's postings: starts[w]:starts[w+1]
        self._weights = weights[order].astype(np.float32)

    def similarities(self, query: str) -> np.ndarray:
        """float32 [texts]: each text's cosine similarity with `query`."""
        tally: dict[int, int] = {}
        for word in words(query):
            if (column := self._vocabulary.get(word)) is not None:
                tally[column] = tally.get(column, 0) + 1
        scores = np.zeros(self._size, np.float32)
        if not tally:
            return scores
        columns = np.array(list(tally))
        weights = (1.0 + np.log(np.array(list(tally.values()), np.float32))) * self._idf[columns]
        weights /= max(float(np.linalg.norm(weights)), 1e-12)
        for column, weight in zip(columns, weights, strict=True):
            start, end = self._starts[column], self._starts[column + 1]
            scores[self._docs[start:end]] += weight * self._weights[start:end]
        return scores


@dataclass
class ReplyBank:
    """Pairs, with TF-IDF indexes over their messages and over their previous turns."""

    pairs: list[Pair]
    _messages: TfIdf = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._messages = TfIdf([pair.message for pair in self.pairs])

    @cached_property
    def _previous(self) -> TfIdf:
        """The previous turns' index, built on first use: only `previous_weight` reads it,
        and loading a bundle need not pay for it."""
        return TfIdf([pair.previous for pair in self.pairs])

    def __len__(self) -> int:
        return len(self.pairs)

    def similarities(
        self, message: str, previous: str = "", previous_weight: float = 0.0
    ) -> np.ndarray:
        """float32 [pairs]: each pair's message's cosine similarity with `message`, plus
        `previous_weight` times its previous turn's with `previous` where the messages share
        a word (a pair is only found by its message)."""
        scores = self._messages.similarities(message)
        if previous_weight and previous:
            matched = scores > 0
            scores[matched] += previous_weight * self._previous.similarities(previous)[matched]
        return scores

    def search(
        self, message: str, count: int, previous: str = "", previous_weight: float = 0.0
    ) -> list[tuple[str, float]]:
        """Up to `count` different replies, best match first by `similarities` (ties in pair
        order), each with its best pair's match; none when no word of `message` is in any
        bank message."""
        scores = self.similarities(message, previous, previous_weight)
        matched = np.flatnonzero(scores > 0)
        order = matched[np.lexsort((matched, -scores[matched]))]
        replies: dict[str, float] = {}
        for row in order:
            replies.setdefault(self.pairs[row].reply, float(scores[row]))
            if len(replies) == count:
                break
        return list(replies.items())

    def to_bytes(self) -> bytes:
        """gzip-compressed JSON lines, byte for byte the same for the same pairs."""
        lines = "".join(json.dumps(_record(pair), ensure_ascii=False) + "\n" for pair in self.pairs)
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
            handle.write(lines.encode("utf-8"))
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path) -> ReplyBank:
        """The bank in `path`; a damaged file raises `BundleError` naming it and the line."""
        try:
            text = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as error:
            raise BundleError(f"{path}: not a gzip-compressed UTF-8 file ({error})") from None
        return cls([_pair(line, f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1)])


def _record(pair: Pair) -> dict[str, str]:
    record = {"message": pair.message, "reply": pair.reply}
    return {**record, "previous": pair.previous} if pair.previous else record


def _pair(line: str, where: str) -> Pair:
    try:
        record = json.loads(line)
        pair = Pair(record["message"], record["reply"], record.get("previous", ""))
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise BundleError(f"{where}: not a {{message, reply}} record ({error})") from None
    if not all(isinstance(text, str) for text in (pair.message, pair.reply, pair.previous)):
        raise BundleError(f"{where}: message, reply and previous must be strings")
    return pair


def build_bank(
    train: Sequence[Example],
    held_out: Sequence[Example] = (),
    max_reply_entropy: float | None = None,
) -> ReplyBank:
    """The bank of `train`'s pairs, as `bank_pairs` chooses them; with `max_reply_entropy`,
    without the pairs whose reply follows so many different messages that its entropy exceeds
    that many bits (`chatbot.generic_filter`): the most generic replies, which a ranking
    model would otherwise offer to many contexts ("Thank you.", "Why not?")."""
    if max_reply_entropy is not None:
        generic = GenericFilter.over(lambda: train, max_reply_entropy)
        train = [example for example in train if generic.keep(example)]
    return ReplyBank(bank_pairs(train, held_out))
