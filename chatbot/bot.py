"""`Chatbot`: the one way from text to a reply, used by `chatbot chat`, `chatbot evaluate`,
the HTTP server and the exporter alike.

A reply's context is built exactly as in training: the newest `data.history` turns, each
normalized with the bundle's normalizer, encoded, joined by the separator, ended by EOS and
truncated from the left to `data.max_source_len`.

A bundle may hold a backward model p(message | reply) in its `backward/` folder (a bundle of
its own, trained on `data.direction: backward` examples); `decoding.mmi_backward` reranks
candidates with it (MMI-bidi, Li et al. 2016).
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

from chatbot.bundle import NIDF, Bundle
from chatbot.config import DecodingConfig, Runtime, parse_config
from chatbot.decoding.generator import XLA_MAX_ROWS, Generator, JitPolicy, make_knobs
from chatbot.decoding.kernels import is_possible
from chatbot.decoding.search import Decoded, FinishReason, SearchSpec, phrase_ids
from chatbot.decoding.strategies import gnmt_penalty
from chatbot.errors import BundleError, ConfigError, DataError
from chatbot.normalize import Normalizer
from chatbot.stops import cut_offsets, stop_cut
from chatbot.text_offsets import TextOffsets
from chatbot.tokenizer import EOS_ID, join_context, pad_ids

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
        source_ids = pad_ids(sources)
        spec, knobs, n_best = self.plan(settings)
        if return_attention:
            spec = dataclasses.replace(spec, return_attention=True)
        decoded = self.generator.generate(source_ids, spec, knobs)
        ranked = self._rerank(decoded, settings, messages)
        seconds = (time.perf_counter() - started) / len(messages)
        replies = []
        for row, source in enumerate(sources):
            candidates = [c.cut(settings.stop) for _, c in ranked[row][:n_best]]
            best = ranked[row][0][0]
            attention = None
            if decoded.attention is not None:
                length = int(decoded.lengths[row, best]) + 1
                attention = decoded.attention[row, best, :length, : len(source)]
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
        self, decoded: Decoded, settings: DecodingConfig, messages: Sequence[str]
    ) -> list[list[tuple[int, Candidate]]]:
        """Per input, (hypothesis index, candidate) best first, by `_rerank_scores`."""
        batch, width = decoded.log_probs.shape
        candidates = [
            [self._candidate(decoded, row, index, 0.0) for index in range(width)]
            for row in range(batch)
        ]
        scores = self._rerank_scores(decoded, settings, messages, candidates)
        ranked = []
        for row in range(batch):
            order = np.argsort(-scores[row], kind="stable")
            ranked.append(
                [
                    (int(i), dataclasses.replace(candidates[row][i], score=float(scores[row, i])))
                    for i in order
                    if is_possible(decoded.log_probs[row, i])
                ]
            )
        return ranked

    def _rerank_scores(
        self,
        decoded: Decoded,
        settings: DecodingConfig,
        messages: Sequence[str],
        candidates: Sequence[Sequence[Candidate]],
    ) -> np.ndarray:
        """[inputs, candidates] ranking scores. Without MMI, the search's own scores. With
        `mmi_lambda`, log p(reply | context) - lambda * log p(reply): the reply's likelihood
        given an empty context (an anti-language model, Li et al. 2016) penalizes replies
        that are likely whatever was said. With `mmi_backward`, plus mmi_backward times
        log p(message | reply) per message token under the backward model (MMI-bidi, Li et
        al. 2016): replies from which the message could be guessed are specific to it; the
        forward term is then length-normalized as beam search ranks (GNMT penalty with
        `length_penalty`) for every strategy, so that short samples do not win by length."""
        batch, width = decoded.log_probs.shape
        scores = decoded.scores
        if settings.mmi_lambda:
            flat = decoded.tokens.reshape(batch * width, -1)
            empty = np.full((batch * width, 1), EOS_ID, np.int32)
            prior = self.generator.score(empty, flat).reshape(batch, width)
            scores = decoded.log_probs - settings.mmi_lambda * prior
        if settings.mmi_backward:
            if not settings.mmi_lambda:  # the length counts the end mark, as in the search
                penalty = gnmt_penalty(decoded.lengths + 1, settings.length_penalty).numpy()
                scores = decoded.log_probs / penalty
            backward = self._backward_scores(candidates, messages)
            scores = scores + settings.mmi_backward * backward
        return scores

    def _backward_scores(
        self, candidates: Sequence[Sequence[Candidate]], messages: Sequence[str]
    ) -> np.ndarray:
        """[inputs, candidates] log p(message | candidate) per message token (end mark
        included) under the backward model, which reads text with its own tokenizer."""
        backward = self.backward
        assert backward is not None  # settings() refuses mmi_backward without one
        texts = [candidate.text for row in candidates for candidate in row]
        sources = [backward.context_ids(t) if backward.normalizer(t) else [EOS_ID] for t in texts]
        encoded = backward.tokenizer.encode([backward.normalizer(m) for m in messages])
        targets = [
            [*ids, EOS_ID] for ids, row in zip(encoded, candidates, strict=True) for _ in row
        ]
        log_probs = backward.generator.score(pad_ids(sources), pad_ids(targets))
        lengths = np.array([len(target) for target in targets], np.float32)
        return (log_probs / lengths).reshape(len(candidates), -1)
