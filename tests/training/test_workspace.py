"""A run's work directory, for the chief and for other workers of a `multi_worker` run, with
the cluster given by a stand-in resolver (no processes are started)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import tensorflow as tf

from chatbot.config import load_config
from chatbot.errors import BundleError, ConfigError
from chatbot.training.workspace import Workspace, config_differences

from .conftest import TINY


def worker(index: int) -> SimpleNamespace:
    """A strategy whose cluster has two workers and no chief, seen from worker `index`."""
    spec = {"worker": ["localhost:1", "localhost:2"]}
    resolver = SimpleNamespace(
        task_type="worker",
        task_id=index,
        cluster_spec=lambda: SimpleNamespace(as_dict=lambda: spec),
    )
    return SimpleNamespace(cluster_resolver=resolver)


def config(*changes: str):
    return load_config("configs/tiny.yaml", [*TINY, *changes])


def test_the_chief_owns_the_config_and_the_shared_checkpoints(tmp_path: Path):
    for strategy in (tf.distribute.get_strategy(), worker(0)):
        workspace = Workspace(tmp_path / "work", strategy)
        assert workspace.is_chief and workspace.checkpoint_dir == tmp_path / "work" / "checkpoints"
        workspace.settle_config(config(), resume=False, force=True)
        assert workspace.config_path.is_file()


def test_another_worker_keeps_its_own_checkpoints_and_writes_no_config(tmp_path: Path):
    workspace = Workspace(tmp_path / "work-1", worker(1))
    assert not workspace.is_chief
    assert workspace.checkpoint_dir == tmp_path / "work-1" / "worker-worker-1"
    workspace.settle_config(config(), resume=False, force=False)
    assert not (tmp_path / "work-1" / "config.yaml").exists()


def test_another_worker_resumes_in_its_own_work_dir_with_the_given_config(tmp_path: Path):
    """Only the chief writes config.yaml, so a worker with a work dir of its own has none."""
    workspace = Workspace(tmp_path / "work-1", worker(1))
    workspace.settle_config(config(), resume=False, force=False)
    given = config("training.epochs=3")
    assert workspace.settle_config(given, resume=True, force=False) == given


def test_a_worker_sharing_the_chiefs_work_dir_resumes_with_the_saved_config(tmp_path: Path):
    Workspace(tmp_path / "work", worker(0)).settle_config(config(), resume=False, force=False)
    other = Workspace(tmp_path / "work", worker(1))
    with pytest.raises(ConfigError, match=r"model\.hidden_size"):
        other.settle_config(config("model.hidden_size=32"), resume=True, force=False)


def test_the_chief_cannot_resume_without_a_saved_config(tmp_path: Path):
    with pytest.raises(BundleError, match="nothing to resume"):
        Workspace(tmp_path / "work", worker(0)).settle_config(config(), resume=True, force=False)


def test_resume_accepts_resumable_changes_and_a_new_decoding_section(tmp_path: Path):
    workspace = Workspace(tmp_path / "work", tf.distribute.get_strategy())
    workspace.settle_config(config(), resume=False, force=False)
    changed = config(
        "training.epochs=5", "decoding.strategy=beam", "data.tokenizer.max_sentences=1000"
    )
    assert workspace.settle_config(changed, resume=True, force=False) == changed


def test_an_earlier_run_needs_resume_or_force(tmp_path: Path):
    workspace = Workspace(tmp_path / "work", tf.distribute.get_strategy())
    workspace.settle_config(config(), resume=False, force=False)
    workspace.checkpoint_dir.mkdir()
    with pytest.raises(ConfigError, match="--resume to continue it or --force"):
        workspace.settle_config(config(), resume=False, force=False)
    workspace.settle_config(config(), resume=False, force=True)
    assert not workspace.checkpoint_dir.exists()


def test_config_differences_name_the_dotted_keys():
    run = {"model": {"cell": "gru", "size": 8}, "seed": 1}
    here = {"model": {"cell": "lstm", "size": 8}, "seed": 1}
    assert config_differences(run, here) == ["model.cell ('lstm' here, 'gru' in the run)"]
