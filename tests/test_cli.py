import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot import __version__
from chatbot.cli import build_parser, main
from chatbot.config import DecodingConfig

from .test_prepare import write_jsonl_corpus


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("prepare", "inspect", "train", "bank", "chat", "evaluate", "bench", "serve"):
        assert command in out


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("chatbot")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout == f"chatbot {__version__}\n"


def test_prepare_prints_a_summary_and_warns_about_skips(tmp_path, capsys):
    corpus = write_jsonl_corpus(tmp_path / "c.jsonl", bad_lines=[(2, '{"turns": 5}')])
    out = tmp_path / "p"
    code = main(
        ["prepare", "--corpus", "jsonl", "--input", str(corpus), "--out", str(out),
         "--history", "1", "--vocab-size", "400", "--valid-fraction", "0.1"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())["splits"]
    train, valid = stats["train"]["dialogues"], stats["valid"]["dialogues"]
    assert train + valid == 30 and f"dialogues: 30 (train {train}, valid {valid})" in captured.out
    assert "pad=0 unk=1 bos=2 eos=3 sep=4" in captured.out
    assert "warning: skipped 1 record(s): malformed 1" in captured.err
    assert f"{corpus}:2: malformed" in captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["history"] == 1
    assert manifest["config"]["tokenizer"]["vocab_size"] == 400


def test_prepare_json_output_is_the_stats_file(tmp_path, capsys):
    corpus = write_jsonl_corpus(tmp_path / "c.jsonl")
    out = tmp_path / "p"
    argv = ["prepare", "--corpus", "jsonl", "--input", str(corpus), "--out", str(out), "--json"]
    assert main([*argv, "--vocab-size", "400"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((out / "stats.json").read_text())


def test_library_errors_exit_1_with_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.tsv"
    code = main(
        ["prepare", "--corpus", "tsv", "--input", str(missing), "--out", str(tmp_path / "p")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"error: {missing}: no such file or directory\n"


def test_bad_flag_values_name_the_field(tmp_path, capsys):
    corpus = write_jsonl_corpus(tmp_path / "c.jsonl")
    argv = ["prepare", "--corpus", "jsonl", "--input", str(corpus), "--out", str(tmp_path / "p")]
    assert main([*argv, "--history", "0"]) == 1
    error = capsys.readouterr().err
    assert "flags: data.history: Input should be greater than or equal to 1" in error


def test_unknown_corpus_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--corpus", "csv", "--input", "x", "--out", "y"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'csv'" in capsys.readouterr().err


def test_inspect_shows_batches_and_a_decoded_example(tmp_path, capsys):
    corpus = tmp_path / "c.tsv"
    corpus.write_text("Hello there , friend .\tHi ! Nice to see you .\n" * 12, encoding="utf-8")
    out = tmp_path / "p"
    argv = ["prepare", "--corpus", "tsv", "--input", str(corpus), "--out", str(out)]
    assert main([*argv, "--vocab-size", "300", "--valid-fraction", "0"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--batch-size", "5"]) == 0
    report = capsys.readouterr().out
    assert "12 examples -> 3 batches of up to 5 (12 rows)" in report
    assert "context: Hello there, friend." in report
    assert "target:  Hi! Nice to see you." in report


def test_chat_over_a_pipe_prints_a_reply_per_message(tiny_bundle, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\nHow are you?\n/quit\nignored\n"))
    assert main(["chat", "--model", str(tiny_bundle), "--max-length", "5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_chat_rejects_bad_decoding_flags(tiny_bundle, capsys):
    assert main(["chat", "--model", str(tiny_bundle), "--top-p", "2"]) == 1
    assert "decoding: top_p" in capsys.readouterr().err


def test_evaluate_prints_metrics_as_json(tiny_bundle, capsys):
    data = tiny_bundle.parent / "data"
    argv = ["evaluate", "--model", str(tiny_bundle), "--data", str(data), "--json"]
    assert main([*argv, "--limit", "3", "--strategy", "beam", "--beam-width", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["examples"] == 3 and results["perplexity"] > 1
    assert len(results["samples"]) == 3
    assert main([*argv, "--limit", "3", "--samples", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["samples"]) == 1
    assert results["decoding"]["strategy"] == "beam"
    for key in ("bleu", "distinct_1", "distinct_2", "generic_share", "repeated_3gram_share"):
        assert key in results


def test_bench_prints_the_documented_keys(capsys):
    assert main(["bench", "--config", "configs/tiny.yaml", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    for key in (
        "greedy_ms_b1",
        "greedy_ms_b32",
        "beam5_ms_b1",
        "train_step_ms",
        "train_tokens_per_s",
    ):
        assert results[key] > 0


def test_chat_has_a_flag_for_every_decoding_setting():
    flags = ["--banned-phrases", "hi", "there", "--strategy", "beam", "--seed", "3"]
    args = build_parser().parse_args(["chat", "--model", "m", "--top-p", "0.5", *flags])
    # all but logprobs, which the commands would not print
    assert set(DecodingConfig.model_fields) - {"logprobs"} <= set(vars(args))
    assert "logprobs" not in vars(args)
    assert (args.top_p, args.banned_phrases, args.strategy, args.seed) == (
        0.5,
        ["hi", "there"],
        "beam",
        3,
    )
    assert args.top_k is None  # unset flags keep the bundle's defaults


def test_bank_adds_the_prepared_training_replies_to_a_bundle(tiny_bundle, tmp_path, capsys):
    import shutil

    from chatbot.bundle import Bundle
    from chatbot.prepare import PreparedData
    from chatbot.retrieval import Pair, ReplyBank, bank_pairs, build_bank

    model = tmp_path / "model"
    shutil.copytree(tiny_bundle, model)
    Bundle.load(model)  # the copy is whole
    (model / "replies.jsonl.gz").write_bytes(ReplyBank([Pair("a", "b")]).to_bytes())
    data = tiny_bundle.parent / "data"
    assert main(["bank", "--model", str(model), "--data", str(data)]) == 0
    prepared = PreparedData.load(data)
    expected = bank_pairs(prepared.examples("train"), prepared.examples("valid"))
    assert Bundle.load(model).replies.pairs == expected
    out = capsys.readouterr().out
    assert (
        out
        == f"Wrote {len(expected):,} (message, reply) pairs of {data} to {model}/replies.jsonl.gz\n"
    )
    flags = ["--max-reply-entropy", "0.5"]  # the filter itself: tests/test_retrieval.py
    assert main(["bank", "--model", str(model), "--data", str(data), *flags]) == 0
    filtered = build_bank(prepared.examples("train"), prepared.examples("valid"), 0.5)
    loaded = Bundle.load(model)
    assert loaded.replies.pairs == filtered.pairs
    expected_card = {"pairs": len(filtered), "data": str(data), "max_reply_entropy": 0.5}
    assert loaded.card["reply_bank"] == expected_card


def test_bank_refuses_a_backward_model(backward_bundle, capsys):
    data = backward_bundle.parent / "data"
    assert main(["bank", "--model", str(backward_bundle), "--data", str(data)]) == 1
    assert "a backward model predicts messages, not replies" in capsys.readouterr().err
