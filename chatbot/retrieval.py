"""A reply bank: the training split's replies, indexed by the messages they answered.

A small seq2seq model ranks replies better than it writes them: its generated replies are
often ungrammatical or generic, while it can still tell which of several human-written replies
fits a context (hits@1 in `chatbot evaluate`). Retrieve-and-rerank systems use this (ParlAI's
retrieval agents, Weston et al. 2018 "Retrieve and Refine"): the bank offers the replies whose
training messages are most like the user's message, by TF-IDF cosine similarity over words,
and the model ranks them with the generated candidates (`decoding.reply_source`).

The bank leaves out replies that repeat a word 3-gram, and every pair that shares a
distinctive text (`DISTINCTIVE_WORDS` words or more) with the held-out split: corpora such as
DailyDialog hold the same dialogue more than once, and a bank that knew the held-out replies
would make evaluation on them meaningless.

Stored in a bundle as replies.jsonl.gz, one {"message", "reply"} object per line; the index is
rebuilt when the bundle loads (well under a second for DailyDialog's 68,000 pairs).
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chatbot.errors import BundleError
from chatbot.evaluation.metrics import repeats_ngram
from chatbot.examples import Example
from chatbot.generic_filter import GenericFilter

# A held-out text of at least this many words is distinctive enough that a bank pair holding
# it is taken for a copy of the held-out dialogue; shorter ones ("Thank you.") are not.
DISTINCTIVE_WORDS = 4
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: what messages are matched by."""
    return _WORD.findall(text.lower())


def _key(text: str) -> str:
    return " ".join(words(text))


@dataclass(frozen=True)
class Pair:
    message: str  # the context's last turn
    reply: str


def bank_pairs(train: Iterable[Example], held_out: Iterable[Example] = ()) -> list[Pair]:
    """The (message, reply) pairs of `train`, each once, without replies that repeat a word
    3-gram or pairs sharing a distinctive text with `held_out`'s turns and replies."""
    seen = {
        key
        for example in held_out
        for text in (*example.context, example.response)
        if len((key := _key(text)).split()) >= DISTINCTIVE_WORDS
    }
    pairs: dict[Pair, None] = {}
    for example in train:
        pair = Pair(example.context[-1], example.response)
        if not words(pair.reply) or repeats_ngram(pair.reply, 3):
            continue
        if _key(pair.message) in seen or _key(pair.reply) in seen:
            continue
        pairs[pair] = None
    return list(pairs)


@dataclass
class ReplyBank:
    """Pairs and a TF-IDF index over their messages' words (sublinear term frequency, each
    message's vector of unit length)."""

    pairs: list[Pair]
    _vocabulary: dict[str, int] = field(init=False, repr=False)
    _idf: np.ndarray = field(init=False, repr=False)
    _starts: np.ndarray = field(init=False, repr=False)  # word w's postings: starts[w]:[w+1]
    _docs: np.ndarray = field(init=False, repr=False)
    _weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        vocabulary: dict[str, int] = {}
        rows, columns, counts = [], [], []
        for row, pair in enumerate(self.pairs):
            tally: dict[int, int] = {}
            for word in words(pair.message):
                column = vocabulary.setdefault(word, len(vocabulary))
                tally[column] = tally.get(column, 0) + 1
            rows.extend([row] * len(tally))
            columns.extend(tally)
            counts.extend(tally.values())
        row_of, column_of = np.array(rows, np.int64), np.array(columns, np.int64)
        frequency = np.bincount(column_of, minlength=len(vocabulary))
        idf = np.log(max(len(self.pairs), 1) / np.maximum(frequency, 1)).astype(np.float32)
        weights = (1.0 + np.log(np.array(counts, np.float32))) * idf[column_of]
        norms = np.sqrt(np.bincount(row_of, weights * weights, minlength=len(self.pairs)))
        weights = weights / np.maximum(norms[row_of], 1e-12)
        order = np.argsort(column_of, kind="stable")
        self._vocabulary = vocabulary
        self._idf = idf
        self._starts = np.concatenate([[0], np.cumsum(frequency)]).astype(np.int64)
        self._docs = row_of[order].astype(np.int32)
        self._weights = weights[order].astype(np.float32)

    def __len__(self) -> int:
        return len(self.pairs)

    def similarities(self, message: str) -> np.ndarray:
        """float32 [pairs]: each pair's message's cosine similarity with `message`."""
        tally: dict[int, int] = {}
        for word in words(message):
            if (column := self._vocabulary.get(word)) is not None:
                tally[column] = tally.get(column, 0) + 1
        scores = np.zeros(len(self.pairs), np.float32)
        if not tally:
            return scores
        columns = np.array(list(tally))
        query = (1.0 + np.log(np.array(list(tally.values()), np.float32))) * self._idf[columns]
        query /= max(float(np.linalg.norm(query)), 1e-12)
        for column, weight in zip(columns, query, strict=True):
            start, end = self._starts[column], self._starts[column + 1]
            scores[self._docs[start:end]] += weight * self._weights[start:end]
        return scores

    def search(self, message: str, count: int) -> list[str]:
        """Up to `count` different replies, those to the messages most like `message` first
        (ties in pair order); none when no word of `message` is in any bank message."""
        scores = self.similarities(message)
        matched = np.flatnonzero(scores > 0)
        order = matched[np.lexsort((matched, -scores[matched]))]
        replies: dict[str, None] = {}
        for row in order:
            replies.setdefault(self.pairs[row].reply, None)
            if len(replies) == count:
                break
        return list(replies)

    def to_bytes(self) -> bytes:
        """gzip-compressed JSON lines, byte for byte the same for the same pairs."""
        lines = "".join(
            json.dumps({"message": p.message, "reply": p.reply}, ensure_ascii=False) + "\n"
            for p in self.pairs
        )
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


def _pair(line: str, where: str) -> Pair:
    try:
        record = json.loads(line)
        pair = Pair(record["message"], record["reply"])
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise BundleError(f"{where}: not a {{message, reply}} record ({error})") from None
    if not (isinstance(pair.message, str) and isinstance(pair.reply, str)):
        raise BundleError(f"{where}: message and reply must be strings")
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
