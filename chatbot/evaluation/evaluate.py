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

from chatbot.bot import Chatbot
from chatbot.errors import ConfigError, DataError
from chatbot.evaluation.metrics import reply_metrics
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
    **decoding: Any,
) -> dict[str, Any]:
    """Perplexity of the references and metrics of the generated replies, as one JSON-ready
    dict; `decoding` overrides the bundle's decoding settings.

    The message of an example is its last context turn and the history the turns before it.
    Perplexity is exp(total negative log-likelihood / total target tokens), each reference
    being the normalized response plus EOS, whole (training's val_perplexity cuts it at
    max_target_len); BLEU compares the replies with the same normalized references.
    `replies_per_second` counts generation time only, `seconds` the whole evaluation, and
    `samples` holds the first `samples` conversations.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    if samples < 0:
        raise ConfigError(f"samples must be at least 0, got {samples}")
    settings = bot.settings(**decoding)
    examples = list(examples[:limit])
    if not examples:
        raise DataError("no examples to evaluate")
    started = time.perf_counter()
    log_likelihood, target_tokens, generating = 0.0, 0, 0.0
    references: list[str] = []
    replies: list[str] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        messages = [example.context[-1] for example in batch]
        histories = [example.context[:-1] for example in batch]
        sources = [bot.context_ids(m, h) for m, h in zip(messages, histories, strict=True)]
        responses = [bot.normalizer(example.response) for example in batch]
        references += responses
        targets = [[*ids, EOS_ID] for ids in bot.tokenizer.encode(responses)]
        log_likelihood += float(bot.generator.score(pad_ids(sources), pad_ids(targets)).sum())
        target_tokens += sum(map(len, targets))
        generation_started = time.perf_counter()
        replies += [reply.text for reply in bot.reply_batch(messages, histories, **decoding)]
        generating += time.perf_counter() - generation_started
    nll_per_token = -log_likelihood / target_tokens
    return {
        "examples": len(examples),
        "perplexity": math.exp(nll_per_token),
        "nll_per_token": nll_per_token,
        **reply_metrics(replies, references),
        "seconds": time.perf_counter() - started,
        "replies_per_second": len(examples) / generating,
        "decoding": settings.model_dump(mode="json"),
        "samples": [
            {"context": list(example.context), "reference": reference, "reply": reply}
            for example, reference, reply in zip(
                examples[:samples], references, replies, strict=False
            )
        ],
    }


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
