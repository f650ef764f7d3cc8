"""The run's state and its checkpoints: save, find, repair and restore.

Everything a resumed run needs (model, optimizer, epoch, position in the epoch, early-stopping
state and history) is one `tf.train.Checkpoint`, committed atomically by TensorFlow. A damaged
checkpoint is skipped for the one before it, a lost or unreadable state file is set aside and
the checkpoints on disk are found without it, and a write that fails (a full disk) is an error
that names the folder, leaving the checkpoints already there intact.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from chatbot.atomic import DISK_FULL, DiskFullError
from chatbot.errors import BundleError, ChatbotError
from chatbot.model.seq2seq import Seq2Seq

log = logging.getLogger(__name__)

# What restoring a damaged checkpoint raises (TensorFlow reports a bad file with all of these).
RESTORE_ERRORS = (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError)
RESUME_HINT = "free some space, then run again with --resume"


class RunState:
    """The state of one training run: everything a checkpoint restores. Plain host variables
    that every worker computes alike (MultiWorkerMirroredStrategy could not mirror the history,
    a string), so they are created outside the strategy's scope."""

    def __init__(self, model: Seq2Seq, optimizer: keras.optimizers.Optimizer) -> None:
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.history = tf.Variable("[]", dtype=tf.string, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            epoch=self.epoch,
            position=self.position,
            best_loss=self.best_loss,
            bad_epochs=self.bad_epochs,
            history=self.history,
        )

    def history_list(self) -> list[dict[str, Any]]:
        return json.loads(self.history.numpy().decode("utf-8"))

    def append_history(self, record: dict[str, Any]) -> None:
        self.history.assign(json.dumps([*self.history_list(), record]))


class Checkpoints:
    """The run's checkpoints in `directory` (the newest `keep`) and its best one in `best/`."""

    def __init__(self, state: RunState, directory: Path, keep: int) -> None:
        self.state = state
        self.directory = directory
        self.latest = open_manager(state.checkpoint, directory, keep)
        self.best = open_manager(state.checkpoint, directory / "best", 1)

    def save(self) -> None:
        _save(self.latest)

    def save_best(self) -> None:
        _save(self.best)

    def restore_latest(self) -> None:
        """Restore the newest checkpoint that loads; fall back to older ones if it is damaged.
        With none at all (the run stopped before its first), start from the beginning."""
        candidates = self.on_disk()
        if not candidates:
            log.warning(
                "no checkpoint in %s yet; starting the run from the beginning", self.directory
            )
            return
        for path in candidates:
            try:
                self.state.checkpoint.restore(path).assert_existing_objects_matched()
            except RESTORE_ERRORS as error:
                log.warning(
                    "checkpoint %s unusable (%s); trying an older one", path, first_line(error)
                )
                continue
            epoch, position = int(self.state.epoch.numpy()), int(self.state.position.numpy())
            log.info("resumed from %s: epoch %d, batch %d", path, epoch + 1, position)
            return
        names = ", ".join(Path(path).name for path in candidates)
        raise BundleError(
            f"{self.directory}: no usable checkpoint to resume from ({names} damaged); "
            "pass --force instead of --resume to start over"
        )

    def restore_best(self, model: Seq2Seq) -> bool:
        """Load the best checkpoint's weights into `model`; False (weights unchanged) if there
        is none or it is damaged."""
        path = self.best.latest_checkpoint
        if not path:
            return False
        weights = model.get_weights()
        try:
            tf.train.Checkpoint(model=model).restore(path).expect_partial()
        except RESTORE_ERRORS as error:
            model.set_weights(weights)
            log.warning(
                "best checkpoint %s unusable (%s); the bundle gets the last weights",
                path,
                first_line(error),
            )
            return False
        return True

    def on_disk(self) -> list[str]:
        """Checkpoint prefixes, newest first: the manager's, and any on disk that its state file
        does not list (the file is lost or damaged, or the run was killed before recording it);
        restoring skips a damaged one like any other."""
        found = {
            int(index.stem.split("-")[1]): str(index.with_suffix(""))
            for index in self.directory.glob("ckpt-*.index")
            if index.stem.split("-")[1].isdigit()
        }
        found.update((int(path.rsplit("-", 1)[1]), path) for path in self.latest.checkpoints)
        return [found[number] for number in sorted(found, reverse=True)]


def open_manager(
    checkpoint: tf.train.Checkpoint, directory: Path, keep: int
) -> tf.train.CheckpointManager:
    """A CheckpointManager over `directory`. TensorFlow skips a state file it cannot parse but
    fails on one that is not even text: that one is set aside (resuming finds the checkpoints
    on disk)."""
    try:
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep)
    except UnicodeDecodeError:
        state = directory / "checkpoint"
        state.replace(state.with_name("checkpoint.damaged"))
        log.warning("%s is damaged; set it aside as checkpoint.damaged", state)
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep)


def _save(manager: tf.train.CheckpointManager) -> None:
    """Save a checkpoint; a failed write is a `ChatbotError` naming the folder (TensorFlow
    writes only complete checkpoints, so the ones already there stay usable)."""
    try:
        manager.save()
    except (tf.errors.OpError, OSError) as error:
        raise write_error(Path(manager.directory), error) from None


def first_line(error: BaseException) -> str:
    """An error's message for one line, without TensorFlow's `{{function_node ...}}` and
    `[Op:...]` decorations."""
    text = str(getattr(error, "message", None) or error).strip()
    text = re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]$", "", text.splitlines()[0] if text else "")
    return text or type(error).__name__


def write_error(directory: Path, error: BaseException) -> ChatbotError:
    """A failed checkpoint write as an error naming `directory`, saying so if the disk is full
    (TensorFlow reports that as a ResourceExhaustedError whose message is strerror's)."""
    reason = first_line(error)
    if getattr(error, "errno", None) in DISK_FULL or os.strerror(errno.ENOSPC) in reason:
        return DiskFullError(
            errno.ENOSPC,
            f"{directory}: cannot save a checkpoint, the disk is full ({reason}); the "
            f"checkpoints already there are intact: {RESUME_HINT}",
            str(directory),
        )
    return BundleError(f"{directory}: cannot save a checkpoint: {reason}")
