from hypothesis import given
from hypothesis import strategies as st

from chatbot.config import NormalizerConfig
from chatbot.normalize import Normalizer

normalize = Normalizer()


def test_dailydialog_spacing_is_undone():
    assert (
        normalize("Say , Jim , how about going for a few beers after dinner ?")
        == "Say, Jim, how about going for a few beers after dinner?"
    )
    assert normalize("Really ! Well ; fine : 50 % off ( maybe ) .") == (
        "Really! Well; fine: 50% off (maybe)."
    )
    assert normalize("It costs $ 5 ...") == "It costs $5..."


def test_curly_and_straight_apostrophes_are_unified_and_contractions_rejoined():
    assert normalize("I ’ m a defender . It ’ s fun .") == "I'm a defender. It's fun."
    assert normalize("You don ’ t have to , we ’ ll see , they ’ ve gone") == (
        "You don't have to, we'll see, they've gone"
    )
    assert normalize("Kate‘s “book”") == 'Kate\'s "book"'
    assert normalize("I don't") == normalize("I don’t") == "I don't"


def test_title_cased_contraction_endings_are_lowered():
    # DailyDialog's train split writes "I ’ Ve" 737 times
    assert normalize("I ’ Ve seen it , We ' Re late , you ’ Ll go") == (
        "I've seen it, We're late, you'll go"
    )
    assert normalize("I'Ve") == "I've"
    assert normalize("I'VE DONE IT, O'Connell, it's Leo's") == "I'VE DONE IT, O'Connell, it's Leo's"


def test_unicode_nfkc_and_whitespace():
    assert normalize("ｆｕｌｌ width\u00a0space") == "full width space"
    assert normalize("  many \t spaces\nand lines  ") == "many spaces and lines"
    assert normalize("ﬁne") == "fine"


def test_control_and_format_characters_are_dropped():
    assert normalize("a\u0007b\u200bc\ufeff") == "abc"
    assert normalize("\x00\x01") == ""
    assert normalize("a\x7fb\x1fc") == normalize("a\x7fb\x1fc\u200b") == "ab c"  # \x1f is a space


@given(st.text(st.characters(max_codepoint=127)))
def test_ascii_text_drops_the_characters_other_text_does(text):
    """ASCII text takes a `str.translate` fast path; it must agree with the general one."""
    assert normalize(text) == normalize(text + "\u200b")


def test_sentencepiece_meta_symbol_is_replaced():
    assert normalize("a\u2581b") == "a_b"


def test_options_can_be_turned_off():
    raw = "I ’ m HERE , ok"
    assert Normalizer(NormalizerConfig(lowercase=True))(raw) == "i'm here, ok"
    assert Normalizer(NormalizerConfig(unify_quotes=False, detokenize_punctuation=False))(raw) == (
        "I ’ m HERE , ok"
    )


def test_words_with_quotes_that_are_not_contractions_survive():
    assert normalize("rock 'n' roll in the '90s") == "rock 'n' roll in the '90s"


@given(st.text(max_size=60))
def test_normalizer_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


def test_lowercasing_covers_letters_that_nfkc_makes():
    assert Normalizer(NormalizerConfig(lowercase=True))("ᴬℌ İ") == "ah i̇"


@given(st.text(max_size=60))
def test_lowercasing_normalizer_is_idempotent(text):
    lower = Normalizer(NormalizerConfig(lowercase=True))
    once = lower(text)
    assert lower(once) == once
