import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest

from chatbot.bundle import Bundle
from chatbot.cli import main
from chatbot.config import TokenizerConfig, load_config, read_yaml
from chatbot.errors import ConfigError
from chatbot.prepare import PreparedData
from chatbot.training.trainer import TrainOptions, train

from .conftest import TINY


def quiet(**options) -> TrainOptions:
    return TrainOptions(verbose=False, **options)


def test_training_writes_a_bundle_that_loads_and_answers(prepared, tmp_path):
    config = load_config("configs/tiny.yaml", TINY)
    report = train(config, prepared, tmp_path / "model", quiet(command="chatbot train ..."))
    assert report.stopped == "finished" and report.epochs_done == 2
    bundle = Bundle.load(tmp_path / "model")
    assert bundle.config.model == config.model
    assert bundle.config.data.tokenizer.vocab_size == 300
    assert [r["epoch"] for r in bundle.history] == [1, 2]
    assert all(np.isfinite(r["val_loss"]) and r["val_perplexity"] > 1 for r in bundle.history)
    assert bundle.card["command"] == "chatbot train ..."
    assert bundle.card["data"]["splits"]["train"]["examples"] == 48
    manifest = json.loads((prepared / "manifest.json").read_text())
    for key in ("inputs", "valid_inputs"):  # where the data came from, both splits
        assert bundle.card["data"][key] == manifest[key]
    assert bundle.card["metrics"]["val_loss"] == min(r["val_loss"] for r in bundle.history)
    ids = np.array([[10, 11, 3]], "int32")
    logits = bundle.model({"source_ids": ids, "decoder_input_ids": np.array([[2]], "int32")})
    assert logits.shape == (1, 1, bundle.tokenizer.vocab_size)
    assert (tmp_path / "model.work" / "logs" / "train").is_dir()


def test_time_budget_stops_cleanly_and_resume_finishes(prepared, tmp_path):
    config = load_config("configs/tiny.yaml", TINY)
    out = tmp_path / "model"
    stopped = train(config, prepared, out, quiet(max_minutes=1e-5))
    assert stopped.stopped == "time_budget" and stopped.epochs_done == 0
    assert Bundle.load(out).history[0]["partial"] is True
    finished = train(config, prepared, out, quiet(resume=True))
    assert finished.stopped == "finished" and finished.epochs_done == 2
    history = Bundle.load(out).history
    assert [r["epoch"] for r in history] == [1, 1, 2]
    assert history[-1]["step"] == 2 * 6  # 48 examples, 6 batches an epoch, none repeated


def test_early_stopping_when_validation_stops_improving(prepared, tmp_path):
    overrides = [*TINY, "training.epochs=6", "training.early_stopping_patience=1"]
    overrides += ["training.learning_rate=1e-12", "training.lr_schedule=constant"]
    report = train(load_config("configs/tiny.yaml", overrides), prepared, tmp_path / "m", quiet())
    assert report.stopped == "early_stopping"
    assert report.epochs_done == 2


def test_scheduled_sampling_logs_a_falling_teacher_forcing_probability(prepared, tmp_path):
    overrides = [*TINY, "training.epochs=3", "training.scheduled_sampling.schedule=linear"]
    overrides += ["training.scheduled_sampling.c=0.05", "training.early_stopping_patience=0"]
    train(load_config("configs/tiny.yaml", overrides), prepared, tmp_path / "m", quiet())
    forcing = [r["teacher_forcing"] for r in Bundle.load(tmp_path / "m").history]
    np.testing.assert_allclose(forcing, [1 - 0.05 * 6, 1 - 0.05 * 12, 1 - 0.05 * 18], atol=1e-6)


def test_a_ranking_loss_is_trained_and_logged_beside_the_token_loss(prepared, tmp_path):
    overrides = [*TINY, "training.contrastive_weight=1.0", "training.contrastive_negatives=2"]
    train(load_config("configs/tiny.yaml", overrides), prepared, tmp_path / "m", quiet())
    history = Bundle.load(tmp_path / "m").history
    # two other replies: a model that cannot tell them apart scores log(3)
    assert all(0 < r["ranking_loss"] < np.log(3) + 0.5 for r in history)
    assert all(np.isfinite(r["val_loss"]) for r in history)
    train(load_config("configs/tiny.yaml", TINY), prepared, tmp_path / "plain", quiet())
    assert "ranking_loss" not in Bundle.load(tmp_path / "plain").history[0]


def test_hard_negatives_are_mined_into_the_work_dir_and_trained_on(prepared, tmp_path):
    overrides = [*TINY, "training.contrastive_weight=1.0", "training.contrastive_negatives=0"]
    overrides += ["training.contrastive_hard_negatives=2"]
    train(load_config("configs/tiny.yaml", overrides), prepared, tmp_path / "m", quiet())
    history = Bundle.load(tmp_path / "m").history
    assert all(0 < r["ranking_loss"] < np.log(3) + 0.5 for r in history)
    stamp = json.loads((tmp_path / "m.work" / "negatives" / "mined.json").read_text())
    assert stamp["count"] == 2 and stamp["examples"] == 48


def test_a_ranking_loss_over_other_contexts_is_mined_and_trained_on(prepared, tmp_path):
    overrides = [*TINY, "training.contrastive_weight=1.0", "training.contrastive_negatives=1"]
    overrides += ["training.contrastive_hard_negatives=1", "training.contrastive_side=source"]
    train(load_config("configs/tiny.yaml", overrides), prepared, tmp_path / "m", quiet())
    history = Bundle.load(tmp_path / "m").history
    # two other contexts: a model whose replies ignore the context scores log(3)
    assert all(0 < r["ranking_loss"] < np.log(3) + 0.5 for r in history)
    stamp = json.loads((tmp_path / "m.work" / "negatives" / "mined.json").read_text())
    assert stamp["side"] == "source" and stamp["count"] == 1


def test_a_new_run_will_not_overwrite_an_earlier_one(prepared, tmp_path):
    config = load_config("configs/tiny.yaml", [*TINY, "training.epochs=1"])
    train(config, prepared, tmp_path / "m", quiet())
    with pytest.raises(ConfigError, match=r"m\.work holds an earlier run: pass --resume"):
        train(config, prepared, tmp_path / "m", quiet())
    assert train(config, prepared, tmp_path / "m", quiet(force=True)).epochs_done == 1


def test_resume_refuses_a_different_architecture_but_allows_more_epochs(prepared, tmp_path):
    config = load_config("configs/tiny.yaml", [*TINY, "training.epochs=1"])
    train(config, prepared, tmp_path / "m", quiet())
    changed = load_config("configs/tiny.yaml", [*TINY, "model.hidden_size=32"])
    with pytest.raises(ConfigError, match=r"model\.hidden_size \(32 here, 16 in the run\)"):
        train(changed, prepared, tmp_path / "m", quiet(resume=True))
    longer = load_config(
        "configs/tiny.yaml", [*TINY, "training.epochs=2", "decoding.strategy=beam"]
    )
    assert train(longer, prepared, tmp_path / "m", quiet(resume=True)).epochs_done == 2
    # decoding settings never affect training: the resumed run's bundle carries the new ones
    assert read_yaml(tmp_path / "m" / "config.yaml")["decoding"]["strategy"] == "beam"


def test_resume_falls_back_when_the_newest_checkpoint_is_damaged(prepared, tmp_path, caplog):
    config = load_config("configs/tiny.yaml", [*TINY, "training.epochs=1"])
    train(config, prepared, tmp_path / "m", quiet())
    checkpoints = tmp_path / "m.work" / "checkpoints"
    newest = max(checkpoints.glob("ckpt-*.index"), key=lambda p: int(p.stem.split("-")[1]))
    newest.with_suffix(".data-00000-of-00001").write_bytes(b"garbage")
    longer = load_config("configs/tiny.yaml", [*TINY, "training.epochs=2"])
    assert train(longer, prepared, tmp_path / "m", quiet(resume=True)).epochs_done == 2
    assert f"checkpoint {checkpoints / newest.stem} unusable" in caplog.text


def test_the_cli_says_when_the_bundle_needs_a_backward_model_it_lacks(prepared, tmp_path, capsys):
    argv = ["train", "--config", "configs/tiny.yaml", "--data", str(prepared), "--quiet"]
    argv += [f"--set={o}" for o in [*TINY, "training.epochs=1"]]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert "backward model" not in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "mmi"), "--set", "decoding.mmi_backward=1"]) == 0
    out = capsys.readouterr().out
    assert f"answers only once one is in {tmp_path / 'mmi' / 'backward'}" in out


def test_config_errors_name_the_key(prepared, tmp_path, capsys):
    argv = ["train", "--config", "configs/tiny.yaml", "--data", str(prepared)]
    code = main([*argv, "--out", str(tmp_path / "m"), "--set", "model.hiden_size=3"])
    assert code == 1
    assert "configs/tiny.yaml: model.hiden_size: Extra inputs are not permitted" in (
        capsys.readouterr().err
    )


def test_a_run_killed_at_any_moment_resumes_and_finishes(prepared, tmp_path):
    """SIGKILL the training process once it has written a few checkpoints, then --resume."""
    out, work = tmp_path / "model", tmp_path / "model.work"
    argv = [sys.executable, "-m", "chatbot.cli", "train", "--config", "configs/tiny.yaml"]
    argv += ["--data", str(prepared), "--out", str(out), "--quiet"]
    overrides = [*TINY, "training.epochs=30", "training.checkpoint_every_steps=1"]
    argv += [arg for value in overrides for arg in ("--set", value)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((work / "checkpoints").glob("ckpt-*.index"))) < 3:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoints written in time"
        time.sleep(0.05)
    time.sleep(0.3)  # land somewhere inside a step, or inside a checkpoint write
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    resumed = [*argv[:-2], "--set", "training.epochs=3", "--resume"]
    finished = subprocess.run(resumed, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    bundle = Bundle.load(out)
    assert bundle.history[-1]["epoch"] == 3
    assert bundle.history[-1]["step"] == 3 * 6
    assert json.loads((out / "card.json").read_text())["training"]["epochs_done"] == 3


def test_the_bundle_holds_no_optimizer_state(prepared, tmp_path):
    train(
        load_config("configs/tiny.yaml", [*TINY, "training.epochs=1"]),
        prepared,
        tmp_path / "m",
        quiet(),
    )
    with zipfile.ZipFile(tmp_path / "m" / "model.keras") as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")))
        assert "optimizer" not in weights
    assert getattr(Bundle.load(tmp_path / "m").model, "optimizer", None) is None


def test_init_from_starts_the_run_from_a_bundles_weights(prepared, tmp_path):
    from chatbot.training.trainer import Trainer

    config = load_config("configs/tiny.yaml", TINY)
    train(config, prepared, tmp_path / "first", quiet())
    first = Bundle.load(tmp_path / "first")
    trainer = Trainer(config, prepared, tmp_path / "second", quiet(init_from=tmp_path / "first"))
    model, _ = trainer._build()
    for started, trained in zip(model.get_weights(), first.model.get_weights(), strict=True):
        np.testing.assert_array_equal(started, trained)
    train(config, prepared, tmp_path / "second", quiet(init_from=tmp_path / "first"))
    second = Bundle.load(tmp_path / "second")
    assert second.card["training"]["init_from"] == str(tmp_path / "first")
    # two more epochs from trained weights end lower than the first run's two from scratch
    assert second.history[-1]["val_loss"] < first.history[-1]["val_loss"]


def test_init_from_refuses_another_tokenizer_or_architecture(prepared, tmp_path):
    from chatbot.prepare import prepare

    config = load_config("configs/tiny.yaml", TINY)
    train(config, prepared, tmp_path / "first", quiet())
    wider = load_config("configs/tiny.yaml", [*TINY, "model.hidden_size=24"])
    with pytest.raises(ConfigError, match=r"architecture differs.*model\.hidden_size"):
        train(wider, prepared, tmp_path / "wider", quiet(init_from=tmp_path / "first"))
    data = PreparedData.load(prepared)
    other = data.config.model_copy(update={"tokenizer": TokenizerConfig(vocab_size=290)})
    prepare("tsv", [prepared.parent / "pairs.tsv"], tmp_path / "other", other)
    with pytest.raises(ConfigError, match="prepare --tokenizer"):
        train(config, tmp_path / "other", tmp_path / "x", quiet(init_from=tmp_path / "first"))
    assert not (tmp_path / "wider").exists() and not (tmp_path / "x").exists()


def test_a_fresh_run_starts_the_pieces_no_target_holds_low(prepared, tmp_path):
    from chatbot.examples import encode_examples
    from chatbot.shards import target_ids
    from chatbot.training.trainer import Trainer

    config = load_config("configs/tiny.yaml", TINY)
    trainer = Trainer(config, prepared, tmp_path / "model", quiet())
    data = PreparedData.load(prepared)
    seen = target_ids(data.shards("train"))
    targets = encode_examples(data.examples("train"), data.tokenizer).targets
    assert seen.tolist() == sorted({3}.union(*(t.tolist() for t in targets)))
    assert 3 in seen and len(seen) < data.tokenizer.vocab_size - 256  # bytes are never targets
    model, _ = trainer._build(seen)
    biases = model.output_projection.get_weights()[1]
    unseen = np.setdiff1d(np.arange(data.tokenizer.vocab_size), seen)
    assert (biases[unseen] == -10).all() and (biases[seen] == 0).all()


def test_the_bundle_holds_each_pieces_nidf_over_the_training_replies(prepared, tmp_path):
    from chatbot.decoding.specificity import nidf
    from chatbot.examples import encode_examples

    train(load_config("configs/tiny.yaml", TINY), prepared, tmp_path / "model", quiet())
    data = PreparedData.load(prepared)
    targets = encode_examples(data.examples("train"), data.tokenizer).targets
    frequencies = np.zeros(data.tokenizer.vocab_size, np.int64)
    for target in targets:  # brute force: each reply counts once for each id it holds
        for token in set(target.tolist()):
            frequencies[token] += 1
    expected = nidf(frequencies)
    np.testing.assert_array_equal(Bundle.load(tmp_path / "model").nidf, expected)
    assert 0 < expected.max() <= 1 and (expected == 0).any()


def test_the_bundle_holds_the_training_replies_no_held_out_text_is_in(prepared, tmp_path):
    train(load_config("configs/tiny.yaml", TINY), prepared, tmp_path / "model", quiet())
    data = PreparedData.load(prepared)
    held_out = {
        text.lower()
        for example in data.examples("valid")
        for text in (*example.context, example.response)
        if len(text.split()) >= 4
    }

    def repeats_a_trigram(text: str) -> bool:
        words = text.lower().split()
        trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        return len(set(trigrams)) < len(trigrams)

    expected = {
        (example.context[-1], example.response)
        for example in data.examples("train")
        if not repeats_a_trigram(example.response)
        and example.context[-1].lower() not in held_out
        and example.response.lower() not in held_out
    }
    bank = Bundle.load(tmp_path / "model").replies
    assert {(pair.message, pair.reply) for pair in bank.pairs} == expected
    assert len(bank.pairs) == len(expected) > 0
