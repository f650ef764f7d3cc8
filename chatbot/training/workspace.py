"""A run's work directory: the config it runs, which task owns the shared files, where its
checkpoints go, and whether a `--resume` may continue the run with the config it is given.

Under `multi_worker`, every worker has a work directory (several may share one); the chief
writes the shared files (config, checkpoints, logs) and every other worker only its throwaway
checkpoints, as tf.distribute requires. A worker resuming without the saved config (its work
directory is its own) runs the config it is given: the chief checks that one against the saved
config, and a resumable config is then the saved one, whichever worker reads it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import tensorflow as tf
import yaml

from chatbot.atomic import atomic_write_text
from chatbot.config import Config, parse_config, read_yaml
from chatbot.errors import BundleError, ConfigError

log = logging.getLogger(__name__)

# The settings (dotted paths) a resumed run takes from the given config; anything else must
# match the run's. Besides the training schedule's length and checkpoints: the `decoding`
# section, which never affects training, and the tokenizer's sample size, which only bounds
# what a tokenizer is trained on and changes no trained one (its default fell from 2,000,000
# to 300,000 turns).
RESUMABLE_CHANGES = (
    "training.epochs",
    "training.early_stopping_patience",
    "training.checkpoint_every_steps",
    "decoding",
    "data.tokenizer.max_sentences",
)
CONFIG_FILE = "config.yaml"


class Workspace:
    """The work directory of this task of a run."""

    def __init__(self, work_dir: Path, strategy: tf.distribute.Strategy) -> None:
        self.work_dir = work_dir
        resolver = getattr(strategy, "cluster_resolver", None)
        self.is_chief = _is_chief(resolver)
        if self.is_chief:
            self.checkpoint_dir = work_dir / "checkpoints"
        else:
            self.checkpoint_dir = work_dir / f"worker-{resolver.task_type}-{resolver.task_id}"
        self.config_path = work_dir / CONFIG_FILE

    def settle_config(self, config: Config, *, resume: bool, force: bool) -> Config:
        """The config this run uses: the given one for a new run (written to the work
        directory, which is cleared first), the saved one on resume."""
        if resume:
            return self._resumed_config(config)
        if self.checkpoint_dir.exists() and not force:
            raise ConfigError(
                f"{self.work_dir} holds an earlier run: pass --resume to continue it or "
                "--force to start over"
            )
        if self.is_chief and self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        elif not self.is_chief:  # only its own checkpoints: the work dir may be the chief's too
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.is_chief:
            text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
            atomic_write_text(self.config_path, text)
        return config

    def _resumed_config(self, config: Config) -> Config:
        """The saved config with the settings a resumed run may change taken from `config`;
        a `ConfigError` listing any other difference."""
        saved = self.config_path
        if not saved.is_file():
            if not self.is_chief:
                log.info("no %s in %s: resuming with the given config", CONFIG_FILE, self.work_dir)
                return config
            raise BundleError(f"{self.work_dir}: nothing to resume (no {CONFIG_FILE} there)")
        previous = parse_config(Config, read_yaml(saved), where=str(saved))
        given, kept = config.model_dump(mode="json"), previous.model_dump(mode="json")
        for path in RESUMABLE_CHANGES:
            *parents, key = path.split(".")
            into, source = kept, given
            for part in parents:
                into, source = into[part], source[part]
            into[key] = source[key]
        differences = config_differences(kept, given)
        if differences:
            raise ConfigError(
                f"--resume continues the run in {self.work_dir} with its saved config; "
                f"these settings differ: {'; '.join(differences)}"
            )
        return parse_config(Config, kept)


def _is_chief(resolver: Any) -> bool:
    """Whether this task owns the shared files: the `chief` task, or worker 0 when there is
    none (and any task outside a cluster)."""
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def config_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between config trees `a` (the run's) and `b`."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in config_differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix[:-1]} ({b!r} here, {a!r} in the run)"]
