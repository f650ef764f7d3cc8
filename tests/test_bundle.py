import shutil

import numpy as np
import pytest

from chatbot.bundle import Bundle
from chatbot.config import Config, ModelConfig, TokenizerConfig
from chatbot.errors import BundleError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import Tokenizer

from .conftest import TINY_CORPUS


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_tokenizer):
    vocab = tiny_tokenizer.vocab_size
    model = Seq2Seq(ModelConfig(embedding_dim=6, hidden_size=8, attention_units=4), vocab)
    model.build()
    path = tmp_path_factory.mktemp("bundles") / "model"
    Bundle(Config(), tiny_tokenizer, model, [{"epoch": 1}], {"metrics": {}}).save(path)
    return path


def copy_of(bundle, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(bundle, target)
    return target


def test_save_and_load_round_trip(bundle, tiny_tokenizer):
    vocab = tiny_tokenizer.vocab_size
    loaded = Bundle.load(bundle)
    assert loaded.config == Config()
    assert loaded.history == [{"epoch": 1}]
    assert loaded.tokenizer.encode(TINY_CORPUS[:3]) == tiny_tokenizer.encode(TINY_CORPUS[:3])
    ids = np.array([[12, 13, 3]], "int32")
    logits = loaded.model({"source_ids": ids, "decoder_input_ids": np.array([[2, 12]], "int32")})
    assert logits.shape == (1, 2, vocab)


def test_missing_file_is_named(bundle, tmp_path):
    path = copy_of(bundle, tmp_path)
    (path / "tokenizer.model").unlink()
    with pytest.raises(BundleError, match=r"model: incomplete bundle, missing tokenizer\.model"):
        Bundle.load(path)


def test_corrupt_model_file_is_named(bundle, tmp_path):
    path = copy_of(bundle, tmp_path)
    (path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BundleError, match=r"model\.keras: cannot load the model"):
        Bundle.load(path)


def test_bad_config_is_named(bundle, tmp_path):
    path = copy_of(bundle, tmp_path)
    (path / "config.yaml").write_text("model:\n  hidden_size: -3\n")
    with pytest.raises(BundleError, match=r"config\.yaml: invalid bundle config: .*hidden_size"):
        Bundle.load(path)


def test_vocabulary_mismatch_is_caught(bundle, tmp_path, tiny_tokenizer):
    path = copy_of(bundle, tmp_path)
    other = Tokenizer.train(TINY_CORPUS, TokenizerConfig(vocab_size=320))
    assert other.vocab_size != tiny_tokenizer.vocab_size
    other.save(path / "tokenizer.model")
    expected = rf"vocabulary of {tiny_tokenizer.vocab_size} does not match .*\(320 pieces\)"
    with pytest.raises(BundleError, match=expected):
        Bundle.load(path)


def test_not_a_directory(tmp_path):
    with pytest.raises(BundleError, match=r"nothing: no such model bundle directory"):
        Bundle.load(tmp_path / "nothing")


def test_a_failed_save_leaves_the_old_bundle(bundle, tmp_path, monkeypatch, tiny_tokenizer):
    path = copy_of(bundle, tmp_path)
    before = sorted(p.name for p in path.iterdir())

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Tokenizer, "save", disk_full)
    loaded = Bundle.load(path)
    with pytest.raises(OSError, match="No space left"):
        Bundle(loaded.config, tiny_tokenizer, loaded.model).save(path, overwrite=True)
    assert sorted(p.name for p in path.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    Bundle.load(path)
