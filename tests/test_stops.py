"""Stop sequences cut a reply before the first of them, token offsets included."""

import pytest

from chatbot.bot import Candidate, TokenLogprob
from chatbot.decoding.search import FinishReason
from chatbot.stops import cut_offsets, stop_cut, tokens_before

# "Hi there. How are you?" as five tokens: "Hi", " there", ".", " How are", " you?"
TEXT = "Hi there. How are you?"
OFFSETS = (2, 8, 9, 17, 22)


def candidate() -> Candidate:
    pieces = [TEXT[a:b] for a, b in zip((0, *OFFSETS[:-1]), OFFSETS, strict=True)]
    return Candidate(
        text=TEXT,
        score=-1.0,
        log_prob=-2.0,
        tokens=5,
        ids=(10, 11, 12, 13, 14),
        offsets=OFFSETS,
        logprobs=tuple(TokenLogprob(piece, -0.1 * i) for i, piece in enumerate(pieces)),
    )


def streamed(cut: Candidate) -> list[str]:
    """The chunks a stream sends: each token's text by its offset."""
    starts = (0, *cut.offsets)[: len(cut.offsets)]
    return [cut.text[a:b] for a, b in zip(starts, cut.offsets, strict=True)]


def test_the_earliest_stop_sequence_wins_whatever_its_order() -> None:
    assert stop_cut(TEXT, ["you", "."]) == 8
    assert stop_cut(TEXT, ["nowhere"]) is None
    assert stop_cut(TEXT, []) is None


def test_a_cut_inside_a_token_keeps_its_kept_part() -> None:
    assert tokens_before(OFFSETS, 5) == 2  # "Hi" and " th"
    assert cut_offsets(OFFSETS, 5) == (2, 5)
    assert cut_offsets(OFFSETS, 0) == ()
    assert cut_offsets(OFFSETS, 8) == (2, 8)  # " there" ends exactly at the cut


@pytest.mark.parametrize(
    ("stop", "kept"),
    [
        (".", "Hi there"),
        ("e. H", "Hi ther"),  # spans three tokens' texts
        ("are", "Hi there. How "),  # inside a token
        ("Hi", ""),
    ],
)
def test_a_cut_candidate_streams_no_text_past_the_cut(stop: str, kept: str) -> None:
    cut = candidate().cut([stop, "never"])
    assert cut.text == kept and cut.finish_reason == FinishReason.STOP
    assert "".join(streamed(cut)) == kept
    assert cut.tokens == len(cut.ids) == len(cut.offsets) == len(cut.logprobs)
    assert all(end <= len(kept) for end in cut.offsets)
    assert (cut.score, cut.log_prob) == (-1.0, -2.0)


def test_no_stop_sequence_in_the_text_leaves_the_candidate_as_it_was() -> None:
    whole = candidate()
    assert whole.cut(["xyz"]) is whole and whole.cut([]) is whole
