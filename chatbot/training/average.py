"""`chatbot average`: a bundle whose weights are the mean of its run's last N checkpoints.

Averaging the weights of a run's last checkpoints smooths out the noise of the final steps and
usually lowers validation loss a little at no training cost (Vaswani et al. 2017; OpenNMT's
`average_models`, tensorflow/nmt's `avg_ckpt`). The checkpoints come from the run's work
directory (`MODEL_DIR.work/checkpoints`, as `chatbot train` keeps them; keep enough with
`training.keep_checkpoints`); the new bundle has the same config and tokenizer, and its
card.json records which checkpoints were averaged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from chatbot.bundle import Bundle
from chatbot.errors import BundleError, DataError

_CHECKPOINT = re.compile(r"ckpt-(\d+)\.index")


def run_checkpoints(directory: Path) -> list[Path]:
    """The checkpoints in `directory`, oldest first (as prefixes, without `.index`)."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such checkpoint directory")
    found = [
        (int(match[1]), directory / match[0].removesuffix(".index"))
        for path in directory.iterdir()
        if (match := _CHECKPOINT.fullmatch(path.name))
    ]
    return [path for _, path in sorted(found)]


def average_checkpoints(
    model_dir: str | Path,
    last: int,
    out_dir: str | Path,
    *,
    work_dir: str | Path | None = None,
    overwrite: bool = False,
    float16: bool = False,
) -> dict[str, Any]:
    """Write to `out_dir` the bundle at `model_dir` with the mean weights of the last `last`
    checkpoints of its run (stored as float16 with `float16`); returns what the card records
    of the averaging."""
    if last < 1:
        raise DataError(f"--last must be at least 1, got {last}")
    model_dir = Path(model_dir)
    bundle = Bundle.load(model_dir)
    directory = Path(work_dir or f"{model_dir}.work") / "checkpoints"
    paths = run_checkpoints(directory)[-last:]
    if len(paths) < last:
        raise DataError(
            f"{directory}: holds {len(paths)} checkpoint(s), fewer than the {last} to average "
            "(training.keep_checkpoints sets how many a run keeps)"
        )
    weights = [_model_weights(bundle, path) for path in paths]
    bundle.model.set_weights([np.mean(group, axis=0) for group in zip(*weights, strict=True)])
    averaged = {"checkpoints": [path.name for path in paths], "directory": str(directory)}
    bundle.card = {**bundle.card, "averaged": averaged}
    bundle.save(out_dir, overwrite=overwrite, float16=float16)
    return averaged


def _model_weights(bundle: Bundle, path: Path) -> list[np.ndarray]:
    """The model's weights as the checkpoint at `path` holds them (the run's other state,
    such as the optimizer's, is not read)."""
    try:
        status = tf.train.Checkpoint(model=bundle.model).restore(str(path))
        status.assert_existing_objects_matched().expect_partial()
    except (tf.errors.OpError, ValueError, AssertionError) as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise BundleError(f"{path}: cannot read the checkpoint: {reason}") from None
    return bundle.model.get_weights()
