"""`chatbot evaluate`: a bundle against held-out examples.

Two views of quality: how likely the model finds the reference responses (perplexity under
teacher forcing, the number training reports), and what it actually says when it decodes with
given settings (reply metrics, BLEU against the references, a few sample conversations).
Every context goes through the `Chatbot` facade, so it is built exactly as in training.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.bot import Chatbot, Reply
from chatbot.errors import ConfigError, DataError
from chatbot.evaluation.metrics import reply_metrics, word_count
from chatbot.evaluation.ranking import Distractors, choose_distractors, rank_replies
from chatbot.examples import Example, read_examples
from chatbot.prepare import PreparedData, Split
from chatbot.tokenizer import EOS_ID, pad_ids


def load_examples(path: str | Path, split: Split = "valid") -> list[Example]:
    """The `split` examples of a `chatbot prepare` directory, or every example of a `.jsonl`
    file in the same format (`split` is then unused)."""
    path = Path(path)
    if path.is_dir():
        examples = PreparedData.load(path).examples(split)
    elif path.is_file():
        examples = read_examples(path)
    else:
        raise DataError(f"{path}: no such prepared data directory or examples file")
    if not examples:
        raise DataError(f"{path}: holds no examples to evaluate")
    return examples


def evaluate(
    bot: Chatbot,
    examples: Sequence[Example],
    *,
    batch_size: int = 64,
    limit: int | None = None,
    samples: int = 5,
    hits_k: int = 20,
    distractor_seed: int = 0,
    distractors: Distractors = "random",
    **decoding: Any,
) -> dict[str, Any]:
    """Likelihood metrics of the references and metrics of the generated replies, as one
    JSON-ready dict; `decoding` overrides the bundle's decoding settings.

    The message of an example is its last context turn and the history the turns before it.
    Perplexity is exp(total negative log-likelihood / total target tokens), each reference
    being the normalized response plus EOS, whole (training's val_perplexity cuts it at
    max_target_len); `word_perplexity` spreads the same total over `words` (see
    `metrics.word_count`), a figure that does not depend on the tokenizer. With `hits_k`
    (0: off), the hits@1/K ranking of `chatbot.evaluation.ranking` over the same examples,
    against `distractors`: random replies from other dialogues, or the replies to the most
    similar messages.
    BLEU compares the replies with the same normalized references. `replies_per_second`
    counts generation time only, `seconds` the whole evaluation, and `samples` holds the
    first `samples` conversations.
    """
    _check_options(batch_size, limit, samples, hits_k)
    settings = bot.settings(**decoding)
    examples = list(examples[:limit])
    if not examples:
        raise DataError("no examples to evaluate")
    started = time.perf_counter()
    messages = [example.context[-1] for example in examples]
    histories = [example.context[:-1] for example in examples]
    sources = [bot.context_ids(m, h) for m, h in zip(messages, histories, strict=True)]
    references = [bot.normalizer(example.response) for example in examples]
    targets = [[*ids, EOS_ID] for ids in bot.tokenizer.encode(references)]
    true_scores = _score(bot, sources, targets)
    nll = -float(true_scores.sum())
    target_tokens = sum(map(len, targets))
    words = sum(map(word_count, references))
    ranking = {}
    if hits_k:
        dialogues = [example.source for example in examples]
        ranking = _ranking(
            bot,
            dialogues,
            messages,
            references,
            sources,
            targets,
            true_scores,
            k=hits_k,
            seed=distractor_seed,
            distractors=distractors,
        )
    replies, generating = generate_replies(bot, messages, histories, batch_size, decoding)
    return {
        "examples": len(examples),
        "perplexity": math.exp(nll / target_tokens),
        "nll_per_token": nll / target_tokens,
        "word_perplexity": math.exp(nll / words),
        "words": words,
        **ranking,
        **reply_metrics(replies, references),
        "seconds": time.perf_counter() - started,
        "replies_per_second": len(examples) / generating,
        "decoding": settings.model_dump(mode="json"),
        "samples": _samples(examples[:samples], references, replies),
    }


def _samples(
    examples: Sequence[Example], references: Sequence[str], replies: Sequence[str]
) -> list[dict[str, Any]]:
    """The first conversations as shown in the report: context, reference and reply."""
    return [
        {"context": list(example.context), "reference": reference, "reply": reply}
        for example, reference, reply in zip(examples, references, replies, strict=False)
    ]


def replies_in_batches(
    bot: Chatbot,
    messages: Sequence[str],
    histories: Sequence[Sequence[str]],
    batch_size: int,
    **decoding: Any,
) -> list[Reply]:
    """The bot's replies to every conversation, decoded `batch_size` at a time, with
    `decoding` passed to `Chatbot.reply_batch` (overrides, or `settings=`)."""
    return [
        reply
        for start in range(0, len(messages), batch_size)
        for reply in bot.reply_batch(
            messages[start : start + batch_size], histories[start : start + batch_size], **decoding
        )
    ]


def generate_replies(
    bot: Chatbot,
    messages: Sequence[str],
    histories: Sequence[Sequence[str]],
    batch_size: int,
    decoding: dict[str, Any],
) -> tuple[list[str], float]:
    """The replies to every conversation, decoded `batch_size` at a time, and the seconds."""
    started = time.perf_counter()
    replies = replies_in_batches(bot, messages, histories, batch_size, **decoding)
    return [reply.text for reply in replies], time.perf_counter() - started


def _check_options(batch_size: int, limit: int | None, samples: int, hits_k: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    if samples < 0:
        raise ConfigError(f"samples must be at least 0, got {samples}")
    if hits_k == 1 or hits_k < 0:
        raise ConfigError(f"hits_k must be 0 (off) or at least 2, got {hits_k}")


def _ranking(
    bot: Chatbot,
    dialogues: Sequence[str],
    messages: Sequence[str],
    references: Sequence[str],
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    true_scores: np.ndarray,
    *,
    k: int,
    seed: int,
    distractors: Distractors,
) -> dict[str, Any]:
    """Hits@1/K of the references (`chatbot.evaluation.ranking`) among `distractors` of the
    kind asked, or why it was skipped."""
    try:
        drawn = choose_distractors(distractors, dialogues, messages, references, k, seed)
    except DataError as error:  # too few dialogues: the other metrics still stand
        return {"hits_k": k, "hits_distractors": distractors, "hits_skipped": str(error)}
    ranking = rank_replies(
        lambda s, t: _score(bot, s, t), sources, targets, true_scores, drawn, [EOS_ID]
    )
    return {**ranking.as_dict(), "hits_distractors": distractors}


def _score(
    bot: Chatbot,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    tokens_per_batch: int = 16_384,
    max_rows: int = 512,
) -> np.ndarray:
    """log p(target | source) per pair, teacher-forced. Pairs go shortest target first, in
    batches of at most `max_rows` pairs and `tokens_per_batch` padded target tokens: the
    scorer holds [rows, target length, vocabulary] log-probabilities, and one long reference
    among a thousand short ones would otherwise pad them all."""
    order = np.argsort([len(target) for target in targets], kind="stable")
    scores = np.empty(len(targets), np.float64)
    start = 0
    while start < len(order):
        stop = start + 1  # targets grow along `order`, so the newest one sets the padding
        while (
            stop < len(order)
            and stop - start < max_rows
            and (stop + 1 - start) * len(targets[order[stop]]) <= tokens_per_batch
        ):
            stop += 1
        chosen = order[start:stop]
        scores[chosen] = bot.generator.score(
            pad_ids([sources[i] for i in chosen]), pad_ids([targets[i] for i in chosen])
        )
        start = stop
    return scores


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def format_report(results: dict[str, Any]) -> str:
    """`evaluate`'s results for a person: an aligned metric/value table, the decoding settings
    in one paragraph, and the sample conversations below."""
    rows = {key: value for key, value in results.items() if key not in ("decoding", "samples")}
    width = max(map(len, rows))
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 10}"]
    lines += [f"{key:<{width}}  {_value(value)}" for key, value in rows.items()]
    if decoding := results.get("decoding"):
        settings = ", ".join(f"{key}={value}" for key, value in decoding.items())
        lines += ["", textwrap.fill(f"decoding: {settings}", 100, subsequent_indent=" " * 10)]
    for number, sample in enumerate(results.get("samples", ()), start=1):
        labels = ["context:", *[""] * (len(sample["context"]) - 1), "reference:", "reply:"]
        texts = [*sample["context"], sample["reference"], sample["reply"]]
        lines += ["", f"[{number}]"]
        lines += [f"  {label:<10} {text}" for label, text in zip(labels, texts, strict=True)]
    return "\n".join(lines)
