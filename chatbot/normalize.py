"""Text normalization applied to every turn before tokenization, in training and in serving.

Real corpora mix Unicode forms, curly and straight quotes, and (DailyDialog) pre-tokenized text
with spaces around punctuation and split contractions (`Say , Jim , I ' m here .`). Cleaning
this once, identically everywhere, gives the tokenizer fewer spellings of the same thing and
the user natural replies.
"""

from __future__ import annotations

import re
import unicodedata

from chatbot.config import NormalizerConfig

QUOTES = str.maketrans(
    {
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark
        "\u201a": "'",  # single low-9 quotation mark
        "\u201b": "'",  # single high-reversed-9 quotation mark
        "\u2032": "'",  # prime
        "\u00b4": "'",  # acute accent used as apostrophe
        "`": "'",
        "\u201c": '"',  # left double quotation mark
        "\u201d": '"',  # right double quotation mark
        "\u201e": '"',  # double low-9 quotation mark
        "\u2033": '"',  # double prime
    }
)
# Contractions split by a tokenizer: "I ' m", "don ' t", "it ' s" -> "I'm", "don't", "it's".
_SPLIT_CONTRACTION = re.compile(r"(\w) ?' ?(s|m|d|t|re|ve|ll)\b", re.IGNORECASE)
# Title-cased contraction endings: DailyDialog writes "I ' Ve" (curly) hundreds of times,
# which would teach a model to say "I'Ve". Only that form is lowered: "I'VE" keeps its shout.
_TITLE_CASE_CONTRACTION = re.compile(r"(\w)'(Ve|Re|Ll)\b")
# A space before closing punctuation: "word ." "word ," "word ?" "50 %" -> "word." etc.
_SPACE_BEFORE = re.compile(r" +([.,!?;:%)\]}]|\.\.\.)")
# A space after opening brackets and currency signs: "( word" "$ 5" -> "(word" "$5".
_SPACE_AFTER = re.compile(r"([(\[{$£€¥]) +")
_WHITESPACE = re.compile(r"\s+")


def _is_dropped_char(char: str) -> bool:
    """Control and format characters (except whitespace) carry no text and confuse tokenizers."""
    return unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn"} and not char.isspace()


# The ASCII characters `_is_dropped_char` drops, for a `str.translate` that does in C what the
# per-character test does in Python: most corpora are ASCII, and prepare normalizes every turn.
_ASCII_DROPPED = str.maketrans({chr(c): None for c in range(128) if _is_dropped_char(chr(c))})


def _drop_chars(text: str) -> str:
    """`text` without the characters `_is_dropped_char` drops."""
    if text.isascii():
        return text.translate(_ASCII_DROPPED)
    return "".join(char for char in text if not _is_dropped_char(char))


def _lower_ending(match: re.Match[str]) -> str:
    return f"{match[1]}'{match[2].lower()}"


class Normalizer:
    """Callable text cleaner built from a `NormalizerConfig`; idempotent by construction."""

    def __init__(self, config: NormalizerConfig | None = None) -> None:
        self.config = config or NormalizerConfig()

    def __call__(self, text: str) -> str:
        config = self.config
        if config.nfkc:
            text = unicodedata.normalize("NFKC", text)
        if config.lowercase:
            # NFKC can turn a character that has no lower case (modifier letter "ᴬ") into
            # one that has ("A"), and lowering can leave text that is not NFKC: both again.
            text = text.lower()
            if config.nfkc:
                text = unicodedata.normalize("NFKC", text)
        text = _drop_chars(text)
        text = _WHITESPACE.sub(" ", text).strip()
        # SentencePiece's word-boundary mark would decode as a space, breaking round trips.
        text = text.replace("\u2581", "_")
        if config.unify_quotes:
            text = text.translate(QUOTES)
        if config.detokenize_punctuation:
            text = _SPLIT_CONTRACTION.sub(r"\1'\2", text)
            text = _TITLE_CASE_CONTRACTION.sub(_lower_ending, text)
            text = _SPACE_BEFORE.sub(r"\1", text)
            text = _SPACE_AFTER.sub(r"\1", text)
        return text
