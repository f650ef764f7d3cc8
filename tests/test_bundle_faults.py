"""Damaged, incompatible and half-written bundles: every fault is a one-line `ChatbotError` that
names the file at fault (never a traceback from deep inside Keras, h5py or SentencePiece), and a
write that runs out of space leaves the bundle that was there intact."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import pytest
import yaml

from chatbot import __version__
from chatbot.atomic import DiskFullError, atomic_write_text
from chatbot.bundle import FORMAT_VERSION, Bundle
from chatbot.cli import main
from chatbot.config import Config, ModelConfig
from chatbot.errors import BundleError, ChatbotError
from chatbot.model.seq2seq import Seq2Seq

BUNDLE_FILES = ("config.yaml", "tokenizer.model", "model.keras", "history.json", "card.json")
# What TensorFlow itself prints on start-up on a machine without a GPU, whatever the log level.
TF_START_UP = re.compile(r"WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} ")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_tokenizer):
    config = ModelConfig(embedding_dim=6, hidden_size=8, attention_units=4)
    model = Seq2Seq(config, tiny_tokenizer.vocab_size)
    model.build()
    path = tmp_path_factory.mktemp("bundles") / "model"
    card = {"chatbot_version": __version__, "metrics": {"val_loss": 1.5}}
    Bundle(Config(), tiny_tokenizer, model, [{"epoch": 1}], card).save(path)
    return path


@pytest.fixture
def copy(bundle, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(bundle, target)
    return target


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(len(data), middle + 16)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_member(archive: Path, member: str, change) -> None:
    """Replace one member of a zip archive, leaving the archive itself well formed."""
    with zipfile.ZipFile(archive) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members[member] = change(members[member])
    with zipfile.ZipFile(archive, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)


def edit_card(path: Path, **changes) -> None:
    card = json.loads((path / "card.json").read_text())
    card.update(changes)
    (path / "card.json").write_text(json.dumps(card))


def load_error(path: Path) -> ChatbotError:
    """The error loading `path` raises, which must be one of the package's own, on one line."""
    with pytest.raises(ChatbotError) as caught:
        Bundle.load(path)
    message = str(caught.value)
    assert "\n" not in message, message
    return caught.value


# ---- damaged files ------------------------------------------------------------------------------

DAMAGE = {
    "truncated": truncate,
    "emptied": lambda path: path.write_bytes(b""),
    "bit-flipped": flip_bytes,
    "missing": Path.unlink,
}
# What the message says about each file, beyond its name (any damage).
PROBLEM = {
    "config.yaml": r"invalid bundle config: ",
    "tokenizer.model": r"not a SentencePiece model",
    "model.keras": r"cannot load the model: (not a \.keras \(zip\) archive|BadZipFile)",
    "history.json": r"unreadable",
    "card.json": r"unreadable",
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_a_damaged_file_is_named_with_its_problem(copy, name, damage):
    DAMAGE[damage](copy / name)
    error = load_error(copy)
    if damage == "missing":
        assert str(error) == f"{copy}: incomplete bundle, missing {name}"
    else:
        assert str(error).startswith(f"{copy / name}: "), error
        assert re.search(PROBLEM[name], str(error)), error


def settings(tree) -> int:
    return sum(map(settings, tree.values())) if isinstance(tree, dict) else 1


@pytest.mark.parametrize("cut", ["decoding:", "  top_p:"])
def test_a_config_cut_at_a_line_end_still_parses_but_is_caught(copy, cut):
    """Cut after a complete line, config.yaml is valid YAML whose missing settings would take
    their defaults: the number of settings card.json records reveals it."""
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(text[: text.index(cut)])
    left = settings(yaml.safe_load((copy / "config.yaml").read_text()))
    error = load_error(copy)
    assert isinstance(error, BundleError)
    assert str(error) == (
        f"{copy / 'config.yaml'}: invalid bundle config: {left} settings where card.json "
        f"records {settings(Config().model_dump(mode='json'))}; the file was cut short or "
        "settings were removed"
    )


def test_edited_config_values_still_load(copy):
    """Changing a bundle's decoding defaults in config.yaml is allowed: only its count of
    settings is recorded, not its checksum."""
    tree = yaml.safe_load((copy / "config.yaml").read_text())
    tree["decoding"].update(strategy="beam", beam_width=3, banned_phrases=["pizza", "pasta"])
    (copy / "config.yaml").write_text(yaml.safe_dump(tree))
    decoding = Bundle.load(copy).config.decoding
    assert decoding.strategy == "beam" and decoding.banned_phrases == ("pizza", "pasta")


def test_damage_that_leaves_files_well_formed_is_caught_by_the_checksums(copy):
    """A changed value in history.json, or a changed member of a well-formed model.keras,
    parses fine; the SHA-256 recorded in card.json catches both."""
    history = copy / "history.json"
    original = history.read_bytes()
    history.write_bytes(original.replace(b'"epoch": 1', b'"epoch": 7'))
    assert str(load_error(copy)) == (
        f"{history}: corrupt: its SHA-256 differs from the one card.json records; the file was "
        "damaged or changed after saving"
    )
    history.write_bytes(original)
    Bundle.load(copy)
    rewrite_member(copy / "model.keras", "metadata.json", lambda data: data.replace(b"{", b"{ "))
    assert str(load_error(copy)).startswith(f"{copy / 'model.keras'}: corrupt: ")


def test_damaged_weights_inside_a_well_formed_archive_are_a_bundle_error(copy):
    """h5py reports garbage in model.weights.h5 with a RuntimeError, not a Keras error."""

    def scramble(data: bytes) -> bytes:
        third = len(data) // 3
        return (
            data[:third] + bytes(b ^ 0xFF for b in data[third : third + 200]) + data[third + 200 :]
        )

    rewrite_member(copy / "model.keras", "model.weights.h5", scramble)
    error = load_error(copy)
    assert isinstance(error, BundleError)
    assert str(error).startswith(f"{copy / 'model.keras'}: cannot load the model: ")


def test_a_yaml_error_in_the_config_is_one_line_with_its_line_number(copy):
    (copy / "config.yaml").write_text("data:\n  history: 2\n  max_source_len [\n")
    error = load_error(copy)
    assert str(error) == (
        f"{copy / 'config.yaml'}: invalid bundle config: line 4: invalid YAML: "
        "could not find expected ':'"
    )


# ---- versions -----------------------------------------------------------------------------------


def test_save_records_the_format_version_and_every_files_checksum(bundle):
    card = json.loads((bundle / "card.json").read_text())
    assert card["format_version"] == FORMAT_VERSION == 1
    assert next(iter(card)) == "format_version"
    files = card["files"]
    assert files.pop("config.yaml") == {"settings": settings(Config().model_dump(mode="json"))}
    assert set(files) == {"tokenizer.model", "model.keras", "history.json"}
    for name, entry in files.items():
        assert entry["bytes"] == (bundle / name).stat().st_size
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
    assert Bundle.load(bundle).card["metrics"] == {"val_loss": 1.5}


def test_a_bundle_from_a_newer_format_is_refused_before_anything_is_parsed(copy):
    """A future bundle may hold config keys or files this version does not know: the version
    check comes first, so the message says to upgrade rather than blame a key."""
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text() + "adapters: {rank: 8}\n")
    edit_card(copy, format_version=FORMAT_VERSION + 1, chatbot_version="9.0.0")
    error = load_error(copy)
    assert isinstance(error, BundleError)
    assert str(error) == (
        f"{copy / 'card.json'}: bundle format_version {FORMAT_VERSION + 1} is newer than this "
        f"chatbot ({__version__}) reads ({FORMAT_VERSION}); it was made by chatbot 9.0.0: "
        "upgrade chatbot to load it"
    )


@pytest.mark.parametrize("version", ["2", 0, True, 1.5])
def test_a_format_version_that_is_not_a_positive_integer_is_refused(copy, version):
    edit_card(copy, format_version=version)
    error = load_error(copy)
    assert str(error) == (
        f"{copy / 'card.json'}: format_version {version!r} is not a positive integer"
    )


def test_an_unknown_config_key_names_the_key_and_the_version_that_wrote_it(copy):
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text() + "adapters: {rank: 8}\n")
    edit_card(copy, chatbot_version="9.0.0")
    error = load_error(copy)
    assert str(error) == (
        f"{copy / 'config.yaml'}: invalid bundle config (made by chatbot 9.0.0; this is "
        f"{__version__}): config: adapters: Extra inputs are not permitted"
    )


def test_a_bundle_from_before_format_versions_still_loads(copy):
    """Bundles written before card.json recorded a format version and checksums are version 1."""
    card = json.loads((copy / "card.json").read_text())
    del card["format_version"], card["files"]
    (copy / "card.json").write_text(json.dumps(card))
    assert Bundle.load(copy).card == card


def test_a_card_that_is_not_an_object_is_named(copy):
    (copy / "card.json").write_text("[1, 2]")
    assert str(load_error(copy)) == f"{copy / 'card.json'}: expected a JSON object"


# ---- disk full ----------------------------------------------------------------------------------


def no_space(path: object = None) -> OSError:
    """The error a write raises on a full disk (os.fsync's names no file)."""
    if path is None:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def raise_(error: BaseException):
    raise error


def fail_writing(monkeypatch, name: str) -> None:
    """Make writing the bundle's file `name` fail as a full disk does."""
    if name in ("config.yaml", "history.json", "card.json"):
        write_text = Path.write_text

        def full_text(self, *args, **kwargs):
            if self.name == name:
                raise no_space(self)
            return write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", full_text)
    elif name == "tokenizer.model":  # its atomic write, the first to fsync, learns it then
        monkeypatch.setattr("os.fsync", lambda fd: raise_(no_space()))
    elif name == "model.keras":
        monkeypatch.setattr(keras.Model, "save", lambda self, path, **kw: raise_(no_space(path)))
    else:  # "rename": moving the finished directory into place needs a directory entry
        replace = Path.replace

        def full_replace(self, target):
            if self.name.endswith(".tmp") and Path(target).name == "model":
                raise no_space(target)
            return replace(self, target)

        monkeypatch.setattr(Path, "replace", full_replace)


WRITE_POINTS = ["config.yaml", "tokenizer.model", "model.keras", "card.json", "rename"]


@pytest.mark.parametrize("point", WRITE_POINTS)
def test_a_full_disk_leaves_the_old_bundle_intact(copy, monkeypatch, point):
    old = Bundle.load(copy)
    before = {name: (copy / name).read_bytes() for name in BUNDLE_FILES}
    fail_writing(monkeypatch, point)
    with pytest.raises(DiskFullError) as caught:
        Bundle(old.config, old.tokenizer, old.model, [{"epoch": 2}], {}).save(copy, overwrite=True)
    message = str(caught.value)
    assert message.startswith(f"{copy}: cannot write, the disk is full (No space left on device")
    assert message.endswith(f"; {copy} is left as it was"), message
    assert isinstance(caught.value, ChatbotError) and caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert {name: (copy / name).read_bytes() for name in BUNDLE_FILES} == before
    assert sorted(p.name for p in copy.parent.iterdir()) == ["model"]  # no temporary left
    assert Bundle.load(copy).history == [{"epoch": 1}]


@pytest.mark.parametrize("point", ["tokenizer.model", "model.keras"])
def test_a_full_disk_creates_no_new_bundle(bundle, tmp_path, monkeypatch, point):
    old = Bundle.load(bundle)
    fail_writing(monkeypatch, point)
    with pytest.raises(DiskFullError, match=r"the disk is full .* was not created$"):
        Bundle(old.config, old.tokenizer, old.model).save(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_on_an_atomic_file_write_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "state.yaml"
    atomic_write_text(path, "good")
    monkeypatch.setattr("os.fsync", lambda fd: raise_(no_space()))
    with pytest.raises(DiskFullError) as caught:
        atomic_write_text(path, "new")
    assert str(caught.value) == (
        f"{path}: cannot write, the disk is full (No space left on device); it is left as it was"
    )
    assert path.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["state.yaml"]


def test_other_write_errors_pass_through_unchanged(copy, monkeypatch):
    fail = OSError(errno.EACCES, "Permission denied", "model.keras")
    monkeypatch.setattr(keras.Model, "save", lambda *a, **k: raise_(fail))
    old = Bundle.load(copy)
    with pytest.raises(PermissionError):
        Bundle(old.config, old.tokenizer, old.model).save(copy, overwrite=True)
    monkeypatch.undo()
    Bundle.load(copy)


# ---- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "damage"),
    [("chat", "weights"), ("evaluate", "config"), ("chat", "newer"), ("evaluate", "tokenizer")],
)
def test_commands_given_a_damaged_bundle_print_one_error_line(copy, capsys, command, damage):
    if damage == "weights":
        rewrite_member(copy / "model.keras", "model.weights.h5", lambda d: d[:100] + d[-100:])
        expected = f"{copy / 'model.keras'}: cannot load the model: "
    elif damage == "config":
        text = (copy / "config.yaml").read_text()
        (copy / "config.yaml").write_text(text[: text.index("training:")])
        expected = f"{copy / 'config.yaml'}: invalid bundle config: "
    elif damage == "newer":
        edit_card(copy, format_version=FORMAT_VERSION + 1)
        expected = f"{copy / 'card.json'}: bundle format_version 2 is newer"
    else:
        truncate(copy / "tokenizer.model")
        expected = f"{copy / 'tokenizer.model'}: not a SentencePiece model"
    argv = [command, "--model", str(copy)]
    if command == "evaluate":
        argv += ["--data", str(copy.parent / "data")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith(f"error: {expected}"), captured.err


def test_the_installed_command_prints_only_the_error_line(copy):
    """The whole of stderr, from the real console script: no traceback, no Keras warnings."""
    truncate(copy / "model.keras")
    script = Path(sys.executable).with_name("chatbot")
    result = subprocess.run(
        [script, "chat", "--model", str(copy)],
        input="Hello\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = [line for line in result.stderr.splitlines() if not TF_START_UP.match(line)]
    assert result.returncode == 1
    assert lines == [
        f"error: {copy / 'model.keras'}: cannot load the model: not a .keras (zip) archive; "
        "truncated or corrupt"
    ], result.stderr
    assert result.stdout == ""


# ---- code in a bundle ---------------------------------------------------------------------------


def test_a_model_carrying_code_is_refused_without_running_it(copy, tmp_path, monkeypatch):
    """Safe mode: a `Lambda` layer's bytecode in model.keras is never deserialized or run, even
    when card.json's checksum has been forged to match."""
    marker = tmp_path / "ran"
    monkeypatch.setenv("CHATBOT_TEST_MARKER", str(marker))
    inputs = keras.Input((3,))
    payload = keras.layers.Lambda(
        lambda x: (
            __import__("pathlib").Path(__import__("os").environ["CHATBOT_TEST_MARKER"]).touch(),
            x,
        )[1]
    )
    keras.Model(inputs, payload(inputs)).save(copy / "model.keras")
    marker.unlink()  # building the model ran it once, here
    card = json.loads((copy / "card.json").read_text())
    card["files"].pop("model.keras")
    (copy / "card.json").write_text(json.dumps(card))
    error = load_error(copy)
    assert isinstance(error, BundleError)
    assert str(copy / "model.keras") in str(error)
    assert not marker.exists()
