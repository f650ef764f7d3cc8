import json
import shutil

import numpy as np
import pytest

from chatbot.bundle import Bundle, add_reply_bank
from chatbot.config import Config, ModelConfig, TokenizerConfig
from chatbot.errors import BundleError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.retrieval import Pair, ReplyBank
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


@pytest.fixture(scope="module")
def nidf_bundle(bundle, tmp_path_factory, tiny_tokenizer):
    loaded = Bundle.load(bundle)
    loaded.nidf = np.linspace(0.0, 1.0, tiny_tokenizer.vocab_size, dtype=np.float32)
    return loaded.save(tmp_path_factory.mktemp("nidf") / "model")


def test_the_nidf_vector_round_trips_and_is_checksummed(nidf_bundle, tiny_tokenizer):
    loaded = Bundle.load(nidf_bundle)
    expected = np.linspace(0.0, 1.0, tiny_tokenizer.vocab_size, dtype=np.float32)
    np.testing.assert_array_equal(loaded.nidf, expected)
    assert set(loaded.card["files"]["nidf.npy"]) == {"bytes", "sha256"}
    assert Bundle.load(loaded.save(nidf_bundle.parent / "again")).nidf is not None


def test_a_bundle_without_nidf_loads_with_none(bundle):
    assert Bundle.load(bundle).nidf is None


def test_a_missing_nidf_file_the_card_records_is_named(nidf_bundle, tmp_path):
    path = copy_of(nidf_bundle, tmp_path)
    (path / "nidf.npy").unlink()
    with pytest.raises(BundleError, match=r"model: incomplete bundle, missing nidf\.npy"):
        Bundle.load(path)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (np.zeros(3, np.float32), r"nidf\.npy: expected \d+ floats in \[0, 1\].*shape \(3,\)"),
        (None, r"nidf\.npy: expected \d+ floats in \[0, 1\]"),  # out of range
        (b"not numpy", r"nidf\.npy: not a NumPy array file"),
    ],
)
def test_a_bad_nidf_file_is_named(nidf_bundle, tmp_path, tiny_tokenizer, values, problem):
    path = copy_of(nidf_bundle, tmp_path)
    if isinstance(values, bytes):
        (path / "nidf.npy").write_bytes(values)
    else:
        if values is None:
            values = np.full(tiny_tokenizer.vocab_size, 2.0, np.float32)
        np.save(path / "nidf.npy", values)
    card = json.loads((path / "card.json").read_text())
    del card["files"]["nidf.npy"]  # so the content check, not the checksum, answers
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match=problem):
        Bundle.load(path)


def test_a_changed_nidf_file_fails_its_checksum(nidf_bundle, tmp_path, tiny_tokenizer):
    path = copy_of(nidf_bundle, tmp_path)
    np.save(path / "nidf.npy", np.zeros(tiny_tokenizer.vocab_size, np.float32))
    with pytest.raises(BundleError, match=r"nidf\.npy: corrupt"):
        Bundle.load(path)


BANK = ReplyBank([Pair("hello there", "hi!"), Pair("how much is it", "forty dollars.")])


@pytest.fixture(scope="module")
def bank_bundle(bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "model"
    shutil.copytree(bundle, path)
    (path / "backward").mkdir()  # stands for a backward model: adding a bank leaves it be
    add_reply_bank(path, BANK)
    return path


def test_a_reply_bank_added_to_a_bundle_loads_and_is_checksummed(bank_bundle):
    loaded = Bundle.load(bank_bundle)
    assert loaded.replies.pairs == BANK.pairs
    assert set(loaded.card["files"]["replies.jsonl.gz"]) == {"bytes", "sha256"}
    assert (bank_bundle / "backward").is_dir()
    assert Bundle.load(loaded.save(bank_bundle.parent / "again")).replies.pairs == BANK.pairs


def test_a_bundle_without_a_reply_bank_loads_with_none(bundle):
    assert Bundle.load(bundle).replies is None


def test_a_missing_reply_bank_the_card_records_is_named(bank_bundle, tmp_path):
    path = copy_of(bank_bundle, tmp_path)
    (path / "replies.jsonl.gz").unlink()
    with pytest.raises(BundleError, match=r"model: incomplete bundle, missing replies\.jsonl"):
        Bundle.load(path)


def test_a_changed_reply_bank_fails_its_checksum(bank_bundle, tmp_path):
    path = copy_of(bank_bundle, tmp_path)
    (path / "replies.jsonl.gz").write_bytes(ReplyBank([Pair("a", "b")]).to_bytes())
    with pytest.raises(BundleError, match=r"replies\.jsonl\.gz: corrupt"):
        Bundle.load(path)
