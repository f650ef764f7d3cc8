"""Stop sequences: a reply is cut before the first of them, as OpenAI's `stop` cuts.

The cut is made on the decoded reply's text, and the tokens kept are those whose text starts
before it (by the reply's per-token text offsets, `chatbot.text_offsets`), so a stream built
from the cut offsets never sends text past the cut, even when a stop sequence spans tokens.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def stop_cut(text: str, stops: Sequence[str]) -> int | None:
    """Where `text` is cut: the start of the earliest of `stops` in it, or None."""
    found = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    return min(found) if found else None


def tokens_before(offsets: Sequence[int], cut: int) -> int:
    """How many tokens of a reply whose texts end at `offsets` start before `cut`: those
    whose text is kept, whole or in part."""
    starts = [0, *offsets[:-1]]
    return bisect.bisect_left(starts, cut)


def cut_offsets(offsets: Sequence[int], cut: int) -> tuple[int, ...]:
    """The offsets of the tokens kept by a cut at `cut`, the last one ending there."""
    return tuple(min(end, cut) for end in offsets[: tokens_before(offsets, cut)])
