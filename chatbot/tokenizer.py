"""SentencePiece tokenizer (unigram, BPE, character or word pieces) with fixed special ids and
byte fallback.

Fixed ids let the model, the decoder and an exported graph agree on padding, sequence ends and
the turn separator without looking them up. Byte fallback means any input, in any script,
encodes to known ids: an unseen character (or, in a word model, an unseen word) becomes its
UTF-8 bytes, never `<unk>`. User-defined symbols take the ids after the special ones, so the
256 byte pieces follow them. `decode(encode(text)) == text` for every normalized text and
every model type (docs/tokenizer.md).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from chatbot.atomic import atomic_write_bytes
from chatbot.config import TokenizerConfig
from chatbot.errors import TokenizerError

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
SEP_ID = 4
SEP_PIECE = "<sep>"
MARK = "\u2581"  # SentencePiece's word-boundary mark, "▁"
_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID, "sep": SEP_ID}
TOKENIZER_FILE = "tokenizer.model"  # its name in bundles and prepared directories


class Tokenizer:
    """Encodes normalized text to ids and back. Build with `train` or `load`."""

    def __init__(self, model_proto: bytes) -> None:
        self._processor = spm.SentencePieceProcessor()
        try:
            self._processor.LoadFromSerializedProto(model_proto)
        except (RuntimeError, OSError) as error:
            raise TokenizerError(f"not a SentencePiece model: {error}") from None
        self.model_proto = model_proto
        self._check_special_ids()

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig, *, seed: int = 0) -> Tokenizer:
        """Train on `texts` (the training split only, already normalized)."""
        model = io.BytesIO()
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=(text for text in texts if text),
                model_writer=model,
                model_type=config.model_type,
                vocab_size=config.vocab_size,
                character_coverage=config.character_coverage,
                split_digits=config.split_digits,
                user_defined_symbols=list(config.user_defined_symbols),
                input_sentence_size=config.max_sentences,
                shuffle_input_sentence=True,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                control_symbols=[SEP_PIECE],
                byte_fallback=True,
                hard_vocab_limit=False,
                normalization_rule_name="identity",
                num_threads=2,
                minloglevel=2,
            )
        except RuntimeError as error:
            raise TokenizerError(f"cannot train the tokenizer: {_explain(error)}") from None
        return cls(model.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        try:
            proto = path.read_bytes()
        except OSError as error:
            raise TokenizerError(f"{path}: cannot read tokenizer model: {error.strerror}") from None
        try:
            return cls(proto)
        except TokenizerError as error:
            raise TokenizerError(f"{path}: {error}") from None

    def save(self, path: str | Path) -> None:
        """Write the model file atomically, plus a human-readable `.vocab` listing beside it."""
        path = Path(path)
        atomic_write_bytes(path, self.model_proto)
        pieces = (
            f"{self._processor.id_to_piece(i)}\t{self._processor.get_score(i):g}\n"
            for i in range(self.vocab_size)
        )
        atomic_write_bytes(path.with_suffix(".vocab"), "".join(pieces).encode("utf-8"))

    @property
    def vocab_size(self) -> int:
        return self._processor.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text, without bos/eos (callers add those where the format needs them)."""
        return self._processor.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special ids (pad, bos, eos, sep) contribute nothing."""
        return unmark_spaces(self._processor.decode([int(i) for i in ids]))

    def id_to_piece(self, token_id: int) -> str:
        return self._processor.id_to_piece(token_id)

    def canonical_ids(self) -> np.ndarray:
        """int32 [vocab]: for each id, the first id whose piece reads the same once lowercased
        and stripped of the word-start mark, so that n-gram blocking sees what a reader (and
        the reply metrics) see: "What happened? what happened?" repeats a 3-gram although
        `▁What` and `▁what` are different pieces."""
        first: dict[str, int] = {}
        canonical = np.arange(self.vocab_size, dtype=np.int32)
        for token_id in range(self.vocab_size):
            if self._processor.is_control(token_id) or self._processor.is_unknown(token_id):
                continue
            key = self.id_to_piece(token_id).lstrip("\u2581").lower() or "\u2581"
            canonical[token_id] = first.setdefault(key, token_id)
        return canonical

    def _check_special_ids(self) -> None:
        expected = {
            PAD_ID: "<pad>",
            UNK_ID: "<unk>",
            BOS_ID: "<s>",
            EOS_ID: "</s>",
            SEP_ID: SEP_PIECE,
        }
        actual = {i: self._processor.id_to_piece(i) for i in expected if i < self.vocab_size}
        if actual != expected:
            raise TokenizerError(
                f"special ids differ from this project's: expected {expected}, found {actual}"
            )


def _explain(error: RuntimeError) -> str:
    """SentencePiece's trainer errors, rephrased in terms of this project's settings."""
    message = str(error).strip().splitlines()[-1]
    if match := _TOO_SMALL.search(message):
        asked, needed = match.groups()
        return (
            f"vocab_size {asked} is too small for this corpus: it needs at least {needed} "
            "(5 special ids, 256 byte-fallback pieces and every character the corpus uses); "
            "raise the vocabulary size or lower tokenizer.character_coverage"
        )
    return message


def unmark_spaces(text: str) -> str:
    """Decoded text with SentencePiece's word-boundary marks that came back as bytes made spaces.

    A word model's unknown word falls back to the bytes of its piece, mark included
    (`▁word`), and bytes decode verbatim: "a▁word". Normalized text has no such marks (the
    normalizer writes `_` for them), so each one is a space, and one at the start is the
    dummy prefix, which SentencePiece drops from a first piece that is not bytes. Other
    model types never spell the mark in bytes; for them this changes nothing.
    """
    if MARK not in text:
        return text
    return text.replace(MARK, " ").removeprefix(" ")


def join_context(turn_ids: Sequence[Sequence[int]]) -> list[int]:
    """Context turns (oldest first) joined by SEP_ID and ended by EOS_ID."""
    joined: list[int] = []
    for i, ids in enumerate(turn_ids):
        if i:
            joined.append(SEP_ID)
        joined.extend(ids)
    joined.append(EOS_ID)
    return joined


def split_context(ids: Sequence[int]) -> list[list[int]]:
    """The turns' ids (oldest first) of a source `join_context` made, padded or not: its
    inverse, without the end mark and padding."""
    turns: list[list[int]] = [[]]
    for token in ids:
        if token == SEP_ID:
            turns.append([])
        elif token not in (EOS_ID, PAD_ID):
            turns[-1].append(int(token))
    return turns


def pad_ids(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Rows of ids as one int32 matrix, right-padded with PAD_ID to the longest row."""
    width = max((len(row) for row in rows), default=0)
    return np.array([[*row, *[PAD_ID] * (width - len(row))] for row in rows], np.int32)
