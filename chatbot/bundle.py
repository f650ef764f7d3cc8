"""A trained model bundle: everything needed to rebuild the model and talk to it, in one folder.

    MODEL_DIR/
      config.yaml      the whole config tree (data, model, training) the model was made with
      tokenizer.model  the SentencePiece model (text normalization settings are in config.yaml)
      model.keras      Keras' native archive: architecture and weights, loaded in safe mode
      history.json     per-epoch training metrics
      card.json        data statistics, final metrics, the command that made it, versions

The folder is written under a temporary name and renamed into place, so a crash never leaves a
bundle that looks complete; loading checks every file and names the one at fault.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import yaml

from chatbot.atomic import atomic_directory
from chatbot.config import Config, parse_config
from chatbot.errors import BundleError, ChatbotError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import Tokenizer

CONFIG = "config.yaml"
TOKENIZER = "tokenizer.model"
MODEL = "model.keras"
HISTORY = "history.json"
CARD = "card.json"
FILES = (CONFIG, TOKENIZER, MODEL, HISTORY, CARD)


@dataclass
class Bundle:
    config: Config
    tokenizer: Tokenizer
    model: Seq2Seq
    history: list[dict[str, Any]] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            (tmp / CONFIG).write_text(
                yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False),
                encoding="utf-8",
            )
            self.tokenizer.save(tmp / TOKENIZER)
            _without_optimizer(self.model).save(tmp / MODEL)
            (tmp / HISTORY).write_text(json.dumps(self.history, indent=2) + "\n", "utf-8")
            (tmp / CARD).write_text(json.dumps(self.card, indent=2) + "\n", "utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: no such model bundle directory")
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            raise BundleError(f"{path}: incomplete bundle, missing {', '.join(missing)}")
        try:
            config = parse_config(Config, yaml.safe_load((path / CONFIG).read_text("utf-8")))
        except (ChatbotError, yaml.YAMLError, UnicodeDecodeError) as error:
            raise BundleError(f"{path / CONFIG}: invalid bundle config: {error}") from None
        tokenizer = Tokenizer.load(path / TOKENIZER)
        model = _load_model(path / MODEL)
        if model.vocab_size != tokenizer.vocab_size:
            raise BundleError(
                f"{path / MODEL}: vocabulary of {model.vocab_size} does not match "
                f"{path / TOKENIZER} ({tokenizer.vocab_size} pieces)"
            )
        return cls(config, tokenizer, model, _read_json(path / HISTORY), _read_json(path / CARD))


def _without_optimizer(model: Seq2Seq) -> Seq2Seq:
    """The model alone: a compiled model would also save its optimizer's state (twice its own
    size for Adam), which a bundle for chatting and serving has no use for."""
    if getattr(model, "optimizer", None) is None:
        return model
    clean = Seq2Seq(model.model_config, model.vocab_size, name=model.name)
    clean.build()
    clean.set_weights(model.get_weights())
    return clean


def _load_model(path: Path) -> Seq2Seq:
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise BundleError(f"{path}: cannot load the model: {error}") from None
    if not isinstance(model, Seq2Seq):
        raise BundleError(f"{path}: holds a {type(model).__name__}, not a Seq2Seq model")
    return model


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path}: unreadable: {error}") from None
