"""`chatbot average`: a bundle whose weights are the mean of its run's last N checkpoints.

Averaging the weights of a run's last checkpoints smooths out the noise of the final steps and
usually lowers validation loss a little at no training cost (Vaswani et al. 2017; OpenNMT's
`average_models`, tensorflow/nmt's `avg_ckpt`). The checkpoints come from the run's work
directory (`MODEL_DIR.work/checkpoints`, as `chatbot train` keeps them; keep enough with
`training.keep_checkpoints`); the new bundle has the same config and tokenizer, and its
card.json records which checkpoints were averaged.

`blend` mixes in another bundle of the same architecture, usually the one the run started
from (`--init-from`): weights (1 - w) * average + w * theirs. Fine-tuning for one objective
(the ranking loss) costs another (perplexity); interpolating the fine-tuned weights with the
starting ones keeps much of the gain for part of the cost (Wortsman et al. 2022, "Robust
fine-tuning of zero-shot models", WiSE-FT).
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
    blend: str | Path | None = None,
    blend_weight: float = 0.5,
) -> dict[str, Any]:
    """Write to `out_dir` the bundle at `model_dir` with the mean weights of the last `last`
    checkpoints of its run (stored as float16 with `float16`), mixed with the bundle at
    `blend` by `blend_weight` when given; returns what the card records of the averaging."""
    if last < 1:
        raise DataError(f"--last must be at least 1, got {last}")
    if not 0.0 <= blend_weight <= 1.0:
        raise DataError(f"--blend-weight must be between 0 and 1, got {blend_weight}")
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
    mean = [np.mean(group, axis=0) for group in zip(*weights, strict=True)]
    averaged: dict[str, Any] = {
        "checkpoints": [path.name for path in paths],
        "directory": str(directory),
    }
    if blend is not None:
        mean = _blended(mean, Bundle.load(blend), blend_weight, Path(blend))
        averaged["blend"] = {"model": str(blend), "weight": blend_weight}
    bundle.model.set_weights(mean)
    bundle.card = {**bundle.card, "averaged": averaged}
    bundle.save(out_dir, overwrite=overwrite, float16=float16)
    return averaged


def _blended(
    weights: list[np.ndarray], other: Bundle, weight: float, where: Path
) -> list[np.ndarray]:
    """(1 - weight) * weights + weight * `other`'s, which must have the same shapes."""
    theirs = other.model.get_weights()
    shapes = [w.shape for w in weights]
    if [w.shape for w in theirs] != shapes:
        raise BundleError(f"{where}: its model's weights differ in shape from the run's")
    return [
        (1.0 - weight) * mine + weight * np.asarray(other_w, np.float32)
        for mine, other_w in zip(weights, theirs, strict=True)
    ]


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
