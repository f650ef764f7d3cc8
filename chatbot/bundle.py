"""A trained model bundle: everything needed to rebuild the model and talk to it, in one folder.

    MODEL_DIR/
      config.yaml      the whole config tree (data, model, training) the model was made with
      tokenizer.model  the SentencePiece model (text normalization settings are in config.yaml)
      model.keras      Keras' native archive: architecture and weights, loaded in safe mode
      history.json     per-epoch training metrics
      nidf.npy         each piece's specificity over the training replies, for NIDF-weighted
                       decoding (`chatbot.decoding.specificity`); bundles trained before it
                       existed have none
      replies.jsonl.gz the reply bank (`chatbot.retrieval`): the training replies by the
                       messages they answered, for `decoding.reply_source`; optional
      card.json        data statistics, final metrics, the command that made it, versions,
                       the bundle's format_version, and under `files` the size and SHA-256 of
                       tokenizer.model, model.keras, history.json, nidf.npy and
                       replies.jsonl.gz and how many settings config.yaml holds (its values,
                       the decoding defaults say, may be edited)

The folder is written under a temporary name and renamed into place, so a crash never leaves a
bundle that looks complete. Loading refuses a format_version newer than this code reads, checks
every file and names the one at fault, and compares each with what card.json records, so damage
that still parses is caught too: a config.yaml cut at a line end, whose missing settings would
silently take their defaults, or a changed byte in a well-formed model archive.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import yaml

from chatbot import __version__
from chatbot.atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from chatbot.config import Config, parse_config
from chatbot.errors import BundleError, ChatbotError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.retrieval import ReplyBank
from chatbot.tokenizer import TOKENIZER_FILE, Tokenizer
from chatbot.yaml_errors import yaml_problem

CONFIG = "config.yaml"
TOKENIZER = TOKENIZER_FILE
MODEL = "model.keras"
HISTORY = "history.json"
CARD = "card.json"
NIDF = "nidf.npy"  # optional
REPLIES = "replies.jsonl.gz"  # optional
WEIGHTS = "model.weights.h5"  # inside model.keras
FILES = (CONFIG, TOKENIZER, MODEL, HISTORY, CARD)
# The bundle layout's version, recorded in card.json; bump it when older code could not load a
# new bundle. Bundles from before it was recorded are version 1.
FORMAT_VERSION = 1
CHECKSUMMED = (TOKENIZER, MODEL, HISTORY)
OPTIONAL = (NIDF, REPLIES)


@dataclass
class Bundle:
    config: Config
    tokenizer: Tokenizer
    model: Seq2Seq
    history: list[dict[str, Any]] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)
    nidf: np.ndarray | None = None  # float32 [V]: see chatbot.decoding.specificity
    replies: ReplyBank | None = None  # see chatbot.retrieval

    def save(self, path: str | Path, *, overwrite: bool = False, float16: bool = False) -> Path:
        """Write the bundle to `path`; with `float16`, model.keras stores its weights at half
        precision (half the size; Keras loads them into the model's float32 variables)."""
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            tree = self.config.model_dump(mode="json")
            (tmp / CONFIG).write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
            self.tokenizer.save(tmp / TOKENIZER)
            _without_optimizer(self.model).save(tmp / MODEL)
            if float16:
                _store_float16(tmp / MODEL)
            (tmp / HISTORY).write_text(json.dumps(self.history, indent=2) + "\n", "utf-8")
            names = list(CHECKSUMMED)
            if self.nidf is not None:
                np.save(tmp / NIDF, np.asarray(self.nidf, np.float32), allow_pickle=False)
                names.append(NIDF)
            if self.replies is not None:
                (tmp / REPLIES).write_bytes(self.replies.to_bytes())
                names.append(REPLIES)
            files = {name: _fingerprint(tmp / name) for name in names}
            files[CONFIG] = {"settings": _count_settings(tree)}
            card = {"format_version": FORMAT_VERSION, **self.card}
            card.update(format_version=FORMAT_VERSION, files=files)
            card["weights_dtype"] = "float16" if float16 else "float32"
            (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n", "utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: no such model bundle directory")
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            raise BundleError(f"{path}: incomplete bundle, missing {', '.join(missing)}")
        card = _read_card(path / CARD)
        config = _read_config(path / CONFIG, card)
        tokenizer = Tokenizer.load(path / TOKENIZER)
        model = _load_model(path / MODEL)
        if model.vocab_size != tokenizer.vocab_size:
            raise BundleError(
                f"{path / MODEL}: vocabulary of {model.vocab_size} does not match "
                f"{path / TOKENIZER} ({tokenizer.vocab_size} pieces)"
            )
        history = _read_json(path / HISTORY)
        _verify_files(path, card)
        nidf = _read_nidf(path / NIDF, tokenizer.vocab_size, card)
        replies = _read_replies(path / REPLIES, card)
        return cls(config, tokenizer, model, history, card, nidf, replies)


def read_config(path: str | Path) -> Config:
    """The config of the bundle at `path`, checked against its card, without its model."""
    path = Path(path)
    return _read_config(path / CONFIG, _read_card(path / CARD))


def add_reply_bank(path: str | Path, bank: ReplyBank, source: dict[str, Any] | None = None) -> Path:
    """Write `bank` into the bundle at `path` (replacing any it has) and record it in its
    card.json, with what it was built from (`source`, under `reply_bank`); the rest of the
    bundle, a backward/ folder included, is left as it is."""
    path = Path(path)
    card = _read_card(path / CARD)
    atomic_write_bytes(path / REPLIES, bank.to_bytes())
    card.setdefault("files", {})[REPLIES] = _fingerprint(path / REPLIES)
    card["reply_bank"] = {"pairs": len(bank), **(source or {})}
    atomic_write_text(path / CARD, json.dumps(card, indent=2) + "\n")
    return path / REPLIES


def _without_optimizer(model: Seq2Seq) -> Seq2Seq:
    """The model alone: a compiled model would also save its optimizer's state (twice its own
    size for Adam), which a bundle for chatting and serving has no use for."""
    if getattr(model, "optimizer", None) is None:
        return model
    clean = Seq2Seq(model.model_config, model.vocab_size, name=model.name)
    clean.build()
    clean.set_weights(model.get_weights())
    return clean


def _store_float16(path: Path) -> None:
    """Rewrite the .keras archive at `path` with its float32 weights stored as float16. The
    archive keeps Keras' layout, so it loads as any other in safe mode."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    weights = io.BytesIO(members[WEIGHTS])
    halved = io.BytesIO()
    with h5py.File(weights, "r") as source, h5py.File(halved, "w") as target:
        _copy_attributes(source, target)
        source.visititems(functools.partial(_copy_halved, target))
    members[WEIGHTS] = halved.getvalue()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _copy_halved(target: h5py.File, name: str, item: h5py.Group | h5py.Dataset) -> None:
    if isinstance(item, h5py.Dataset):
        data = item[()]
        target.create_dataset(
            name, data=data.astype(np.float16) if data.dtype == np.float32 else data
        )
    else:
        target.require_group(name)
    _copy_attributes(item, target[name])


def _copy_attributes(source: h5py.HLObject, target: h5py.HLObject) -> None:
    for key, value in source.attrs.items():
        target.attrs[key] = value


def _load_model(path: Path) -> Seq2Seq:
    if not zipfile.is_zipfile(path):
        raise BundleError(
            f"{path}: cannot load the model: not a .keras (zip) archive; truncated or corrupt"
        )
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # zipfile, h5py and Keras report damage with many types
        reason = (str(error).strip().splitlines() or [""])[0]
        raise BundleError(
            f"{path}: cannot load the model: {type(error).__name__}: {reason}"
        ) from None
    if not isinstance(model, Seq2Seq):
        raise BundleError(f"{path}: holds a {type(model).__name__}, not a Seq2Seq model")
    return model


def _read_config(path: Path, card: dict[str, Any]) -> Config:
    """config.yaml, or a one-line error naming it (and the chatbot version that wrote it). With
    fewer settings than card.json records, it was cut short: the missing ones would silently
    take their defaults."""
    try:
        tree = yaml.safe_load(path.read_text("utf-8"))
        config = parse_config(Config, tree)
    except yaml.YAMLError as error:
        line, what = yaml_problem(error)
        problem = f"{f'line {line}: ' if line is not None else ''}invalid YAML: {what}"
    except (ChatbotError, UnicodeDecodeError) as error:
        problem = "; ".join(str(error).splitlines())
    else:
        recorded = card.get("files", {}).get(CONFIG)
        expected = recorded.get("settings") if isinstance(recorded, dict) else None
        found = _count_settings(tree)
        if not isinstance(expected, int) or found >= expected:
            return config
        problem = (
            f"{found} settings where {CARD} records {expected}; the file was cut short or "
            "settings were removed"
        )
    made_by = card.get("chatbot_version", __version__)
    hint = f" (made by chatbot {made_by}; this is {__version__})" if made_by != __version__ else ""
    raise BundleError(f"{path}: invalid bundle config{hint}: {problem}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path}: unreadable: {error}") from None


def _read_card(path: Path) -> dict[str, Any]:
    """card.json, once its format_version is one this code reads."""
    card = _read_json(path)
    if not isinstance(card, dict):
        raise BundleError(f"{path}: expected a JSON object")
    version = card.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{path}: format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        made_by = card.get("chatbot_version", "a newer version")
        raise BundleError(
            f"{path}: bundle format_version {version} is newer than this chatbot "
            f"({__version__}) reads ({FORMAT_VERSION}); it was made by chatbot {made_by}: "
            "upgrade chatbot to load it"
        )
    if not isinstance(card.get("files", {}), dict):
        raise BundleError(f"{path}: 'files' is not a mapping of file names")
    return card


def _count_settings(tree: Any) -> int:
    """The leaves of a config tree: its settings, lists counting as one."""
    if isinstance(tree, dict):
        return sum(_count_settings(value) for value in tree.values())
    return 1


def _fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _read_nidf(path: Path, vocab_size: int, card: dict[str, Any]) -> np.ndarray | None:
    """The bundle's NIDF vector, checked: None when the bundle has none."""
    if not path.is_file():
        if NIDF in card.get("files", {}):
            raise BundleError(f"{path.parent}: incomplete bundle, missing {NIDF}")
        return None
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BundleError(f"{path}: not a NumPy array file ({error})") from error
    if (
        values.dtype.kind != "f"
        or values.shape != (vocab_size,)
        or not np.all((values >= 0) & (values <= 1))
    ):
        raise BundleError(
            f"{path}: expected {vocab_size} floats in [0, 1], one per piece of {TOKENIZER}; "
            f"got {values.dtype} of shape {values.shape}"
        )
    return values.astype(np.float32)


def _read_replies(path: Path, card: dict[str, Any]) -> ReplyBank | None:
    """The bundle's reply bank: None when the bundle has none."""
    if not path.is_file():
        if REPLIES in card.get("files", {}):
            raise BundleError(f"{path.parent}: incomplete bundle, missing {REPLIES}")
        return None
    return ReplyBank.load(path)


def _verify_files(path: Path, card: dict[str, Any]) -> None:
    """Compare each file with the size and SHA-256 that card.json records (bundles written
    before checksums were recorded have none)."""
    recorded = card.get("files", {})
    for name in (*CHECKSUMMED, *OPTIONAL):
        expected = recorded.get(name)
        if expected is None or not (path / name).is_file():
            continue
        actual = _fingerprint(path / name)
        if not isinstance(expected, dict) or set(expected) != set(actual):
            raise BundleError(f"{path / CARD}: files.{name} is not a size and a SHA-256")
        if actual["bytes"] != expected["bytes"]:
            raise BundleError(
                f"{path / name}: corrupt: {actual['bytes']:,} bytes where {CARD} records "
                f"{expected['bytes']:,}; the file was truncated or changed after saving"
            )
        if actual["sha256"] != expected["sha256"]:
            raise BundleError(
                f"{path / name}: corrupt: its SHA-256 differs from the one {CARD} records; "
                "the file was damaged or changed after saving"
            )
