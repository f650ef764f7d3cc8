"""Reply-quality metrics: how generic, repetitive and varied a chatbot's replies are.

The best-known failure of a seq2seq chatbot is one safe, content-free reply ("i don't know")
for every input, and the second is a repetition loop ("i am i am i am"). These pure functions
over lists of strings measure exactly that, so quality gates can fail a model that has
collapsed even when its loss looks fine.

Normalization. Before a reply is judged generic or counted as a reply text, it is lowercased,
curly apostrophes and their look-alikes (right and left single quotation marks, backtick, acute
accent, prime, modifier letter apostrophe) become a plain ``'``, runs of whitespace become one
space, and leading whitespace and trailing punctuation and whitespace are stripped:
``"  I DON'T know...  "`` becomes ``"i don't know"``.

Generic replies. ``GENERIC_PATTERNS`` lists regular expressions for generic, content-free
replies (apostrophes are optional in contractions, so "dont" and "im" match too):

- "i don't know", "i do not know", "i dunno"
- "i don't know what you're talking about"
- "i'm not sure", "i am not sure", "not sure"
- "i don't think so", "i don't understand", "i don't care"
- "i have no idea", "no idea"
- "i'm sorry", "i am sorry", "sorry"
- "i'm fine", "i am fine"
- "what do you mean", "what", "really"
- "ok", "okay", "yes", "yeah", "yep", "yup", "no", "nope", "nah"
- "i see", "me too", "thank you", "thanks", "you're welcome", "you are welcome"
- "uh-huh", "uh huh", "mm-hmm", "hm", "hmm", "hmmm", ...

Matching rule: a normalized reply is generic when the WHOLE of it, case-insensitively, is one
of these phrases, or several of them separated only by spaces, punctuation or other non-word
characters ("Sorry, I don't know." and "No. Thank you!" are generic). A reply that merely
contains such a phrase next to real content ("I don't know, maybe the blue one is cheaper") is
not generic.

Tokens. Every word-level metric here uses ``tokens``: the reply is lowercased, apostrophes are
unified, and it is split into words (contractions such as "i'm" and "don't" stay one token)
and punctuation (a run of one mark, like "...", is one token).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence

GENERIC_PATTERNS: tuple[str, ...] = (
    r"i (?:don'?t|do not) know",
    r"i (?:don'?t|do not) know what you(?:'?re| are) talking about",
    r"i dunno",
    r"(?:i'?m |i am )?not sure",
    r"i (?:don'?t|do not) think so",
    r"i (?:don'?t|do not) understand",
    r"i (?:don'?t|do not) care",
    r"(?:i have )?no idea",
    r"(?:i'?m |i am )?sorry",
    r"(?:i'?m|i am) fine",
    r"what do you mean",
    r"what",
    r"really",
    r"ok|okay",
    r"yes|yeah|yep|yup",
    r"no|nope|nah",
    r"i see",
    r"me too",
    r"thank you|thanks",
    r"you'?re welcome|you are welcome",
    r"uh-huh|uh huh|mm-hmm",
    r"hm+",
)
"""Regular expressions for generic replies, matched as described in the module docstring."""

_APOSTROPHES = str.maketrans(dict.fromkeys("\u2019\u2018`\u00b4\u2032\u02bc", "'"))
_WHITESPACE = re.compile(r"\s+")
_PHRASE = "(?:" + "|".join(f"(?:{pattern})" for pattern in GENERIC_PATTERNS) + ")"
_GENERIC = re.compile(rf"{_PHRASE}(?:\W+{_PHRASE})*", re.IGNORECASE)
# A word with its contraction or inner apostrophes ("don't", "rock'n'roll"), or a run of one
# punctuation mark ("...", "!!").
_TOKEN = re.compile(r"\w+(?:'\w+)*|([^\w\s])\1*")
# Word-level perplexity's words: runs of letters and digits, and each other visible character.
_WORD = re.compile(r"[^\W_]+|[^\w\s]|_")


def _normalize(reply: str) -> str:
    """Lowercase, unify apostrophes and whitespace, strip trailing punctuation and spaces."""
    text = _WHITESPACE.sub(" ", reply.lower().translate(_APOSTROPHES)).strip()
    end = len(text)
    while end and (text[end - 1].isspace() or unicodedata.category(text[end - 1])[0] == "P"):
        end -= 1
    return text[:end]


def is_generic(reply: str) -> bool:
    """Whether the whole reply is a generic, content-free phrase (see ``GENERIC_PATTERNS``)."""
    return _GENERIC.fullmatch(_normalize(reply)) is not None


def generic_share(replies: Sequence[str]) -> float:
    """Share of replies that are generic; 0.0 for no replies."""
    if not replies:
        return 0.0
    return sum(is_generic(reply) for reply in replies) / len(replies)


def tokens(text: str) -> list[str]:
    """Lowercased words (contractions kept whole) and punctuation of ``text``, in order."""
    return [match.group() for match in _TOKEN.finditer(text.lower().translate(_APOSTROPHES))]


def word_count(reference: str) -> int:
    """Words of a reference for word-level perplexity: lower-cased runs of letters and digits
    and single punctuation marks (so "don't!" is don ' t !), plus one end mark, since the
    model also predicts where a reply ends. Independent of any tokenizer, so models with
    different vocabularies compare."""
    return len(_WORD.findall(reference.lower())) + 1


def ngrams(items: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    """The n-grams of `items` (words, or token ids), in order."""
    if n < 1:
        raise ValueError(f"n-gram order must be at least 1, got {n}")
    return [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]


def distinct_n(replies: Sequence[str], n: int) -> float:
    """Distinct n-grams over all replies divided by all n-grams (Li et al., 2016).

    N-grams do not cross reply boundaries. 0.0 when the replies hold no n-gram at all.
    """
    grams = [gram for reply in replies for gram in ngrams(tokens(reply), n)]
    if not grams:
        return 0.0
    return len(set(grams)) / len(grams)


def repeats_ngram(reply: str, n: int = 3) -> bool:
    """Whether some word n-gram occurs twice or more within the reply (a repetition loop)."""
    return repeats(tokens(reply), n)


def repeats(items: Sequence[Hashable], n: int) -> bool:
    """Whether some n-gram of `items` (words, or token ids) occurs twice or more."""
    grams = ngrams(items, n)
    return len(set(grams)) < len(grams)


def repeated_ngram_share(replies: Sequence[str], n: int = 3) -> float:
    """Share of replies that repeat some word n-gram; 0.0 for no replies."""
    if not replies:
        return 0.0
    return sum(repeats_ngram(reply, n) for reply in replies) / len(replies)


def mean_length(replies: Sequence[str]) -> float:
    """Mean number of tokens per reply; 0.0 for no replies."""
    if not replies:
        return 0.0
    return sum(len(tokens(reply)) for reply in replies) / len(replies)


def most_common_reply_share(replies: Sequence[str]) -> tuple[str, float]:
    """The most frequent normalized reply text and the share of replies that are exactly it.

    Replies are normalized as for ``is_generic``. Ties go to the text met first in ``replies``,
    so the result does not depend on hashing. ``("", 0.0)`` for no replies.
    """
    if not replies:
        return "", 0.0
    text, count = Counter(_normalize(reply) for reply in replies).most_common(1)[0]
    return text, count / len(replies)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacreBLEU corpus BLEU (0-100) with one reference per hypothesis; 0.0 for no pairs.

    Uses sacreBLEU's defaults (13a tokenization, case-sensitive, exponential smoothing), so the
    value equals ``sacrebleu REFS -i HYPS``. Like any BLEU, it is 0.0 when the corpus holds no
    matching 4-gram, even if every short hypothesis equals its reference.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: need one each"
        )
    if not hypotheses:
        return 0.0
    # Imported here: the serving image leaves sacreBLEU out, and serving imports this module
    # (the reply bank filters replies by its n-gram helpers).
    from sacrebleu.metrics import BLEU

    return BLEU().corpus_score(list(hypotheses), [list(references)]).score


def reply_metrics(
    replies: Sequence[str], references: Sequence[str] | None = None
) -> dict[str, float | str]:
    """All reply metrics in one dict; ``bleu`` only when references are given.

    Keys: ``replies`` (count), ``mean_length``, ``distinct_1``, ``distinct_2``,
    ``generic_share``, ``repeated_3gram_share``, ``top_reply`` (text), ``top_reply_share``
    and, with references, ``bleu``.
    """
    top_reply, top_reply_share = most_common_reply_share(replies)
    metrics: dict[str, float | str] = {
        "replies": len(replies),
        "mean_length": mean_length(replies),
        "distinct_1": distinct_n(replies, 1),
        "distinct_2": distinct_n(replies, 2),
        "generic_share": generic_share(replies),
        "repeated_3gram_share": repeated_ngram_share(replies, 3),
        "top_reply": top_reply,
        "top_reply_share": top_reply_share,
    }
    if references is not None:
        metrics["bleu"] = corpus_bleu(replies, references)
    return metrics
