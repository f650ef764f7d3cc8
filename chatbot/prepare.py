"""`chatbot prepare`: corpus files in, a prepared data directory out.

corpus -> dialogues -> normalized -> split by dialogue -> examples -> tokenizer (train split only)
-> statistics, all written atomically to one directory that `PreparedData.load` reads back.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from chatbot import __version__
from chatbot.atomic import atomic_directory
from chatbot.config import DataConfig, parse_config
from chatbot.corpora import Dialogue, ImportResult, Skip, load_corpus
from chatbot.errors import ConfigError, DataError
from chatbot.examples import (
    Example,
    dialogue_examples,
    normalize_dialogue,
    read_examples,
    split_dialogues,
    write_examples,
)
from chatbot.generic_filter import drop_generic
from chatbot.normalize import Normalizer
from chatbot.tokenizer import SPECIAL_IDS, TOKENIZER_FILE, Tokenizer

Split = Literal["train", "valid"]
SPLITS: tuple[Split, ...] = ("train", "valid")
MANIFEST = "manifest.json"
STATS = "stats.json"
SKIPPED = "skipped.jsonl"
TOKENIZER = TOKENIZER_FILE
FORMAT_VERSION = 1
PERCENTILES = (50, 90, 95, 99)
SKIPS_IN_STATS = 20


def _length_summary(lengths: Sequence[int], limit: int) -> dict[str, Any]:
    """Percentiles of token lengths and the share that the length limit will cut."""
    if not lengths:
        return {"count": 0}
    array = np.asarray(lengths)
    summary: dict[str, Any] = {f"p{p}": int(np.percentile(array, p)) for p in PERCENTILES}
    summary.update(
        mean=round(float(array.mean()), 2),
        max=int(array.max()),
        limit=limit,
        truncated=round(float((array > limit).mean()), 4),
    )
    return summary


def _skip_summary(skipped: Sequence[Skip]) -> dict[str, Any]:
    return {
        "total": len(skipped),
        "by_kind": dict(Counter(skip.kind for skip in skipped).most_common()),
        "by_file": dict(Counter(skip.file for skip in skipped).most_common()),
        "first": [skip.to_dict() for skip in skipped[:SKIPS_IN_STATS]],
    }


def _split_stats(
    dialogues: Sequence[Dialogue],
    examples: Sequence[Example],
    tokenizer: Tokenizer,
    config: DataConfig,
) -> dict[str, Any]:
    texts = sorted({t for ex in examples for t in ex.context} | {ex.response for ex in examples})
    length_of = dict(zip(texts, map(len, tokenizer.encode(texts)), strict=True))
    # join_context adds one SEP between turns and one EOS at the end: one extra token a turn.
    sources = [sum(length_of[t] + 1 for t in ex.context) for ex in examples]
    targets = [length_of[ex.response] + 1 for ex in examples]
    return {
        "dialogues": len(dialogues),
        "turns": sum(len(d.turns) for d in dialogues),
        "examples": len(examples),
        "source_tokens": _length_summary(sources, config.max_source_len),
        "target_tokens": _length_summary(targets, config.max_target_len),
    }


def _normalize_all(result: ImportResult, normalizer: Normalizer) -> ImportResult:
    """Normalized dialogues; those left with fewer than two turns join the skipped records."""
    normalized = ImportResult(skipped=list(result.skipped))
    for dialogue in result.dialogues:
        outcome = normalize_dialogue(dialogue, normalizer)
        if isinstance(outcome, Skip):
            normalized.skipped.append(outcome)
        else:
            normalized.dialogues.append(outcome)
    return normalized


def _read_inputs(corpus: str, paths: Sequence[str | Path], normalizer: Normalizer) -> ImportResult:
    result = _normalize_all(load_corpus(corpus, paths), normalizer)
    if not result.dialogues:
        counts = ", ".join(
            f"{kind} {n}" for kind, n in Counter(s.kind for s in result.skipped).items()
        )
        named = ", ".join(str(p) for p in paths)
        raise DataError(
            f"no usable dialogues in {named} (read as {corpus}); "
            f"{len(result.skipped)} record(s) skipped{': ' + counts if counts else ''}"
        )
    return result


def check_symbols(symbols: Sequence[str], normalizer: Normalizer) -> None:
    """Every user-defined symbol as the normalizer leaves text, or it could never be matched."""
    for symbol in symbols:
        if (cleaned := normalizer(symbol)) != symbol:
            raise ConfigError(
                f"data.tokenizer.user_defined_symbols: {symbol!r} never occurs in normalized "
                f"text, which has {cleaned!r} instead; list that, or turn off the data.normalizer "
                "rule that rewrites it"
            )


def prepare(
    corpus: str,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    config: DataConfig,
    *,
    valid_inputs: Sequence[str | Path] = (),
    tokenizer_from: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build the prepared directory `out_dir` and return its statistics (also in stats.json).

    With `valid_inputs`, those files are the validation split and `valid_fraction` is unused;
    otherwise `valid_fraction` of the dialogues, drawn with `seed`, are held out. With
    `tokenizer_from` (a tokenizer.model file), that tokenizer is used instead of training one,
    so a bundle trained with it can be fine-tuned on this data (`chatbot train --init-from`).
    """
    started = time.perf_counter()
    normalizer = Normalizer(config.normalizer)
    check_symbols(config.tokenizer.user_defined_symbols, normalizer)
    train_result = _read_inputs(corpus, inputs, normalizer)
    skipped = list(train_result.skipped)
    if valid_inputs:
        valid_result = _read_inputs(corpus, valid_inputs, normalizer)
        skipped += valid_result.skipped
        splits = {"train": train_result.dialogues, "valid": valid_result.dialogues}
    else:
        train, valid = split_dialogues(train_result.dialogues, config.valid_fraction, config.seed)
        splits = {"train": train, "valid": valid}
    examples = {name: _examples(dialogues, config) for name, dialogues in splits.items()}
    generic = None
    if config.max_reply_entropy is not None:
        examples["train"], generic = drop_generic(examples["train"], config.max_reply_entropy)
    tokenizer = (
        Tokenizer.load(tokenizer_from)
        if tokenizer_from
        else Tokenizer.train(
            (turn.text for d in splits["train"] for turn in d.turns),
            config.tokenizer,
            seed=config.seed,
        )
    )
    stats: dict[str, Any] = {
        "corpus": corpus,
        "splits": {
            name: _split_stats(splits[name], examples[name], tokenizer, config) for name in SPLITS
        },
        "skipped": _skip_summary(skipped),
        "tokenizer": {
            "model_type": config.tokenizer.model_type,
            "vocab_size": tokenizer.vocab_size,  # at most the requested size (hard limit off)
            "requested_vocab_size": config.tokenizer.vocab_size,
            "special_ids": SPECIAL_IDS,
            **({"from": str(tokenizer_from)} if tokenizer_from else {}),
        },
        **({"generic_filter": generic} if generic else {}),
        "seconds": round(time.perf_counter() - started, 2),
    }
    manifest = _manifest(corpus, inputs, valid_inputs, config)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        for name in SPLITS:
            write_examples(tmp / f"{name}.jsonl", examples[name])
        tokenizer.save(tmp / TOKENIZER)
        (tmp / SKIPPED).write_text(
            "".join(json.dumps(s.to_dict(), ensure_ascii=False) + "\n" for s in skipped),
            encoding="utf-8",
        )
        (tmp / STATS).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return stats


def _examples(dialogues: Sequence[Dialogue], config: DataConfig) -> list[Example]:
    return [ex for d in dialogues for ex in dialogue_examples(d, config.history, config.direction)]


def _manifest(
    corpus: str,
    inputs: Sequence[str | Path],
    valid_inputs: Sequence[str | Path],
    config: DataConfig,
) -> dict[str, Any]:
    """What `PreparedData.load` reads back: the format, the inputs and the data config."""
    return {
        "format_version": FORMAT_VERSION,
        "chatbot_version": __version__,
        "corpus": corpus,
        "inputs": [str(p) for p in inputs],
        "valid_inputs": [str(p) for p in valid_inputs],
        "config": config.model_dump(mode="json"),
        "special_ids": SPECIAL_IDS,
    }


@dataclass(frozen=True)
class PreparedData:
    """A prepared directory read back: its config, tokenizer and examples."""

    path: Path
    config: DataConfig
    tokenizer: Tokenizer
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> PreparedData:
        path = Path(path)
        manifest_path = path / MANIFEST
        if not path.is_dir():
            raise DataError(f"{path}: no such prepared data directory (run `chatbot prepare`)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(
                f"{manifest_path}: missing; is {path} a `chatbot prepare` output?"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{manifest_path}: unreadable: {error}") from None
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{manifest_path}: format_version {manifest.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; prepare the data again with this version"
                if isinstance(manifest, dict)
                else f"{manifest_path}: expected a JSON object"
            )
        config = parse_config(DataConfig, manifest.get("config"), where=f"{manifest_path} config")
        return cls(path, config, Tokenizer.load(path / TOKENIZER), manifest)

    def examples(self, split: Split) -> list[Example]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
        return read_examples(self.path / f"{split}.jsonl")

    def stats(self) -> dict[str, Any]:
        return json.loads((self.path / STATS).read_text(encoding="utf-8"))
