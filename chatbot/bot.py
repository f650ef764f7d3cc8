"""`Chatbot`: the one way from text to a reply, used by `chatbot chat`, `chatbot evaluate`,
the HTTP server and the exporter alike.

A reply's context is built exactly as in training: the newest `data.history` turns, each
normalized with the bundle's normalizer, encoded, joined by the separator, ended by EOS and
truncated from the left to `data.max_source_len`.

A bundle may hold a backward model p(message | reply) in its `backward/` folder (a bundle of
its own, trained on `data.direction: backward` examples); `decoding.mmi_backward` reranks
candidates with it (MMI-bidi, Li et al. 2016). A bundle with a reply bank
(`chatbot.retrieval`) can offer training replies as candidates too
(`decoding.reply_source`); the model ranks them as it ranks its own.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.bundle import NIDF, REPLIES, Bundle
from chatbot.config import DecodingConfig, Runtime, parse_config
from chatbot.decoding.generator import XLA_MAX_ROWS, Generator, JitPolicy, make_knobs
from chatbot.decoding.kernels import is_possible
from chatbot.decoding.search import Decoded, FinishReason, SearchSpec, phrase_ids
from chatbot.decoding.strategies import gnmt_penalty
from chatbot.errors import BundleError, ConfigError, DataError
from chatbot.evaluation.metrics import ngrams, repeats
from chatbot.normalize import Normalizer
from chatbot.stops import cut_offsets, stop_cut
from chatbot.text_offsets import TextOffsets
from chatbot.tokenizer import EOS_ID, join_context, pad_ids

# A ranked candidate: the index of the decoded hypothesis it is, or None for a retrieved reply.
Ranked = tuple[int | None, "Candidate"]

BACKWARD = "backward"


@dataclass(frozen=True)
class TokenLogprob:
    """A reply token's log-probability under the model and the step's likeliest tokens."""

    token: str  # the text the token adds to the reply
    log_prob: float
    top: tuple[tuple[str, float], ...] = ()  # (piece text, log-probability), best first


@dataclass(frozen=True)
class Candidate:
    text: str
    score: float  # what candidates are ranked by (length-normalized, MMI-reranked when set)
    log_prob: float  # log p(reply | context) under the model, EOS included
    tokens: int  # reply tokens, EOS excluded
    ids: tuple[int, ...] = ()  # the reply's token ids, EOS excluded
    offsets: tuple[int, ...] = ()  # per token, where its text ends in `text`
    finish_reason: FinishReason = FinishReason.EOS
    logprobs: tuple[TokenLogprob, ...] = ()  # per token, when `decoding.logprobs` is set
    match: float = 0.0  # a retrieved reply's similarity to the conversation (ReplyBank.search)

    def cut(self, stops: Sequence[str]) -> Candidate:
        """This candidate cut before the first of `stops` in its text (finish reason STOP),
        or itself when none occurs; `score` and `log_prob` stay the whole reply's."""
        at = stop_cut(self.text, stops)
        if at is None:
            return self
        offsets = cut_offsets(self.offsets, at)
        kept = len(offsets)
        return dataclasses.replace(
            self,
            text=self.text[:at],
            tokens=kept,
            ids=self.ids[:kept],
            offsets=offsets,
            finish_reason=FinishReason.STOP,
            logprobs=self.logprobs[:kept],
        )


@dataclass(frozen=True)
class Reply:
    text: str
    candidates: list[Candidate]
    prompt_tokens: int
    reply_tokens: int
    seconds: float
    attention: np.ndarray | None = field(default=None, repr=False)  # [reply, source] weights

    @property
    def finish_reason(self) -> FinishReason:
        return self.candidates[0].finish_reason

    @property
    def offsets(self) -> tuple[int, ...]:
        return self.candidates[0].offsets


def _contains(ids: Sequence[int], phrase: Sequence[int]) -> bool:
    return tuple(phrase) in ngrams(ids, len(phrase))


def length_normalized(log_probs: np.ndarray, lengths: np.ndarray, alpha: float) -> np.ndarray:
    """log-probability / GNMT length penalty, the end mark counted in the length, as beam
    search ranks its hypotheses."""
    return log_probs / gnmt_penalty(lengths + 1, alpha).numpy()


def _phrase_variants(phrase: str) -> set[str]:
    """A banned phrase as written, lower-cased and capitalized (tokens are case-sensitive)."""
    return {phrase, phrase.lower(), phrase[:1].upper() + phrase[1:]}


class Chatbot:
    def __init__(
        self,
        bundle: Bundle,
        *,
        jit_compile: JitPolicy = False,
        xla_max_rows: int = XLA_MAX_ROWS,
        runtime: Runtime = "tf",
        backward: Chatbot | None = None,
    ) -> None:
        if backward is not None and backward.config.data.direction != "backward":
            raise BundleError(
                "a backward model must be trained on data.direction 'backward' examples; "
                f"this one was trained on {backward.config.data.direction!r} ones"
            )
        self.backward = backward
        self.bundle = bundle
        self.config = bundle.config
        self.tokenizer = bundle.tokenizer
        self.normalizer = Normalizer(bundle.config.data.normalizer)
        self.text_offsets = TextOffsets(bundle.tokenizer)
        self.generator = Generator(
            bundle.model,
            jit_compile=jit_compile,
            xla_max_rows=xla_max_rows,
            canonical_ids=bundle.tokenizer.canonical_ids(),
            nidf=bundle.nidf,
            runtime=runtime,
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        jit_compile: JitPolicy = False,
        xla_max_rows: int = XLA_MAX_ROWS,
        runtime: Runtime = "tf",
    ) -> Chatbot:
        """The bundle at `path`, with its backward model when it has a `backward/` folder."""
        backward_path = Path(path) / BACKWARD
        backward = cls(Bundle.load(backward_path)) if backward_path.is_dir() else None
        return cls(
            Bundle.load(path),
            jit_compile=jit_compile,
            xla_max_rows=xla_max_rows,
            runtime=runtime,
            backward=backward,
        )

    def settings(self, **overrides: Any) -> DecodingConfig:
        """The bundle's decoding defaults with `overrides` (None values ignored), validated;
        a bad value raises `ConfigError` naming the field. A `max_length` below the default
        `min_length` lowers it to fit (an explicit `min_length` is kept, and checked), and an
        `n_best` above the default `n_samples` raises it."""
        given = {key: value for key, value in overrides.items() if value is not None}
        merged = {**self.config.decoding.model_dump(), **given}
        if "max_length" in given and "min_length" not in given:  # a shorter limit fits
            merged["min_length"] = min(merged["min_length"], merged["max_length"])
        if "n_best" in given and "n_samples" not in given and merged["n_samples"] is not None:
            merged["n_samples"] = max(merged["n_samples"], merged["n_best"])  # more asked, drawn
        settings = parse_config(DecodingConfig, merged, where="decoding")
        if settings.mmi_backward and self.backward is None:
            raise ConfigError(
                "decoding: mmi_backward needs a backward model, and this bundle has no "
                f"{BACKWARD}/ folder (models/README.md shows how to train one)"
            )
        if settings.specificity and self.bundle.nidf is None:
            raise ConfigError(
                f"decoding: specificity needs the bundle's {NIDF}, which `chatbot train` "
                "writes; this bundle was trained before it existed"
            )
        if settings.reply_source != "generate" and self.bundle.replies is None:
            raise ConfigError(
                f"decoding: reply_source {settings.reply_source!r} needs the bundle's {REPLIES} "
                "reply bank, which `chatbot train` writes and `chatbot bank` adds"
            )
        return settings

    def context_ids(self, message: str, history: Sequence[str] | None = None) -> list[int]:
        """The source ids for `message` after `history` (oldest turn first)."""
        turns = [self.normalizer(turn) for turn in [*(history or ()), message]]
        if not turns[-1]:
            raise DataError("the message is empty (after normalization)")
        turns = [turn for turn in turns if turn][-self.config.data.history :]
        ids = join_context(self.tokenizer.encode(turns))
        return ids[-self.config.data.max_source_len :]

    def plan(self, settings: DecodingConfig) -> tuple[SearchSpec, Any, int]:
        """(search spec, knobs, candidates returned) for `settings`; the exporter builds its
        graph from the same plan."""
        strategy = settings.strategy
        drawn = settings.n_samples or settings.n_best
        width = {"greedy": 1, "beam": settings.beam_width, "sample": drawn}[strategy]
        phrases = [
            ids
            for phrase in settings.banned_phrases
            for variant in _phrase_variants(self.normalizer(phrase))
            for ids in self.tokenizer.encode([variant])
        ]
        spec = SearchSpec(
            strategy=strategy,
            width=width,
            no_repeat_ngram=settings.no_repeat_ngram,
            block_context_ngram=settings.block_context_ngram,
            banned=phrase_ids(phrases),
            penalize_repeats=settings.repetition_penalty > 1.0,
            penalize_counts=bool(settings.presence_penalty or settings.frequency_penalty),
            weight_specificity=bool(settings.specificity),
            logprobs=settings.logprobs,
        )
        seed = settings.seed if settings.seed is not None else int.from_bytes(os.urandom(4), "big")
        knobs = make_knobs(
            max_length=settings.max_length,
            min_length=settings.min_length,
            length_penalty=settings.length_penalty,
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            repetition_penalty=settings.repetition_penalty,
            presence_penalty=settings.presence_penalty,
            frequency_penalty=settings.frequency_penalty,
            specificity=settings.specificity,
            seed=[seed % 2**31, seed // 2**31 % 2**31],
        )
        return spec, knobs, min(settings.n_best, width)

    def compile_for_serving(self, max_batch_size: int) -> int:
        """Compile the default settings' decoding programs for every batch shape a server of
        up to `max_batch_size` requests can meet, so no request waits for a compilation."""
        spec, knobs, _ = self.plan(self.settings())
        max_length = self.config.data.max_source_len
        return self.generator.compile_shapes(spec, knobs, max_batch_size, max_length)

    def reply(self, message: str, history: Sequence[str] | None = None, **decoding: Any) -> Reply:
        return self.reply_batch([message], [history], **decoding)[0]

    def reply_batch(
        self,
        messages: Sequence[str],
        histories: Sequence[Sequence[str] | None] | None = None,
        *,
        return_attention: bool = False,
        settings: DecodingConfig | None = None,
        **decoding: Any,
    ) -> list[Reply]:
        """Replies to several conversations at once, decoded as one batch, with `settings`
        already merged by `settings()` (a server merges once per request), or else the
        defaults with the `decoding` overrides."""
        started = time.perf_counter()
        settings = settings or self.settings(**decoding)
        histories = histories or [None] * len(messages)
        sources = [self.context_ids(m, h) for m, h in zip(messages, histories, strict=True)]
        spec, knobs, n_best = self.plan(settings)
        if return_attention:
            spec = dataclasses.replace(spec, return_attention=True)
        pools: list[list[Ranked]] = [[] for _ in sources]
        if settings.reply_source != "generate":
            previous = [history[-1] if history else "" for history in histories]
            found = self._retrieve(sources, messages, previous, settings, spec)
            for pool, candidates in zip(pools, found, strict=True):
                pool.extend((None, candidate) for candidate in candidates)
        only_retrieved = settings.reply_source == "retrieve"
        rows = [row for row, pool in enumerate(pools) if not (only_retrieved and pool)]
        decoded = None
        if rows:  # every input's candidates, or only those the reply bank had none for
            decoded = self.generator.generate(pad_ids([sources[r] for r in rows]), spec, knobs)
            normalize = settings.reply_source != "generate"
            for k, row in enumerate(rows):
                pools[row][:0] = self._generated(decoded, k, settings, normalize)
        ranked = self._rerank(pools, settings, messages)
        seconds = (time.perf_counter() - started) / len(messages)
        decoded_row = {row: k for k, row in enumerate(rows)}
        replies = []
        for row, source in enumerate(sources):
            candidates = [c.cut(settings.stop) for _, c in ranked[row][:n_best]]
            best = ranked[row][0][0]
            attention = None
            if decoded is not None and decoded.attention is not None and best is not None:
                k = decoded_row[row]
                length = int(decoded.lengths[k, best]) + 1
                attention = decoded.attention[k, best, :length, : len(source)]
            replies.append(
                Reply(
                    text=candidates[0].text,
                    candidates=candidates,
                    prompt_tokens=len(source),
                    reply_tokens=candidates[0].tokens,
                    seconds=seconds,
                    attention=attention,
                )
            )
        return replies

    def _generated(
        self, decoded: Decoded, row: int, settings: DecodingConfig, normalize: bool
    ) -> list[Ranked]:
        """Row `row`'s hypotheses, scored as the search scored them, or, with `normalize`
        (to rank them with retrieved replies), by log-probability / GNMT length penalty."""
        scores = decoded.scores[row]
        if normalize:
            lengths = decoded.lengths[row]
            scores = length_normalized(decoded.log_probs[row], lengths, settings.length_penalty)
        return [
            (index, self._candidate(decoded, row, index, float(score)))
            for index, score in enumerate(scores)
        ]

    def _retrieve(
        self,
        sources: Sequence[Sequence[int]],
        messages: Sequence[str],
        previous: Sequence[str],
        settings: DecodingConfig,
        spec: SearchSpec,
    ) -> list[list[Candidate]]:
        """Per input, the reply bank's `retrieved` replies to messages like it that obey
        the decoding rules (lengths, n-gram blocking, banned phrases), each with its
        teacher-forced log-probability (under the specificity weight, as the loop scores its
        own), log-probability / GNMT length penalty as score and its message's similarity."""
        found = [
            self._retrieved_matches(message, turn, source, spec, settings)
            for message, turn, source in zip(messages, previous, sources, strict=True)
        ]
        pairs = [
            (source, match) for source, row in zip(sources, found, strict=True) for match in row
        ]
        if not pairs:
            return [[] for _ in sources]
        log_probs = self.generator.score(
            pad_ids([source for source, _ in pairs]),
            pad_ids([[*ids, EOS_ID] for _, (ids, _) in pairs]),
            settings.specificity,
        )
        lengths = np.array([len(ids) for _, (ids, _) in pairs], np.int32)
        scores = length_normalized(log_probs, lengths, settings.length_penalty)
        candidates = iter(
            self._retrieved_candidate(ids, float(log_prob), float(score), similarity)
            for (_, (ids, similarity)), log_prob, score in zip(
                pairs, log_probs, scores, strict=True
            )
        )
        return [[next(candidates) for _ in row] for row in found]

    def _retrieved_matches(
        self,
        message: str,
        previous: str,
        source: Sequence[int],
        spec: SearchSpec,
        settings: DecodingConfig,
    ) -> list[tuple[list[int], float]]:
        """The reply bank's `retrieved` replies to messages like `message` (after turns like
        `previous`, by `previous_weight`) that obey the decoding rules, as token ids, each
        with its match."""
        bank = self.bundle.replies
        assert bank is not None  # settings() refuses retrieval without one
        matches = bank.search(
            self.normalizer(message),
            settings.retrieved,
            self.normalizer(previous) if previous else "",
            settings.previous_weight,
        )
        encoded = self.tokenizer.encode([reply for reply, _ in matches])
        return [
            (ids, similarity)
            for ids, (_, similarity) in zip(encoded, matches, strict=True)
            if self._obeys_rules(ids, source, spec, settings)
        ]

    def _obeys_rules(
        self, ids: Sequence[int], source: Sequence[int], spec: SearchSpec, settings: DecodingConfig
    ) -> bool:
        """Whether a retrieved reply's ids are a reply the decoding rules would allow: its
        length, no repeated n-gram, none copied from the context, no banned phrase (n-grams
        compared on canonical ids, as the loop's rules compare them)."""
        if not settings.min_length <= len(ids) <= settings.max_length:
            return False
        canonical = self.generator.canonical
        reply = [int(canonical[i]) for i in ids] if canonical is not None else list(ids)
        if spec.no_repeat_ngram and repeats(reply, spec.no_repeat_ngram):
            return False
        if spec.block_context_ngram:
            n = spec.block_context_ngram
            context = [int(canonical[i]) for i in source] if canonical is not None else source
            if set(ngrams(reply, n)) & set(ngrams(context, n)):
                return False
        return not any(_contains(ids, phrase) for phrase in spec.banned)

    def _retrieved_candidate(
        self, ids: Sequence[int], log_prob: float, score: float, match: float
    ) -> Candidate:
        text = " ".join(self.tokenizer.decode(ids).split())
        return Candidate(
            text=text,
            score=score,
            log_prob=log_prob,
            tokens=len(ids),
            ids=tuple(ids),
            offsets=self.text_offsets(ids, text),
            match=match,
        )

    def _candidate(self, decoded: Decoded, row: int, index: int, score: float) -> Candidate:
        length = int(decoded.lengths[row, index])
        ids = tuple(int(i) for i in decoded.tokens[row, index, :length])
        text = " ".join(self.tokenizer.decode(ids).split())
        offsets = self.text_offsets(ids, text)
        return Candidate(
            text=text,
            score=score,
            log_prob=float(decoded.log_probs[row, index]),
            tokens=length,
            ids=ids,
            offsets=offsets,
            finish_reason=FinishReason(int(decoded.finish_reasons[row, index])),
            logprobs=self._token_logprobs(decoded, row, index, text, offsets),
        )

    def _token_logprobs(
        self, decoded: Decoded, row: int, index: int, text: str, offsets: Sequence[int]
    ) -> tuple[TokenLogprob, ...]:
        """Per reply token (EOS excluded), its text, log-probability and the step's
        likeliest tokens, from the decoding loop's own record (empty when not asked for)."""
        if decoded.token_log_probs is None:
            return ()
        starts = [0, *offsets[:-1]]
        piece = self.text_offsets.piece_text
        return tuple(
            TokenLogprob(
                token=text[start:end],
                log_prob=float(decoded.token_log_probs[row, index, step]),
                top=tuple(
                    (piece(int(i)), float(v))
                    for i, v in zip(
                        decoded.top_ids[row, index, step],
                        decoded.top_log_probs[row, index, step],
                        strict=True,
                    )
                ),
            )
            for step, (start, end) in enumerate(zip(starts, offsets, strict=True))
        )

    def _rerank(
        self, pools: Sequence[Sequence[Ranked]], settings: DecodingConfig, messages: Sequence[str]
    ) -> list[list[Ranked]]:
        """Per input, its possible candidates best first, by `_rerank_scores`."""
        flat = [candidate for pool in pools for _, candidate in pool]
        owners = [message for message, pool in zip(messages, pools, strict=True) for _ in pool]
        scores = iter(self._rerank_scores(flat, owners, settings))
        ranked = []
        for pool in pools:
            scored = [(origin, c, float(next(scores))) for origin, c in pool]
            order = np.argsort([-score for *_, score in scored], kind="stable")
            ranked.append(
                [
                    (scored[i][0], dataclasses.replace(scored[i][1], score=scored[i][2]))
                    for i in order
                    if is_possible(scored[i][1].log_prob)
                ]
            )
        return ranked

    def _rerank_scores(
        self, candidates: Sequence[Candidate], messages: Sequence[str], settings: DecodingConfig
    ) -> np.ndarray:
        """Ranking scores of `candidates`, each answering its `messages` entry. Without MMI,
        their own scores (the search's, or log-probability / GNMT length penalty). With
        `mmi_lambda`, log p(reply | context) - lambda * log p(reply): the reply's likelihood
        given an empty context (an anti-language model, Li et al. 2016) penalizes replies
        that are likely whatever was said. With `mmi_backward`, plus mmi_backward times
        log p(message | reply) per message token under the backward model (MMI-bidi, Li et
        al. 2016): replies from which the message could be guessed are specific to it; the
        forward term is then length-normalized as beam search ranks (GNMT penalty with
        `length_penalty`) for every strategy, so that short samples do not win by length.
        With `match_weight`, plus match_weight times each retrieved reply's match (its bank
        message's similarity to the user's, and its previous turn's by `previous_weight`): a
        reply to a message like the user's answers it."""
        scores = np.array([c.score for c in candidates], np.float32)
        if not candidates:
            return scores
        log_probs = np.array([c.log_prob for c in candidates], np.float32)
        if settings.mmi_lambda:
            replies = pad_ids([[*c.ids, EOS_ID] for c in candidates])
            empty = np.full((len(candidates), 1), EOS_ID, np.int32)
            scores = log_probs - settings.mmi_lambda * self.generator.score(empty, replies)
        if settings.mmi_backward:
            if not settings.mmi_lambda:
                lengths = np.array([c.tokens for c in candidates], np.int32)
                scores = length_normalized(log_probs, lengths, settings.length_penalty)
            backward = self.backward_scores(candidates, messages)
            scores = scores + settings.mmi_backward * backward
        if settings.match_weight:
            scores = scores + settings.match_weight * np.array([c.match for c in candidates])
        return scores

    def backward_scores(
        self, candidates: Sequence[Candidate], messages: Sequence[str]
    ) -> np.ndarray:
        """log p(message | candidate) per message token (end mark included) under the
        backward model, which reads text with its own tokenizer."""
        backward = self.backward
        assert backward is not None  # settings() refuses mmi_backward without one
        texts = [candidate.text for candidate in candidates]
        sources = [backward.context_ids(t) if backward.normalizer(t) else [EOS_ID] for t in texts]
        distinct = list(dict.fromkeys(messages))  # each message answers many candidates
        encoded = backward.tokenizer.encode([backward.normalizer(m) for m in distinct])
        target_of = dict(zip(distinct, encoded, strict=True))
        targets = [[*target_of[message], EOS_ID] for message in messages]
        log_probs = backward.generator.score(pad_ids(sources), pad_ids(targets))
        lengths = np.array([len(target) for target in targets], np.float32)
        return log_probs / lengths
