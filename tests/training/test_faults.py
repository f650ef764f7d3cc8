"""Training under faults: killed with SIGKILL at chosen moments, damaged checkpoints and work
dirs, a full disk. A run always resumes to the same end, a half-written checkpoint or bundle is
never visible under its final name, and every failure is one clear line, not a traceback."""

import errno
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from tensorflow.python.ops import gen_io_ops

from chatbot.atomic import DiskFullError
from chatbot.bundle import Bundle
from chatbot.cli import main
from chatbot.config import load_config
from chatbot.training.trainer import Trainer, TrainOptions, train

from .conftest import TINY

# Which moments the kill test picks; set CHATBOT_FAULT_SEED to explore others.
SEED = int(os.environ.get("CHATBOT_FAULT_SEED", "1105"))
ONE_EPOCH = [*TINY, "training.epochs=1"]

# Runs `chatbot train` (the same `main` as the console script) with one library function
# wrapped so that the process kills itself with SIGKILL at the nth occurrence of a moment,
# given as CHATBOT_KILL_AT=moment:n. Test-side only: the package has no hooks for this.
KILLER = r"""
import os, signal, sys

import keras
from tensorflow.python.checkpoint import checkpoint_management
from tensorflow.python.ops import gen_io_ops

from chatbot.cli import main
from chatbot.training import callbacks

moment, _, nth = os.environ["CHATBOT_KILL_AT"].partition(":")
nth, seen = int(nth), 0


def tick():
    global seen
    seen += 1
    if seen == nth:
        print(f"SIGKILL at {moment} #{nth}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def before(owner, name):
    original = getattr(owner, name)

    def hooked(*args, **kwargs):
        tick()
        return original(*args, **kwargs)

    setattr(owner, name, hooked)


class AfterFirstBatch(keras.callbacks.Callback):
    def on_test_batch_end(self, batch, logs=None):
        if batch == 0:
            tick()


if moment == "batch":  # before a training step
    callbacks.StepCounter.on_train_batch_begin = lambda self, batch, logs=None: tick()
elif moment == "merge":  # a checkpoint's tensors are written, its index is not
    before(gen_io_ops, "merge_v2_checkpoints")
elif moment == "record":  # a checkpoint is written, the state file does not list it yet
    before(checkpoint_management, "update_checkpoint_state_internal")
elif moment == "validate":  # halfway through validating
    evaluate = keras.Model.evaluate
    keras.Model.evaluate = lambda self, *args, callbacks=None, **kwargs: evaluate(
        self, *args, callbacks=[*(callbacks or []), AfterFirstBatch()], **kwargs
    )
elif moment == "bundle":  # model.keras is written in the bundle's temporary folder
    save = keras.Model.save
    keras.Model.save = lambda self, *args, **kwargs: (save(self, *args, **kwargs), tick())
sys.exit(main(sys.argv[1:]))
"""


def kill_plan(seed: int) -> list[tuple[str, int]]:
    """One kill per process, in run order: (moment, which occurrence in that process). Every
    choice is reached whatever came before: 6 steps an epoch, a checkpoint every 2 steps (plus
    the epoch's and the best), so a run killed by its 4th checkpoint has 2 validations left."""
    rng = random.Random(seed)
    checkpoint = rng.choice(["merge", "record"])
    return [
        ("batch", rng.randint(1, 6)),  # 1 or 2: before the first checkpoint
        # each checkpoint merges once and writes the state file twice (before and after
        # deleting the oldest)
        (checkpoint, rng.randint(1, 4 if checkpoint == "merge" else 8)),
        ("validate", rng.randint(1, 2)),
        ("bundle", 1),
    ]


def assert_nothing_half_written(out: Path, work: Path) -> None:
    """The bundle is complete or absent, and every checkpoint under its final name is whole:
    each of its tensors reads back and matches its checksum."""
    if out.exists():
        Bundle.load(out)
    for index in work.glob("checkpoints/**/ckpt-*.index"):
        reader = tf.train.load_checkpoint(str(index.with_suffix("")))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)


def test_sigkill_at_chosen_moments_then_resume_finishes(prepared, tmp_path):
    """Kill one run four times, once in each of: a training step, a checkpoint write, a
    validation, the bundle write; then the installed `chatbot train --resume` finishes it with
    every step trained exactly once."""
    out, work = tmp_path / "model", tmp_path / "model.work"
    argv = ["train", "--config", "configs/tiny.yaml", "--data", str(prepared), "--out", str(out)]
    overrides = [*TINY, "training.epochs=3", "training.checkpoint_every_steps=2"]
    argv += [arg for value in overrides for arg in ("--set", value)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    plan = kill_plan(SEED)
    for i, (moment, nth) in enumerate(plan):
        resume = ["--resume"] if i else []
        killed = subprocess.run(
            [sys.executable, "-c", KILLER, *argv, *resume],
            env={**env, "CHATBOT_KILL_AT": f"{moment}:{nth}"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        where = f"seed {SEED}, plan {plan}, kill {i + 1}:\n{killed.stderr}"
        assert killed.returncode == -signal.SIGKILL, where
        assert f"SIGKILL at {moment} #{nth}" in killed.stderr, where
        assert "Traceback" not in killed.stderr, where
        if i:
            assert "resumed from" in killed.stderr or "from the beginning" in killed.stderr, where
        assert not out.exists(), where  # no bundle yet, and never a half-written one
        assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [work.name]
        assert_nothing_half_written(out, work)
    script = Path(sys.executable).with_name("chatbot")
    finished = subprocess.run(
        [script, *argv, "--resume"], env=env, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, f"seed {SEED}, plan {plan}:\n{finished.stderr}"
    bundle = Bundle.load(out)
    assert [record["epoch"] for record in bundle.history] == [1, 2, 3]
    assert bundle.history[-1]["step"] == 3 * 6  # 6 batches an epoch, none trained twice
    assert bundle.card["training"]["epochs_done"] == 3


# ---- damaged checkpoints and work dirs ----------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(prepared, tmp_path_factory) -> Path:
    """A finished one-epoch run: checkpoints ckpt-1 (step 3), ckpt-2 (step 6, the epoch's last
    batch), ckpt-4 (the epoch's end) and best/ckpt-3, and its bundle."""
    root = tmp_path_factory.mktemp("finished")
    train(load_config("configs/tiny.yaml", ONE_EPOCH), prepared, root / "model", quiet())
    names = sorted(p.name for p in (root / "model.work" / "checkpoints").glob("*.index"))
    assert names == ["ckpt-1.index", "ckpt-2.index", "ckpt-4.index"]
    return root


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """A copy of the finished run; returns its bundle path (the work dir is beside it)."""
    for name in ("model", "model.work"):
        shutil.copytree(finished_run / name, tmp_path / name)
    return tmp_path / "model"


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """The training log as `chatbot train` shows it: one line a record, warnings marked."""
    return "\n".join(
        ("warning: " if record.levelno >= logging.WARNING else "") + record.getMessage()
        for record in caplog.records
    )


@pytest.fixture(autouse=True)
def _log_progress(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chatbot.training")


def quiet(**options) -> TrainOptions:
    return TrainOptions(verbose=False, **options)


def checkpoints(out: Path) -> Path:
    return out.with_name(out.name + ".work") / "checkpoints"


def resume(prepared, out: Path, overrides=ONE_EPOCH):
    return train(
        load_config("configs/tiny.yaml", overrides), prepared, out, TrainOptions(resume=True)
    )


def cli_resume(prepared, out: Path, overrides=ONE_EPOCH) -> int:
    argv = ["train", "--config", "configs/tiny.yaml", "--data", str(prepared), "--out", str(out)]
    return main([*argv, *(arg for value in overrides for arg in ("--set", value)), "--resume"])


def error_line(err: str) -> str:
    """The one `error:` line the command printed last, with no traceback before it."""
    lines = err.splitlines()
    assert "Traceback" not in err and [line for line in lines if line.startswith("error:")] == [
        lines[-1]
    ], err
    return lines[-1]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DATA = ".data-00000-of-00001"


@pytest.mark.parametrize(
    ("file", "damage"),
    [(DATA, truncate), (DATA, flip_bytes), (".index", truncate), (".index", Path.unlink)],
    ids=["data-truncated", "data-bit-flipped", "index-truncated", "index-missing"],
)
def test_resume_skips_a_damaged_newest_checkpoint(prepared, run, caplog, file, damage):
    damage(checkpoints(run) / f"ckpt-4{file}")
    report = resume(prepared, run)
    err = logged(caplog)
    assert f"warning: checkpoint {checkpoints(run) / 'ckpt-4'} unusable (" in err
    assert f"resumed from {checkpoints(run) / 'ckpt-2'}: epoch 1, batch 6" in err
    assert report.epochs_done == 1
    assert Bundle.load(run).history[-1]["step"] == 6


@pytest.mark.parametrize("state", ["missing", "garbage", "stale"])
def test_resume_finds_the_checkpoints_on_disk_when_the_state_file_fails(
    prepared, run, caplog, state
):
    """The `checkpoint` file lists the checkpoints; lost, damaged, or written before the newest
    one was recorded (a kill in between), the checkpoints on disk are used."""
    listing = checkpoints(run) / "checkpoint"
    if state == "missing":
        listing.unlink()
    elif state == "garbage":
        listing.write_bytes(b"model_checkpoint_path: \x00\xff{{")
    else:
        listing.write_text(
            'model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n'
        )
    resume(prepared, run)
    assert f"resumed from {checkpoints(run) / 'ckpt-4'}: epoch 2, batch 0" in logged(caplog)
    Bundle.load(run)


def test_resume_before_the_first_checkpoint_starts_from_the_beginning(prepared, tmp_path, caplog):
    """Killed before its first checkpoint (here, while writing it), a run has only its config
    and a temporary folder: --resume starts it over rather than give up."""
    out = tmp_path / "model"
    Trainer(load_config("configs/tiny.yaml", ONE_EPOCH), prepared, out, quiet())
    (checkpoints(out) / "ckpt-1_temp").mkdir(parents=True)
    (checkpoints(out) / "ckpt-1_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"")
    report = resume(prepared, out)
    assert f"warning: no checkpoint in {checkpoints(out)} yet" in logged(caplog)
    assert report.epochs_done == 1 and Bundle.load(out).history[-1]["step"] == 6


def test_every_checkpoint_damaged_is_one_error_line(prepared, run, capsys):
    for data in checkpoints(run).glob(f"ckpt-*{DATA}"):
        data.write_bytes(b"garbage")
    assert cli_resume(prepared, run) == 1
    assert error_line(capsys.readouterr().err) == (
        f"error: {checkpoints(run)}: no usable checkpoint to resume from (ckpt-4, ckpt-2, "
        "ckpt-1 damaged); pass --force instead of --resume to start over"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "training: {epochs: [1\n",
            ":2: invalid YAML: expected ',' or ']', but got '<stream end>'",
        ),
        ("adapters: {rank: 8}\n", ": adapters: Extra inputs are not permitted"),
    ],
    ids=["garbage", "unknown-key"],
)
def test_a_damaged_work_dir_config_is_one_error_line(prepared, run, capsys, text, problem):
    """The config a run keeps in its work dir, cut short or from a newer version."""
    saved = run.with_name("model.work") / "config.yaml"
    saved.write_text(text)
    assert cli_resume(prepared, run) == 1
    assert error_line(capsys.readouterr().err) == f"error: {saved}{problem}"


def test_a_damaged_best_checkpoint_leaves_the_last_weights(prepared, run, caplog):
    (checkpoints(run) / "best" / f"ckpt-3{DATA}").write_bytes(b"garbage")
    resume(prepared, run)
    err = logged(caplog)
    assert f"warning: best checkpoint {checkpoints(run) / 'best' / 'ckpt-3'} unusable (" in err
    assert "the bundle gets the last weights" in err
    bundle = Bundle.load(run)
    assert bundle.card["metrics"] == bundle.history[-1]


# ---- disk full ----------------------------------------------------------------------------------


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_checkpoints(
    prepared, run, capsys, monkeypatch
):
    """TensorFlow reports a full disk as a ResourceExhaustedError naming its temporary file.
    The run stops with one line; the checkpoints and the bundle already there stay usable, and
    --resume finishes once there is room."""
    merge, calls = gen_io_ops.merge_v2_checkpoints, []

    def full_disk(prefixes, prefix, **kwargs):
        calls.append(prefix)
        if len(calls) == 2:  # the second checkpoint of epoch 2, after its 6th step
            name = prefix.numpy().decode() if hasattr(prefix, "numpy") else str(prefix)
            temporary = f"{name}_temp/part-00000-of-00001{DATA}.tempstate1"
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{temporary}; {os.strerror(errno.ENOSPC)}"
            )
        return merge(prefixes, prefix, **kwargs)

    monkeypatch.setattr(gen_io_ops, "merge_v2_checkpoints", full_disk)
    bundle_before = {p.name: p.read_bytes() for p in run.iterdir()}
    two_epochs = [*TINY, "training.epochs=2"]
    assert cli_resume(prepared, run, two_epochs) == 1
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {checkpoints(run)}: cannot save a checkpoint, the disk is full")
    assert "No space left on device); the checkpoints already there are intact: free some " in line
    assert line.endswith("space, then run again with --resume")
    monkeypatch.undo()
    assert_nothing_half_written(run, run.with_name("model.work"))
    assert {p.name: p.read_bytes() for p in run.iterdir()} == bundle_before
    assert Bundle.load(run).history[-1]["epoch"] == 1
    assert resume(prepared, run, two_epochs).epochs_done == 2
    history = Bundle.load(run).history
    assert [record["epoch"] for record in history] == [1, 2] and history[-1]["step"] == 12


def test_a_full_disk_writing_the_bundle_keeps_the_old_one(prepared, run, monkeypatch):
    def full_disk(self, path, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(keras.Model, "save", full_disk)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(DiskFullError) as caught:
        resume(prepared, run, [*TINY, "training.epochs=1"])
    message = str(caught.value)
    assert message.startswith(f"{run}: cannot write, the disk is full (No space left on device: ")
    assert message.endswith(
        f"; {run} is left as it was; the run's checkpoints are intact: free some space, then "
        "run again with --resume to write it"
    )
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["model", "model.work"]
    resume(prepared, run)
    assert Bundle.load(run).card["training"]["epochs_done"] == 1


def test_an_os_error_is_one_error_line(prepared, tmp_path, capsys):
    """What the system refuses (here a folder inside a file) is a line too, not a traceback."""
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "model"
    argv = ["train", "--config", "configs/tiny.yaml", "--data", str(prepared), "--out", str(out)]
    assert main(argv) == 1
    assert error_line(capsys.readouterr().err) == (
        f"error: [Errno 20] Not a directory: '{tmp_path / 'file' / 'model.work'}'"
    )
