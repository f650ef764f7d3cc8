"""The `chatbot` command line. Each command is a thin shell over the library: parse flags, call
one function, print what it produced; library errors, and errors the operating system reports
(a full disk, a permission denied), become one clear line and exit status 1."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import NoneType
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from chatbot import __version__
from chatbot.config import (
    RUNTIMES,
    DecodingConfig,
    DistributionStrategy,
    Precision,
    TokenizerConfig,
)
from chatbot.corpora import FORMATS
from chatbot.errors import ChatbotError, ConfigError

CORPORA = tuple(FORMATS)


def _data_config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The DataConfig fields the user set on the command line (others keep their defaults)."""
    fields = (
        "history",
        "max_source_len",
        "max_target_len",
        "valid_fraction",
        "seed",
        "max_reply_entropy",
    )
    overrides: dict[str, Any] = {
        f: getattr(args, f) for f in fields if getattr(args, f) is not None
    }
    tokenizer = {
        key: value
        for key, value in (
            ("vocab_size", args.vocab_size),
            ("model_type", args.model_type),
            ("user_defined_symbols", args.user_defined_symbols),
        )
        if value is not None
    }
    if args.split_digits:
        tokenizer["split_digits"] = True
    if tokenizer:
        overrides["tokenizer"] = tokenizer
    if args.lowercase:
        overrides["normalizer"] = {"lowercase": True}
    return overrides


def _format_lengths(name: str, summary: dict[str, Any]) -> str:
    if not summary.get("count", 1):
        return f"  {name}: none"
    return (
        f"  {name}: p50 {summary['p50']}, p95 {summary['p95']}, max {summary['max']} "
        f"(limit {summary['limit']}, {summary['truncated']:.1%} truncated)"
    )


def format_prepare_summary(stats: dict[str, Any], out_dir: str) -> str:
    """A few lines a person reads after `chatbot prepare`."""
    splits = stats["splits"]
    total = {key: sum(s[key] for s in splits.values()) for key in ("dialogues", "examples")}
    tokenizer = stats["tokenizer"]
    specials = " ".join(f"{k}={v}" for k, v in tokenizer["special_ids"].items())
    asked = tokenizer.get("requested_vocab_size", tokenizer["vocab_size"])
    fewer = f" of {asked:,} asked: the data has no more" if tokenizer["vocab_size"] < asked else ""
    lines = [
        f"Prepared {stats['corpus']} into {out_dir} in {stats['seconds']:.1f}s",
        "  dialogues: {:,} (train {:,}, valid {:,})".format(
            total["dialogues"], splits["train"]["dialogues"], splits["valid"]["dialogues"]
        ),
        "  examples:  {:,} (train {:,}, valid {:,})".format(
            total["examples"], splits["train"]["examples"], splits["valid"]["examples"]
        ),
        f"  skipped:   {stats['skipped']['total']:,} record(s)",
        f"  tokenizer: {tokenizer.get('from', tokenizer['model_type'])}, "
        f"{tokenizer['vocab_size']:,} pieces{fewer} ({specials})",
        "train token lengths:",
        _format_lengths("source", splits["train"]["source_tokens"]),
        _format_lengths("target", splits["train"]["target_tokens"]),
    ]
    return "\n".join(lines)


def format_skip_warning(stats: dict[str, Any], out_dir: str, shown: int = 5) -> str:
    skipped = stats["skipped"]
    if not skipped["total"]:
        return ""
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in skipped["by_kind"].items())
    lines = [f"warning: skipped {skipped['total']:,} record(s): {kinds}"]
    lines += [
        f"  {s['file']}:{s['line']}: {s['kind']}: {s['detail']}" for s in skipped["first"][:shown]
    ]
    if skipped["total"] > shown:
        lines.append(f"  ... every skipped record is listed in {Path(out_dir) / 'skipped.jsonl'}")
    return "\n".join(lines)


def run_prepare(args: argparse.Namespace) -> int:
    from chatbot.config import Config, deep_merge, parse_config, read_yaml
    from chatbot.prepare import Part, merge_parts, prepare, prepare_tokenizer

    if args.merge:
        stats = merge_parts(args.out, overwrite=args.force)
        return _print_prepare_stats(args, stats)
    if not (args.corpus and args.input):
        raise ConfigError("prepare needs --corpus and --input (unless it is a --merge)")
    tree = deep_merge(
        read_yaml(args.config) if args.config else {}, {"data": _data_config_overrides(args)}
    )
    config = parse_config(Config, tree, where=args.config or "flags").data
    valid_inputs = args.valid_input or ()
    if args.tokenizer_only:
        info = prepare_tokenizer(
            args.corpus, args.input, args.out, config, valid_inputs=valid_inputs,
            overwrite=args.force,
        )  # fmt: skip
        print(
            json.dumps(info, indent=2)
            if args.json
            else f"Trained a {info['vocab_size']:,}-piece tokenizer into {args.out} in "
            f"{info['seconds']:.1f}s, on {info['sampled_turns']:,} of the "
            f"{info['train_turns']:,} training turns"
        )
        return 0
    if (args.num_shards is None) != (args.shard_index is None):
        raise ConfigError("--num-shards and --shard-index go together")
    stats = prepare(
        args.corpus,
        args.input,
        args.out,
        config,
        valid_inputs=valid_inputs,
        tokenizer_from=_tokenizer_file(args.tokenizer) if args.tokenizer else None,
        overwrite=args.force,
        shards=args.shards,
        part=Part(args.shard_index, args.num_shards) if args.num_shards else None,
    )
    return _print_prepare_stats(args, stats)


def _print_prepare_stats(args: argparse.Namespace, stats: dict[str, Any]) -> int:
    warning = format_skip_warning(stats, args.out)
    if warning:
        print(warning, file=sys.stderr)
    print(json.dumps(stats, indent=2) if args.json else format_prepare_summary(stats, args.out))
    return 0


def _tokenizer_file(path: str) -> Path:
    """`path` itself, or the tokenizer.model inside a bundle or prepared directory."""
    from chatbot.tokenizer import TOKENIZER_FILE

    given = Path(path)
    return given / TOKENIZER_FILE if given.is_dir() else given


class _ConsoleFormatter(logging.Formatter):
    """A log record as a console line: the message, marked when it is a warning."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"warning: {message}" if record.levelno >= logging.WARNING else message


@contextlib.contextmanager
def _console_log(name: str, *, verbose: bool) -> Iterator[None]:
    """Show logger `name`'s records on stderr while the command runs: progress too when
    `verbose`, else warnings only."""
    logger = logging.getLogger(name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ConsoleFormatter())
    level = logger.level
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_train(args: argparse.Namespace) -> int:
    from chatbot.bot import BACKWARD
    from chatbot.config import load_config
    from chatbot.training.trainer import TrainOptions, train

    config = load_config(args.config, args.set or ())
    options = TrainOptions(
        resume=args.resume,
        force=args.force,
        max_minutes=args.max_minutes,
        strategy=args.strategy,
        precision=args.precision,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        init_from=Path(args.init_from) if args.init_from else None,
        command=" ".join(["chatbot", *sys.argv[1:]]),
        verbose=not args.quiet,
    )
    with _console_log("chatbot.training", verbose=not args.quiet):
        report = train(config, args.data, args.out, options)
    best = report.best
    metrics = ", ".join(
        f"{name} {best[name]:.4g}" for name in ("val_loss", "val_perplexity") if name in best
    )
    print(
        f"Trained {report.epochs_done} epoch(s) in {report.seconds:.1f}s ({report.stopped}); "
        f"best epoch {best.get('epoch', '-')}: {metrics or 'no validation split'}; "
        f"{report.tokens_per_second:,.0f} target tokens/s\n"
        f"  bundle: {report.bundle}\n"
        f"  run:    {report.work_dir} (tensorboard --logdir {report.work_dir / 'logs'})"
    )
    backward = report.bundle / BACKWARD
    if config.decoding.mmi_backward and not backward.is_dir():
        print(
            "  note:   its decoding defaults rerank replies with a backward model "
            f"(decoding.mmi_backward), so it answers only once one is in {backward}: "
            "docs/training.md#a-backward-model-for-mmi-bidi; without one, train with "
            "--set decoding.mmi_backward=0"
        )
    return 0


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def _decoding_flag(info: FieldInfo) -> dict[str, Any]:
    """argparse options for a `DecodingConfig` field: its choices, or the type of its values
    (a tuple field takes one or more), and its description as help."""
    annotation = info.annotation
    options: dict[str, Any] = {"help": info.description}
    if get_origin(annotation) is Literal:
        options["choices"] = get_args(annotation)
        return options
    if get_origin(annotation) is tuple:
        options["nargs"] = "+"
        kind = get_args(annotation)[0]
    else:  # a number, or a number or None
        kind = next(t for t in (*get_args(annotation), annotation) if t is not NoneType)
    return {**options, "type": kind, "metavar": _METAVARS[kind]}


# Decoding options that are no flag: the commands print text, not per-token log-probabilities.
_NOT_FLAGS = {"logprobs"}
_FLAGS = [name for name in DecodingConfig.model_fields if name not in _NOT_FLAGS]


def _add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (defaults from the bundle's config)")
    for name in _FLAGS:
        info = DecodingConfig.model_fields[name]
        group.add_argument("--" + name.replace("_", "-"), dest=name, **_decoding_flag(info))


def _decoding(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _FLAGS}


def _add_runtime_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="lite",
        help="lite (default): decode one conversation as a TensorFlow Lite program, converted "
        "once per decoding setting (a second or two); lite-int8: the same with int8 "
        "weights, faster, replies differ slightly; tf: TensorFlow only",
    )


def run_chat(args: argparse.Namespace) -> int:
    from chatbot.bot import Chatbot
    from chatbot.repl import ChatSession, run

    session = ChatSession(Chatbot.load(args.model, runtime=args.runtime), **_decoding(args))
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {args.model}. Type a message; /help lists commands, /quit leaves.")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the chat like end of input
        run(session, sys.stdin, sys.stdout, prompt="you> " if interactive else "")
    if interactive:
        print()
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from chatbot.bot import Chatbot
    from chatbot.evaluation.evaluate import evaluate, format_report, load_examples

    bot = Chatbot.load(args.model, runtime=args.runtime)
    examples = load_examples(args.data, args.split)
    results = evaluate(
        bot,
        examples,
        batch_size=args.batch_size,
        limit=args.limit,
        samples=args.samples,
        hits_k=args.hits_k,
        distractor_seed=args.distractor_seed,
        distractors=args.hits_distractors,
        **_decoding(args),
    )
    if args.attention_plot:
        from chatbot.evaluation.plots import plot_attention

        results["attention_plot"] = str(
            plot_attention(bot, examples[0], args.attention_plot, **_decoding(args))
        )
    print(json.dumps(results, indent=2) if args.json else format_report(results))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from chatbot.benchmark import decoding_speed, training_speed
    from chatbot.config import load_config

    config = load_config(args.config, args.set or ())
    decoding = decoding_speed(config, runtime=args.runtime)
    results = {"config": args.config, "runtime": args.runtime, **decoding, **training_speed(config)}
    if args.json:
        print(json.dumps(results))
    else:
        print("\n".join(f"{key:>20}: {value}" for key, value in results.items()))
    return 0


def run_average(args: argparse.Namespace) -> int:
    from chatbot.training.average import average_checkpoints

    averaged = average_checkpoints(
        args.model,
        args.last,
        args.out,
        work_dir=args.work_dir,
        overwrite=args.force,
        float16=args.float16,
        blend=args.blend,
        blend_weight=args.blend_weight,
    )
    names = ", ".join(averaged["checkpoints"])
    blended = f", blended {args.blend_weight:g} with {args.blend}," if args.blend else ""
    print(f"Averaged {names} of {averaged['directory']}{blended} into {args.out}")
    return 0


def run_bank(args: argparse.Namespace) -> int:
    from chatbot.bundle import add_reply_bank, read_config
    from chatbot.prepare import PreparedData
    from chatbot.retrieval import build_bank

    if read_config(args.model).data.direction != "forward":
        raise ConfigError(
            f"{args.model}: a backward model predicts messages, not replies; give the bank "
            "to the forward bundle"
        )
    data = PreparedData.load(args.data)
    bank = build_bank(data.examples("train"), data.examples("valid"), args.max_reply_entropy)
    source = {"data": str(args.data), "max_reply_entropy": args.max_reply_entropy}
    path = add_reply_bank(args.model, bank, source)
    print(f"Wrote {len(bank):,} (message, reply) pairs of {args.data} to {path}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from chatbot.batch_report import describe_batches

    print(describe_batches(args.data, args.split, args.batch_size, args.batches))
    return 0


def run_export(args: argparse.Namespace) -> int:
    import tensorflow as tf

    # Hide GPUs from this (short-lived) process: with one visible, Keras bakes cuDNN-only
    # recurrent kernels into the graph, and the SavedModel would not run on a CPU.
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    from chatbot.export import SIGNATURES, export_saved_model

    out = export_saved_model(args.model, args.out, force=args.force)
    print(f"Exported {args.model} as a SavedModel to {out}; signatures: {', '.join(SIGNATURES)}")
    return 0


# The server package adds its own `serve` command (`serve.cli.add_parser`). It is looked up
# only when the parser is built, so the library does not depend on the server: without the
# `serve` package installed, the command is simply absent.
SERVER_COMMAND = "serve.cli"


def _add_server_command(commands: Any) -> None:
    try:
        server = importlib.import_module(SERVER_COMMAND)
    except ModuleNotFoundError as error:
        if error.name not in ("serve", SERVER_COMMAND):
            raise
        return
    server.add_parser(commands)


def _add_prepare_command(commands: Any) -> None:
    prep = commands.add_parser(
        "prepare",
        help="turn a corpus into train/valid examples and a tokenizer",
        description="Import a corpus, normalize it, split it by dialogue, build examples with "
        "K turns of context, train a SentencePiece tokenizer on the training split, and write "
        "it all atomically to --out: token ids as TFRecord shards, examples as JSONL, "
        "stats.json and skipped.jsonl. Memory does not grow with the corpus; a large one can "
        "be prepared by several processes (--num-shards/--shard-index, then --merge).",
    )
    prep.add_argument("--corpus", choices=CORPORA, help="input format")
    prep.add_argument("--input", nargs="+", metavar="PATH", help="files or dirs")
    prep.add_argument(
        "--valid-input",
        nargs="+",
        metavar="PATH",
        help="use these as the validation split instead of holding out --valid-fraction",
    )
    prep.add_argument("--out", required=True, metavar="DIR", help="directory to create")
    prep.add_argument("--config", metavar="FILE", help="YAML config; its data section is used")
    prep.add_argument("--history", type=int, metavar="K", help="context turns (default 2)")
    prep.add_argument("--vocab-size", type=int, metavar="N", help="tokenizer pieces (8000)")
    prep.add_argument(
        "--model-type",
        choices=get_args(TokenizerConfig.model_fields["model_type"].annotation),
        help="tokenizer (unigram)",
    )
    prep.add_argument("--split-digits", action="store_true", help="every digit its own piece")
    prep.add_argument(
        "--user-defined-symbols",
        nargs="+",
        metavar="SYMBOL",
        help="pieces never split, e.g. <num> km/h",
    )
    prep.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="reuse this tokenizer (a tokenizer.model, or a bundle or prepared dir holding one) "
        "instead of training one, e.g. to fine-tune that bundle with train --init-from",
    )
    prep.add_argument(
        "--max-reply-entropy",
        type=float,
        metavar="BITS",
        help="drop training pairs whose reply follows so many different messages that its "
        "entropy exceeds BITS (generic replies such as 'Thank you.'; 1.0 drops about 8%% of "
        "DailyDialog's)",
    )
    prep.add_argument("--max-source-len", type=int, metavar="N", help="source tokens (64)")
    prep.add_argument("--max-target-len", type=int, metavar="N", help="target tokens (32)")
    prep.add_argument("--valid-fraction", type=float, metavar="F", help="held out (0.05)")
    prep.add_argument("--seed", type=int, metavar="S", help="split and shuffle seed (0)")
    prep.add_argument("--lowercase", action="store_true", help="lowercase all text")
    prep.add_argument(
        "--shards", type=int, default=8, metavar="N", help="TFRecord files per split (8)"
    )
    prep.add_argument(
        "--num-shards",
        type=int,
        metavar="K",
        help="prepare only part --shard-index of K (every K-th record), into DIR/part-I-of-K/; "
        "needs --tokenizer, then --merge completes DIR",
    )
    prep.add_argument("--shard-index", type=int, metavar="I", help="this part's index, 0 to K-1")
    prep.add_argument(
        "--tokenizer-only",
        action="store_true",
        help="only train the tokenizer (on a sample of the training turns) into DIR",
    )
    prep.add_argument(
        "--merge", action="store_true", help="write DIR's manifest over its completed parts"
    )
    prep.add_argument("--force", action="store_true", help="replace --out if it exists")
    prep.add_argument("--json", action="store_true", help="print stats.json instead")
    prep.set_defaults(handler=run_prepare)


def _add_train_command(commands: Any) -> None:
    trn = commands.add_parser(
        "train",
        help="train a model on a prepared directory and write its bundle",
        description="Train the encoder-decoder on a `chatbot prepare` output. Checkpoints, "
        "TensorBoard logs and the run's config go to a work directory beside the bundle "
        "(OUT.work); --resume continues a run from its last checkpoint, even after a kill.",
    )
    trn.add_argument("--config", metavar="FILE", help="YAML config (configs/*.yaml)")
    trn.add_argument("--data", required=True, metavar="DIR", help="a `chatbot prepare` output")
    trn.add_argument("--out", required=True, metavar="MODEL_DIR", help="bundle to write")
    trn.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. training.epochs=5 (repeatable)",
    )
    trn.add_argument("--resume", action="store_true", help="continue the run in the work dir")
    trn.add_argument("--force", action="store_true", help="discard an earlier run's work dir")
    trn.add_argument("--max-minutes", type=float, metavar="M", help="stop cleanly after M min")
    trn.add_argument(
        "--strategy",
        choices=get_args(DistributionStrategy),
        default="default",
        help="tf.distribute strategy; multi_worker reads TF_CONFIG",
    )
    trn.add_argument(
        "--precision",
        choices=get_args(Precision),
        default="auto",
        help="auto: mixed_float16 on a GPU, float32 on a CPU",
    )
    trn.add_argument("--work-dir", metavar="DIR", help="where the run keeps its state")
    trn.add_argument(
        "--init-from",
        metavar="MODEL_DIR",
        help="start from this bundle's weights (fine-tuning); the data must be prepared with "
        "its tokenizer (prepare --tokenizer MODEL_DIR) and the config must match its model",
    )
    trn.add_argument("--quiet", action="store_true", help="no progress output")
    trn.set_defaults(handler=run_train)


def _add_average_command(commands: Any) -> None:
    avg = commands.add_parser(
        "average",
        help="a bundle with the mean weights of its run's last checkpoints",
        description="Average the model weights of the last N checkpoints of a training run "
        "(in MODEL_DIR.work unless --work-dir says otherwise) into a new bundle with the same "
        "config and tokenizer; its card.json records the checkpoints.",
    )
    avg.add_argument("--model", required=True, metavar="MODEL_DIR", help="the run's bundle")
    avg.add_argument("--last", type=int, default=5, metavar="N", help="checkpoints (5)")
    avg.add_argument("--out", required=True, metavar="DIR", help="bundle to write")
    avg.add_argument("--work-dir", metavar="DIR", help="the run's work dir (MODEL_DIR.work)")
    avg.add_argument("--force", action="store_true", help="replace --out if it exists")
    avg.add_argument(
        "--float16", action="store_true", help="store the weights as float16 (half the size)"
    )
    avg.add_argument(
        "--blend",
        metavar="MODEL_DIR",
        help="mix in this bundle's weights (same architecture), such as the run's --init-from",
    )
    avg.add_argument(
        "--blend-weight",
        type=float,
        default=0.5,
        metavar="W",
        help="the --blend bundle's share of each weight (0.5)",
    )
    avg.set_defaults(handler=run_average)


def _add_bank_command(commands: Any) -> None:
    bank = commands.add_parser(
        "bank",
        help="add a reply bank to a bundle (for decoding.reply_source)",
        description="Write the (message, reply) pairs of a prepared directory's training split "
        "into MODEL_DIR's reply bank, so its replies can be retrieved as candidates; "
        "`chatbot train` writes one itself. Pairs sharing a distinctive text with the "
        "validation split are left out, so evaluation on it stays meaningful.",
    )
    bank.add_argument("--model", required=True, metavar="MODEL_DIR", help="the bundle")
    bank.add_argument(
        "--data", required=True, metavar="DIR", help="the `chatbot prepare` output it learned"
    )
    bank.add_argument(
        "--max-reply-entropy",
        type=float,
        metavar="BITS",
        help="leave out the pairs whose reply follows so many different messages that its "
        "entropy exceeds BITS (the most generic replies; 5 drops 'Thank you.', 'Yes.', 'Why "
        "not?' and about 2.6%% of DailyDialog's pairs)",
    )
    bank.set_defaults(handler=run_bank)


def _add_chat_command(commands: Any) -> None:
    chat = commands.add_parser(
        "chat",
        help="talk to a trained model in the terminal",
        description="An interactive chat with a bundle; reads one message a line (a pipe "
        "works too) and prints each reply. /help lists the commands.",
    )
    chat.add_argument("--model", required=True, metavar="DIR", help="a model bundle")
    _add_runtime_flag(chat)
    _add_decoding_flags(chat)
    chat.set_defaults(handler=run_chat)


def _add_evaluate_command(commands: Any) -> None:
    ev = commands.add_parser(
        "evaluate",
        help="perplexity, hits@1 and reply quality on held-out conversations",
        description="Teacher-forced perplexity of the references (per token and per word), "
        "hits@1/K (how often the true reply outscores K-1 replies from other dialogues, and "
        "the same with the context blanked), then replies generated with the decoding "
        "settings, scored with sacreBLEU, distinct-1/2, mean length, the share of generic "
        "replies and of replies repeating a 3-gram.",
    )
    ev.add_argument("--model", required=True, metavar="DIR", help="a model bundle")
    ev.add_argument(
        "--data",
        required=True,
        metavar="FILE_OR_DIR",
        help="a `chatbot prepare` output or an examples .jsonl file",
    )
    ev.add_argument("--split", choices=("train", "valid"), default="valid")
    ev.add_argument("--limit", type=int, metavar="N", help="only the first N examples")
    ev.add_argument("--batch-size", type=int, default=64, metavar="N")
    ev.add_argument("--samples", type=int, default=5, metavar="N", help="conversations shown (5)")
    ev.add_argument(
        "--hits-k", type=int, default=20, metavar="K", help="candidates for hits@1/K (20; 0: off)"
    )
    ev.add_argument(
        "--distractor-seed", type=int, default=0, metavar="S", help="seed of hits@1 distractors"
    )
    ev.add_argument(
        "--hits-distractors",
        choices=("random", "similar"),
        default="random",
        help="hits@1 distractors: random replies from other dialogues (the default), or the "
        "replies to the other dialogues' messages most like each example's, as the reply bank "
        "retrieves them",
    )
    ev.add_argument("--json", action="store_true", help="print the results as JSON")
    ev.add_argument("--attention-plot", metavar="OUT.png", help="heatmap of the first example")
    _add_runtime_flag(ev)
    _add_decoding_flags(ev)
    ev.set_defaults(handler=run_evaluate)


def _add_bench_command(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="decoding and training speed at a config's dimensions",
        description="Random weights, random inputs: medians after warm-up of greedy decoding "
        "(batch 1 and 32) and beam search (width 5, batch 1), 10 decoder steps from a "
        "10-token source, and of a training step at the config's batch size.",
    )
    bench.add_argument("--config", default="configs/reference.yaml", metavar="FILE")
    bench.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value")
    bench.add_argument("--json", action="store_true", help="one JSON object")
    _add_runtime_flag(bench)
    bench.set_defaults(handler=run_bench)


def _add_export_command(commands: Any) -> None:
    exp = commands.add_parser(
        "export",
        help="write a bundle as a TensorFlow SavedModel (strings in, strings out)",
        description="Export a bundle as a SavedModel for TensorFlow Serving or any TensorFlow "
        "runtime: normalization, tokenization, context, decoding with the bundle's defaults "
        "and detokenization all run in the graph. Inputs: message [batch] and history "
        "[batch, turns] strings (oldest first, empty strings pad); output: reply [batch].",
    )
    exp.add_argument("--model", required=True, metavar="DIR", help="a model bundle")
    exp.add_argument("--out", required=True, metavar="DIR", help="SavedModel directory to create")
    exp.add_argument("--force", action="store_true", help="replace --out if it exists")
    exp.set_defaults(handler=run_export)


def _add_inspect_command(commands: Any) -> None:
    insp = commands.add_parser(
        "inspect",
        help="show the training batches a prepared directory makes",
        description="Build the tf.data pipeline over a prepared directory and report batch "
        "shapes, padding and one decoded example, to check data before training.",
    )
    insp.add_argument("data", metavar="DIR", help="a `chatbot prepare` output")
    insp.add_argument("--split", choices=("train", "valid"), default="train")
    insp.add_argument("--batch-size", type=int, default=64, metavar="N")
    insp.add_argument("--batches", type=int, metavar="N", help="stop after N batches (all)")
    insp.set_defaults(handler=run_inspect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatbot",
        description="Train a seq2seq chatbot on your own conversations, chat with it, serve it.",
    )
    parser.add_argument("--version", action="version", version=f"chatbot {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add_command in (
        _add_prepare_command,
        _add_train_command,
        _add_average_command,
        _add_bank_command,
        _add_chat_command,
        _add_evaluate_command,
        _add_bench_command,
        _add_server_command,
        _add_export_command,
        _add_inspect_command,
    ):
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (no GPU found, etc.) is noise on a CPU; users can override.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    # OSError: the system refused (permissions, a read-only or missing path, a full disk)
    except (ChatbotError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
