"""`chatbot prepare`: corpus files in, a prepared data directory out, in memory that does not
grow with the corpus.

Two streaming passes, all written atomically to one directory that `PreparedData.load` reads:
1. the corpus is read a record at a time (`chatbot.corpora.stream_corpus`); each dialogue is
   normalized, put in the train or valid split by a seeded hash of its turns
   (`chatbot.examples.in_valid_split`) and spooled to a temporary file of its split; skipped
   records go to skipped.jsonl as they come;
2. the tokenizer is trained on a bounded, seeded sample of the spooled training turns
   (SentencePiece's `input_sentence_size` with shuffling: `data.tokenizer.max_sentences`)
   unless one is given; with `data.max_reply_entropy`, two counting passes over the training
   examples find the generic replies (`chatbot.generic_filter`); then each split's examples
   are encoded a block at a time and written as TFRecord shards of token ids
   (`chatbot.shards`, what training reads) and as JSONL (for people and `chatbot evaluate`).

A corpus too big for one process is prepared by several: each takes every K-th record
(`Part`) with a tokenizer trained once beforehand (`prepare_tokenizer`), writes
`DIR/part-I-of-K/`, and `merge_parts` then writes the manifest and statistics over them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chatbot import __version__
from chatbot.atomic import atomic_directory, atomic_write_text
from chatbot.config import DataConfig, parse_config
from chatbot.corpora import Dialogue, Skip, stream_corpus
from chatbot.errors import ConfigError, DataError
from chatbot.examples import (
    Example,
    dialogue_examples,
    dialogue_from_json,
    dialogue_to_json,
    encode_examples,
    in_valid_split,
    normalize_dialogue,
    read_examples,
)
from chatbot.generic_filter import GenericFilter
from chatbot.normalize import Normalizer
from chatbot.shards import Shard, ShardWriter, percentiles, total_lengths
from chatbot.tokenizer import SPECIAL_IDS, TOKENIZER_FILE, Tokenizer

Split = Literal["train", "valid"]
SPLITS: tuple[Split, ...] = ("train", "valid")
MANIFEST = "manifest.json"
STATS = "stats.json"
SKIPPED = "skipped.jsonl"
PART_SUMMARY = "part.json"
TOKENIZER = TOKENIZER_FILE
FORMAT_VERSION = 2  # 1: examples as JSONL only, tokenized by `chatbot train`
DEFAULT_SHARDS = 8  # TFRecord files a split is written to (per part)
ENCODE_BLOCK = 4096  # examples encoded by one call to SentencePiece
PERCENTILES = (50, 90, 95, 99)
SKIPS_IN_STATS = 20
LENGTHS_FROM = (
    "exact: counted in a histogram of (source, target) token lengths, in memory bounded by "
    "the distinct lengths, not the number of examples"
)


@dataclass(frozen=True)
class Part:
    """One of `count` processes preparing a corpus together: it takes the records whose
    ordinal (dialogues and skipped records counted apart, over all inputs in order) is
    `index` modulo `count`, so the parts are disjoint and together cover the corpus."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"--shard-index {self.index} must be at least 0 and below --num-shards {self.count}"
            )

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}-of-{self.count:05d}"

    def takes(self, ordinal: int) -> bool:
        return ordinal % self.count == self.index


WHOLE = Part(0, 1)


class SkipLog:
    """Skipped records written to skipped.jsonl as they come, counted by kind and by file."""

    def __init__(self, path: Path) -> None:
        self._handle = path.open("w", encoding="utf-8")
        self.by_kind: Counter[str] = Counter()
        self.by_file: Counter[str] = Counter()
        self.first: list[dict[str, object]] = []

    def add(self, skip: Skip) -> None:
        self._handle.write(json.dumps(skip.to_dict(), ensure_ascii=False) + "\n")
        self.by_kind[skip.kind] += 1
        self.by_file[skip.file] += 1
        if len(self.first) < SKIPS_IN_STATS:
            self.first.append(skip.to_dict())

    def close(self) -> None:
        self._handle.close()

    def summary(self) -> dict[str, Any]:
        return _skip_summary(self.by_kind, self.by_file, self.first)


def _skip_summary(
    by_kind: Counter[str], by_file: Counter[str], first: list[dict[str, object]]
) -> dict[str, Any]:
    return {
        "total": sum(by_kind.values()),
        "by_kind": dict(by_kind.most_common()),
        "by_file": dict(by_file.most_common()),
        "first": first[:SKIPS_IN_STATS],
    }


@dataclass
class _Spool:
    """What the first pass read: each split's normalized dialogues in a file, and counts."""

    files: dict[Split, Path]
    dialogues: Counter[str]
    turns: Counter[str]
    skipped: dict[str, Any]


def check_symbols(symbols: Sequence[str], normalizer: Normalizer) -> None:
    """Every user-defined symbol as the normalizer leaves text, or it could never be matched."""
    for symbol in symbols:
        if (cleaned := normalizer(symbol)) != symbol:
            raise ConfigError(
                f"data.tokenizer.user_defined_symbols: {symbol!r} never occurs in normalized "
                f"text, which has {cleaned!r} instead; list that, or turn off the data.normalizer "
                "rule that rewrites it"
            )


def _spool(
    corpus: str,
    inputs: Sequence[str | Path],
    valid_inputs: Sequence[str | Path],
    config: DataConfig,
    part: Part,
    directory: Path,
) -> _Spool:
    """The first pass: read, normalize and split this part's dialogues into spool files in
    `directory`, and log the skipped records to its skipped.jsonl."""
    normalizer = Normalizer(config.normalizer)
    check_symbols(config.tokenizer.user_defined_symbols, normalizer)
    files: dict[Split, Path] = {split: directory / f".{split}.dialogues" for split in SPLITS}
    dialogues: Counter[str] = Counter()
    turns: Counter[str] = Counter()
    log = SkipLog(directory / SKIPPED)
    with contextlib.ExitStack() as stack:
        stack.callback(log.close)
        spools = {s: stack.enter_context(p.open("w", encoding="utf-8")) for s, p in files.items()}
        inputs_and_splits: list[tuple[Sequence[str | Path], Split | None]] = [
            (inputs, "train" if valid_inputs else None)
        ]
        if valid_inputs:
            inputs_and_splits.append((valid_inputs, "valid"))
        for paths, fixed in inputs_and_splits:
            usable, ordinals = 0, Counter[str]()
            for block in stream_corpus(corpus, paths):
                for skip in block.skipped:
                    ordinals["skip"] += 1
                    if part.takes(ordinals["skip"] - 1):
                        log.add(skip)
                for dialogue in block.dialogues:
                    ordinals["dialogue"] += 1
                    if not part.takes(ordinals["dialogue"] - 1):
                        continue
                    outcome = normalize_dialogue(dialogue, normalizer)
                    if isinstance(outcome, Skip):
                        log.add(outcome)
                        continue
                    split = fixed or _split_of(outcome, config)
                    spools[split].write(dialogue_to_json(outcome) + "\n")
                    dialogues[split] += 1
                    turns[split] += len(outcome.turns)
                    usable += 1
            if not usable and part == WHOLE:
                raise _nothing_usable(corpus, paths, log.by_kind)
    return _Spool(files, dialogues, turns, log.summary())


def _split_of(dialogue: Dialogue, config: DataConfig) -> Split:
    return "valid" if in_valid_split(dialogue, config.valid_fraction, config.seed) else "train"


def _nothing_usable(corpus: str, paths: Sequence[str | Path], by_kind: Counter[str]) -> DataError:
    counts = ", ".join(f"{kind} {n}" for kind, n in by_kind.items())
    named = ", ".join(str(p) for p in paths)
    return DataError(
        f"no usable dialogues in {named} (read as {corpus}); "
        f"{sum(by_kind.values())} record(s) skipped{': ' + counts if counts else ''}"
    )


def _spooled(path: Path) -> Iterator[Dialogue]:
    with path.open(encoding="utf-8") as handle:
        yield from map(dialogue_from_json, handle)


def _examples(path: Path, config: DataConfig) -> Iterator[Example]:
    for dialogue in _spooled(path):
        yield from dialogue_examples(dialogue, config.history, config.direction)


def _train_tokenizer(spool: _Spool, config: DataConfig) -> Tokenizer:
    """A tokenizer trained on a seeded sample of at most `data.tokenizer.max_sentences` of the
    spooled training turns: SentencePiece keeps a reservoir of them as they stream past."""
    texts = (turn.text for d in _spooled(spool.files["train"]) for turn in d.turns)
    return Tokenizer.train(texts, config.tokenizer, seed=config.seed)


def _generic_filter(spool: _Spool, config: DataConfig) -> GenericFilter | None:
    """With `data.max_reply_entropy`, the filter of generic replies, from two counting passes
    over the training examples."""
    if config.max_reply_entropy is None:
        return None
    return GenericFilter.over(
        lambda: _examples(spool.files["train"], config), config.max_reply_entropy
    )


def _write_split(
    split: Split,
    spool: _Spool,
    tokenizer: Tokenizer,
    config: DataConfig,
    directory: Path,
    shards: int,
    generic: GenericFilter | None,
) -> list[Shard]:
    """The second pass over one split: its examples (generic replies dropped from the training
    split), encoded a block at a time, as `{split}.jsonl` and `shards` TFRecord files."""
    writer = ShardWriter(directory, split, shards)
    examples = _examples(spool.files[split], config)
    if generic is not None and split == "train":
        examples = filter(generic.keep, examples)
    with (directory / f"{split}.jsonl").open("w", encoding="utf-8") as jsonl:
        while block := list(itertools.islice(examples, ENCODE_BLOCK)):
            encoded = encode_examples(block, tokenizer)
            for example, source, target in zip(
                block, encoded.sources, encoded.targets, strict=True
            ):
                jsonl.write(example.to_json() + "\n")
                writer.write(source.tolist(), target.tolist())
    return writer.close()


def _prepare_into(
    directory: Path,
    corpus: str,
    inputs: Sequence[str | Path],
    valid_inputs: Sequence[str | Path],
    config: DataConfig,
    tokenizer_from: str | Path | None,
    shards: int,
    part: Part,
) -> dict[str, Any]:
    """Write one part's examples, tokenizer and skipped records into `directory`; return its
    summary (what `_stats` and `_manifest` are made of)."""
    started = time.perf_counter()
    spool = _spool(corpus, inputs, valid_inputs, config, part, directory)
    tokenizer = (
        Tokenizer.load(tokenizer_from) if tokenizer_from else _train_tokenizer(spool, config)
    )
    tokenizer.save(directory / TOKENIZER)
    generic = _generic_filter(spool, config)
    splits = {}
    for split in SPLITS:
        written = _write_split(split, spool, tokenizer, config, directory, shards, generic)
        splits[split] = {
            "dialogues": spool.dialogues[split],
            "turns": spool.turns[split],
            "jsonl": [f"{split}.jsonl"],
            "shards": [shard.to_json(directory) for shard in written],
        }
        spool.files[split].unlink()
    return {
        "corpus": corpus,
        "inputs": [str(p) for p in inputs],
        "valid_inputs": [str(p) for p in valid_inputs],
        "config": config.model_dump(mode="json"),
        "part": {"index": part.index, "count": part.count},
        "tokenizer": {
            "model_type": config.tokenizer.model_type,
            "vocab_size": tokenizer.vocab_size,  # at most the requested size (hard limit off)
            "requested_vocab_size": config.tokenizer.vocab_size,
            "special_ids": SPECIAL_IDS,
            **({"from": str(tokenizer_from)} if tokenizer_from else {}),
        },
        "splits": splits,
        "skipped": spool.skipped,
        **({"generic_filter": generic.report()} if generic else {}),
        "seconds": round(time.perf_counter() - started, 2),
    }


def prepare(
    corpus: str,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    config: DataConfig,
    *,
    valid_inputs: Sequence[str | Path] = (),
    tokenizer_from: str | Path | None = None,
    overwrite: bool = False,
    shards: int = DEFAULT_SHARDS,
    part: Part | None = None,
) -> dict[str, Any]:
    """Build the prepared directory `out_dir` and return its statistics (also in stats.json).

    With `valid_inputs`, those files are the validation split and `valid_fraction` is unused;
    otherwise each dialogue is held out with probability `valid_fraction` (a seeded hash). With
    `tokenizer_from` (a tokenizer.model file), that tokenizer is used instead of training one,
    so a bundle trained with it can be fine-tuned on this data (`chatbot train --init-from`).
    Each split is written as `shards` TFRecord files. With `part`, only that part of the
    corpus is prepared, into `out_dir/part-I-of-K/`, with `tokenizer_from` (trained once by
    `prepare_tokenizer`); `merge_parts(out_dir)` completes the directory once every part is.
    """
    if shards < 1:
        raise ConfigError(f"shards must be at least 1, not {shards}")
    if part is not None:
        _check_part_options(config, tokenizer_from)
    target = Path(out_dir) / part.name if part else Path(out_dir)
    with atomic_directory(target, overwrite=overwrite) as tmp:
        summary = _prepare_into(
            tmp, corpus, inputs, valid_inputs, config, tokenizer_from, shards, part or WHOLE
        )
        stats = _stats([summary])
        if part is not None:
            atomic_write_text(tmp / PART_SUMMARY, json.dumps(summary) + "\n")
        else:
            _write_index(tmp, [summary], stats)
    return stats


def _check_part_options(config: DataConfig, tokenizer_from: str | Path | None) -> None:
    if tokenizer_from is None:
        raise ConfigError(
            "a part (--num-shards/--shard-index) needs the tokenizer every part shares: train "
            "it once with `chatbot prepare --tokenizer-only`, then pass it with --tokenizer"
        )
    if config.max_reply_entropy is not None:
        raise ConfigError(
            "data.max_reply_entropy weighs each reply over the whole training split, which no "
            "part sees: prepare in one process (without --num-shards) to filter generic replies"
        )


def prepare_tokenizer(
    corpus: str,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    config: DataConfig,
    *,
    valid_inputs: Sequence[str | Path] = (),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train the tokenizer alone, as `prepare` would (on a seeded sample of the training
    split's turns), into `out_dir`: the one every part of a corpus is then prepared with."""
    started = time.perf_counter()
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        spool = _spool(corpus, inputs, valid_inputs, config, WHOLE, tmp)
        tokenizer = _train_tokenizer(spool, config)
        for path in tmp.iterdir():
            path.unlink()
        tokenizer.save(tmp / TOKENIZER)
    return {
        "corpus": corpus,
        "train_dialogues": spool.dialogues["train"],
        "train_turns": spool.turns["train"],
        "sampled_turns": min(spool.turns["train"], config.tokenizer.max_sentences),
        "vocab_size": tokenizer.vocab_size,
        "seconds": round(time.perf_counter() - started, 2),
    }


def merge_parts(out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Complete a directory prepared in parts: check that every part of one run is there,
    then write its tokenizer, skipped.jsonl, stats.json and, last, manifest.json."""
    root = Path(out_dir)
    summaries = _part_summaries(root)
    if (root / MANIFEST).exists() and not overwrite:
        raise DataError(f"{root / MANIFEST}: already merged; pass --force to merge again")
    names = [Part(**s["part"]).name for s in summaries]
    for name, summary in zip(names, summaries, strict=True):
        for split in summary["splits"].values():
            split["jsonl"] = [f"{name}/{path}" for path in split["jsonl"]]
            for shard in split["shards"]:
                shard["path"] = f"{name}/{shard['path']}"
    Tokenizer.load(root / names[0] / TOKENIZER).save(root / TOKENIZER)
    with (root / f".{SKIPPED}.tmp").open("wb") as merged:
        for name in names:
            with (root / name / SKIPPED).open("rb") as skipped:
                shutil.copyfileobj(skipped, merged)
    (root / f".{SKIPPED}.tmp").replace(root / SKIPPED)
    stats = _stats(summaries)
    _write_index(root, summaries, stats)
    return stats


def _part_summaries(root: Path) -> list[dict[str, Any]]:
    """The summaries of the parts in `root`, in part order, once all of one run are there."""
    found = sorted(p for p in root.glob("part-*-of-*") if p.is_dir())
    if not found:
        raise DataError(f"{root}: no part-I-of-K directories to merge")
    summaries = []
    for path in found:
        try:
            summaries.append(json.loads((path / PART_SUMMARY).read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise DataError(f"{path / PART_SUMMARY}: unreadable: {error}") from None
    count = summaries[0]["part"]["count"]
    have = {s["part"]["index"] for s in summaries if s["part"]["count"] == count}
    if len(summaries) != count or have != set(range(count)):
        missing = sorted(set(range(count)) - have)
        raise DataError(
            f"{root}: {len(summaries)} part(s) found for {count}; missing or foreign: "
            f"{', '.join(Part(i, count).name for i in missing) or 'parts of another run'}"
        )
    first = summaries[0]
    model = (root / found[0].name / TOKENIZER).read_bytes()
    for path, summary in zip(found, summaries, strict=True):
        for key in ("corpus", "inputs", "valid_inputs", "config"):
            if summary[key] != first[key]:
                raise DataError(f"{path}: its {key} differs from {found[0].name}'s")
        if (path / TOKENIZER).read_bytes() != model:
            raise DataError(f"{path}: its tokenizer differs from {found[0].name}'s")
    return sorted(summaries, key=lambda s: s["part"]["index"])


def _stats(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """stats.json of the parts together."""
    first = summaries[0]
    by_kind: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    firsts: list[dict[str, object]] = []
    for summary in summaries:
        by_kind.update(summary["skipped"]["by_kind"])
        by_file.update(summary["skipped"]["by_file"])
        firsts += summary["skipped"]["first"]
    config = parse_config(DataConfig, first["config"])
    generic = [s["generic_filter"] for s in summaries if "generic_filter" in s]
    return {
        "corpus": first["corpus"],
        "splits": {split: _split_stats(summaries, split, config) for split in SPLITS},
        "lengths_from": LENGTHS_FROM,
        "skipped": _skip_summary(by_kind, by_file, firsts),
        "tokenizer": first["tokenizer"],
        **({"generic_filter": generic[0]} if generic else {}),
        **({"parts": len(summaries)} if len(summaries) > 1 else {}),
        "seconds": round(sum(s["seconds"] for s in summaries), 2),
    }


def _split_stats(
    summaries: Sequence[dict[str, Any]], split: Split, config: DataConfig
) -> dict[str, Any]:
    shards = [
        Shard.from_json(entry, Path(), where=split)
        for summary in summaries
        for entry in summary["splits"][split]["shards"]
    ]
    sources: Counter[int] = Counter()
    targets: Counter[int] = Counter()
    for (source, target), count in total_lengths(shards).items():
        sources[source] += count
        targets[target] += count
    return {
        "dialogues": sum(s["splits"][split]["dialogues"] for s in summaries),
        "turns": sum(s["splits"][split]["turns"] for s in summaries),
        "examples": sum(shard.examples for shard in shards),
        "source_tokens": _length_summary(sources, config.max_source_len),
        "target_tokens": _length_summary(targets, config.max_target_len),
    }


def _length_summary(lengths: Counter[int], limit: int) -> dict[str, Any]:
    """Percentiles of token lengths and the share that the length limit will cut."""
    total = sum(lengths.values())
    if not total:
        return {"count": 0}
    summary: dict[str, Any] = {
        f"p{p}": value for p, value in percentiles(lengths, PERCENTILES).items()
    }
    summary.update(
        mean=round(sum(k * n for k, n in lengths.items()) / total, 2),
        max=max(lengths),
        limit=limit,
        truncated=round(sum(n for k, n in lengths.items() if k > limit) / total, 4),
    )
    return summary


def _write_index(root: Path, summaries: Sequence[dict[str, Any]], stats: dict[str, Any]) -> None:
    """stats.json, then manifest.json: what makes `root` a prepared directory, written last."""
    first = summaries[0]
    manifest = {
        "format_version": FORMAT_VERSION,
        "chatbot_version": __version__,
        "corpus": first["corpus"],
        "inputs": first["inputs"],
        "valid_inputs": first["valid_inputs"],
        "config": first["config"],
        "special_ids": SPECIAL_IDS,
        "splits": {
            split: {
                "examples": stats["splits"][split]["examples"],
                "jsonl": [path for s in summaries for path in s["splits"][split]["jsonl"]],
                "shards": [entry for s in summaries for entry in s["splits"][split]["shards"]],
            }
            for split in SPLITS
        },
    }
    atomic_write_text(root / STATS, json.dumps(stats, indent=2) + "\n")
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2) + "\n")


@dataclass(frozen=True)
class PreparedData:
    """A prepared directory read back: its config, tokenizer, examples and shards."""

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
                f"{FORMAT_VERSION} (this version trains from TFRecord shards); run `chatbot "
                "prepare` on the corpus again"
                if isinstance(manifest, dict)
                else f"{manifest_path}: expected a JSON object"
            )
        config = parse_config(DataConfig, manifest.get("config"), where=f"{manifest_path} config")
        return cls(path, config, Tokenizer.load(path / TOKENIZER), manifest)

    def _split(self, split: Split) -> dict[str, Any]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.manifest["splits"][split]

    def examples(self, split: Split) -> list[Example]:
        """Every example of the split, from its JSONL files."""
        files = self._split(split)["jsonl"]
        return [example for name in files for example in read_examples(self.path / name)]

    def shards(self, split: Split) -> list[Shard]:
        """The split's TFRecord files, with their example counts and lengths."""
        where = f"{self.path / MANIFEST} splits.{split}.shards"
        return [Shard.from_json(e, self.path, where=where) for e in self._split(split)["shards"]]

    def stats(self) -> dict[str, Any]:
        return json.loads((self.path / STATS).read_text(encoding="utf-8"))
