import numpy as np
import pytest
import tensorflow as tf

from chatbot.bot import Chatbot
from chatbot.bundle import Bundle
from chatbot.cli import main
from chatbot.config import load_config
from chatbot.errors import DataError
from chatbot.training.average import average_checkpoints, run_checkpoints
from chatbot.training.trainer import TrainOptions, train

from .conftest import TINY


@pytest.fixture(scope="module")
def run(prepared, tmp_path_factory):
    """A tiny run that keeps its last four checkpoints (12 steps, one every 3)."""
    out = tmp_path_factory.mktemp("average") / "model"
    config = load_config("configs/tiny.yaml", [*TINY, "training.keep_checkpoints=4"])
    train(config, prepared, out, TrainOptions(verbose=False))
    return out


def _checkpoint_weights(model_dir, path):
    bundle = Bundle.load(model_dir)
    tf.train.Checkpoint(model=bundle.model).restore(str(path)).expect_partial()
    return bundle.model.get_weights()


def test_the_average_is_the_mean_of_the_last_checkpoints(run, tmp_path):
    paths = run_checkpoints(run.parent / "model.work" / "checkpoints")
    assert len(paths) == 4 and [p.name for p in paths] == sorted(
        (p.name for p in paths), key=lambda name: int(name.split("-")[1])
    )
    averaged = average_checkpoints(run, 3, tmp_path / "avg")
    assert averaged["checkpoints"] == [p.name for p in paths[-3:]]
    expected = [
        np.mean(group, axis=0)
        for group in zip(*(_checkpoint_weights(run, p) for p in paths[-3:]), strict=True)
    ]
    bundle = Bundle.load(tmp_path / "avg")
    for got, want in zip(bundle.model.get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert bundle.card["averaged"]["checkpoints"] == averaged["checkpoints"]
    assert bundle.config == Bundle.load(run).config
    assert Chatbot.load(tmp_path / "avg").reply("red cat", max_length=4).text is not None


def test_averaging_one_checkpoint_restores_it(run, tmp_path):
    last = run_checkpoints(run.parent / "model.work" / "checkpoints")[-1]
    average_checkpoints(run, 1, tmp_path / "one")
    for got, want in zip(
        Bundle.load(tmp_path / "one").model.get_weights(),
        _checkpoint_weights(run, last),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


def test_too_few_checkpoints_or_none_is_a_clear_error(run, tmp_path, capsys):
    with pytest.raises(DataError, match=r"holds 4 checkpoint\(s\), fewer than the 9 to average"):
        average_checkpoints(run, 9, tmp_path / "avg")
    with pytest.raises(DataError, match="no such checkpoint directory"):
        average_checkpoints(run, 2, tmp_path / "avg", work_dir=tmp_path / "nowhere")
    assert not (tmp_path / "avg").exists()
    code = main(["average", "--model", str(run), "--last", "0", "--out", str(tmp_path / "x")])
    assert code == 1 and "--last must be at least 1" in capsys.readouterr().err


def test_the_cli_writes_the_bundle(run, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["average", "--model", str(run), "--last", "2", "--out", str(out)]) == 0
    assert "Averaged ckpt-" in capsys.readouterr().out
    assert len(Bundle.load(out).card["averaged"]["checkpoints"]) == 2


def test_float16_storage_halves_the_weights_and_loads_them_as_float32(run, tmp_path):
    full = average_checkpoints(run, 2, tmp_path / "full")
    half = average_checkpoints(run, 2, tmp_path / "half", float16=True)
    assert half == full
    full_bundle, half_bundle = Bundle.load(tmp_path / "full"), Bundle.load(tmp_path / "half")
    assert (full_bundle.card["weights_dtype"], half_bundle.card["weights_dtype"]) == (
        "float32",
        "float16",
    )
    for got, want in zip(
        half_bundle.model.get_weights(), full_bundle.model.get_weights(), strict=True
    ):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))
    full_size = (tmp_path / "full" / "model.keras").stat().st_size
    half_size = (tmp_path / "half" / "model.keras").stat().st_size
    weight_bytes = sum(w.nbytes for w in full_bundle.model.get_weights())
    assert (
        full_size - half_size >= 0.45 * weight_bytes
    )  # two bytes a weight saved, less h5 overhead
    assert Chatbot.load(tmp_path / "half").reply("red cat", max_length=4).text is not None


def test_blending_mixes_in_another_bundles_weights(run, tmp_path, capsys):
    average_checkpoints(run, 1, tmp_path / "last")
    average_checkpoints(run, 3, tmp_path / "three")
    out = ["--out", str(tmp_path / "mix")]
    blend = ["--blend", str(tmp_path / "three"), "--blend-weight", "0.25"]
    code = main(["average", "--model", str(run), "--last", "1", *out, *blend])
    assert code == 0 and "blended 0.25 with" in capsys.readouterr().out
    mixed = Bundle.load(tmp_path / "mix")
    last, three = (Bundle.load(tmp_path / n).model.get_weights() for n in ("last", "three"))
    for got, a, b in zip(mixed.model.get_weights(), last, three, strict=True):
        np.testing.assert_allclose(got, 0.75 * a + 0.25 * b, rtol=1e-6, atol=1e-7)
    assert mixed.card["averaged"]["blend"] == {"model": str(tmp_path / "three"), "weight": 0.25}
    with pytest.raises(DataError, match="--blend-weight must be between 0 and 1"):
        average_checkpoints(run, 1, tmp_path / "bad", blend=tmp_path / "three", blend_weight=2)
