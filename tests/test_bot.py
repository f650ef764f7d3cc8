import numpy as np
import pytest

from chatbot.bot import Chatbot
from chatbot.bundle import Bundle
from chatbot.corpora import Dialogue, Turn
from chatbot.decoding.search import Decoded, FinishReason
from chatbot.decoding.strategies import gnmt_penalty
from chatbot.errors import BundleError, ConfigError, DataError
from chatbot.examples import dialogue_examples, encode_examples
from chatbot.retrieval import Pair, ReplyBank
from chatbot.tokenizer import EOS_ID, pad_ids

from .conftest import BACKWARD_ANSWER as ANSWER
from .conftest import BACKWARD_MESSAGE as MESSAGE
from .conftest import BACKWARD_OTHER as OTHER


@pytest.fixture(scope="module")
def bot(tiny_bundle) -> Chatbot:
    return Chatbot.load(tiny_bundle)


@pytest.fixture(scope="module")
def bidi_bot(bidi_bundle) -> Chatbot:
    return Chatbot.load(bidi_bundle)


def test_context_is_built_exactly_as_in_training(bot):
    turns = ["Hello, how are you today?", "I'm fine, thanks.", "What's your favorite food?"]
    dialogue = Dialogue(tuple(Turn(t) for t in [*turns, "Pizza."]), "x:1")
    example = list(dialogue_examples(dialogue, bot.config.data.history))[-1]
    training_source = encode_examples([example], bot.tokenizer).sources[0].tolist()
    limit = bot.config.data.max_source_len
    assert bot.context_ids(turns[-1], turns[:-1]) == training_source[-limit:]


def test_messages_are_normalized_like_training_text(bot):
    assert bot.context_ids("I ’ m fine , thanks .") == bot.context_ids("I'm fine, thanks.")


def test_only_the_newest_turns_count(bot):
    history = ["Great, see you there!", "Sure, what time does it start?", "It starts at eight."]
    assert bot.context_ids("Hello", history) == bot.context_ids("Hello", history[-1:])
    assert bot.reply("Hello", history).text == bot.reply("Hello", history[-1:]).text


def test_long_contexts_are_cut_from_the_left(bot):
    long = " ".join(["the number is seven"] * 20)
    ids = bot.context_ids(long)
    assert len(ids) == bot.config.data.max_source_len
    assert ids[-1] == EOS_ID


def test_empty_message_is_an_error(bot):
    with pytest.raises(DataError, match="message is empty"):
        bot.reply(" \u200b ")


def test_bad_decoding_settings_name_the_field(bot):
    with pytest.raises(ConfigError, match=r"decoding: top_p: Input should be less than or equal"):
        bot.reply("Hello", top_p=1.5)
    with pytest.raises(ConfigError, match="n_best 5 exceeds beam_width 2"):
        bot.reply("Hello", strategy="beam", beam_width=2, n_best=5)


def test_n_best_candidates_are_ranked_and_their_ids_spell_their_text(bot):
    reply = bot.reply("Hello", strategy="beam", beam_width=4, n_best=3, max_length=6)
    assert len(reply.candidates) == 3
    scores = [c.score for c in reply.candidates]
    assert scores == sorted(scores, reverse=True)
    assert reply.text == reply.candidates[0].text
    for candidate in reply.candidates:
        assert " ".join(bot.tokenizer.decode(candidate.ids).split()) == candidate.text
        assert candidate.tokens == len(candidate.ids) <= 6
    assert reply.prompt_tokens == len(bot.context_ids("Hello"))


def test_batched_replies_equal_single_ones(bot):
    messages = ["Hello", "What's your favorite food?", "Great, see you there!"]
    batched = bot.reply_batch(messages, [None, ["Hi"], None])
    single = [bot.reply(messages[0]), bot.reply(messages[1], ["Hi"]), bot.reply(messages[2])]
    assert [r.text for r in batched] == [r.text for r in single]


def test_sampling_with_a_seed_is_reproducible(bot):
    first = bot.reply("Hello", strategy="sample", n_best=3, seed=5, temperature=1.5)
    again = bot.reply("Hello", strategy="sample", n_best=3, seed=5, temperature=1.5)
    assert [c.text for c in first.candidates] == [c.text for c in again.candidates]


def test_mmi_reranking_subtracts_the_anti_language_model(bot):
    reply = bot.reply("Hello", strategy="beam", beam_width=4, n_best=4, mmi_lambda=0.5)
    targets = [[*c.ids, EOS_ID] for c in reply.candidates]
    width = max(map(len, targets))
    padded = np.array([t + [0] * (width - len(t)) for t in targets], np.int32)
    prior = bot.generator.score(np.full((len(targets), 1), EOS_ID, np.int32), padded)
    expected = [c.log_prob - 0.5 * p for c, p in zip(reply.candidates, prior, strict=True)]
    np.testing.assert_allclose([c.score for c in reply.candidates], expected, atol=1e-4)


def test_banned_phrases_keep_the_reply_from_saying_them(bot):
    usual = bot.reply("Hello", strategy="beam", beam_width=4, n_best=4, max_length=8)
    phrase = next(c for c in usual.candidates if c.text)
    banned = bot.reply("Hello", strategy="beam", beam_width=4, n_best=4, max_length=8,
                       banned_phrases=[phrase.text])  # fmt: skip
    ids = tuple(bot.tokenizer.encode([phrase.text])[0])
    for candidate in banned.candidates:  # banned as tokens: "o" may still appear inside "to"
        windows = {candidate.ids[i : i + len(ids)] for i in range(len(candidate.ids))}
        assert ids not in windows


def test_reply_text_has_no_stray_whitespace(bot):
    for candidate in bot.reply("Hello", strategy="beam", beam_width=4, n_best=4).candidates:
        assert candidate.text == " ".join(candidate.text.split())


def test_attention_comes_back_on_request(bot):
    reply = bot.reply_batch(["Hello there"], return_attention=True, max_length=5)[0]
    assert reply.attention.shape == (reply.reply_tokens + 1, reply.prompt_tokens)
    np.testing.assert_allclose(reply.attention.sum(-1), 1.0, atol=1e-5)


def _decoded(bot: Chatbot, texts: list[str], log_probs: list[float]) -> Decoded:
    """One input's hypotheses, as the search would return them."""
    ids = [[*bot.tokenizer.encode([text])[0], EOS_ID] for text in texts]
    tokens = pad_ids(ids)[None]
    scores = np.array([log_probs], np.float32)
    lengths = np.array([[len(row) - 1 for row in ids]], np.int32)
    finished = np.full(lengths.shape, int(FinishReason.EOS), np.int32)
    return Decoded(tokens, scores, scores, lengths, finished, None)


def test_mmi_bidi_prefers_the_reply_from_which_the_message_follows(bidi_bot):
    # The forward scores favour OTHER; the backward model knows that MESSAGE comes before
    # ANSWER and never before OTHER, so weight on it turns the choice around.
    decoded = _decoded(bidi_bot, [OTHER, ANSWER], [-1.0, -3.0])
    pools = [bidi_bot._generated(decoded, 0, bidi_bot.settings(), normalize=False)]
    plain = bidi_bot._rerank(pools, bidi_bot.settings(), [MESSAGE])[0]
    assert [candidate.text for _, candidate in plain] == [OTHER, ANSWER]
    settings = bidi_bot.settings(mmi_backward=2.0)
    bidi = bidi_bot._rerank(pools, settings, [MESSAGE])[0]
    assert [candidate.text for _, candidate in bidi] == [ANSWER, OTHER]

    backward = bidi_bot.backward
    target = [*backward.tokenizer.encode([MESSAGE])[0], EOS_ID]
    for (_, candidate), forward in zip(sorted(bidi), [-1.0, -3.0], strict=True):
        source = backward.context_ids(candidate.text)
        log_prob = backward.generator.score(np.array([source]), np.array([target]))[0]
        penalty = ((6 + candidate.tokens) / 6) ** settings.length_penalty
        expected = forward / penalty + 2.0 * log_prob / len(target)
        assert candidate.score == pytest.approx(expected, abs=1e-4)


def test_mmi_bidi_end_to_end_reranks_the_beam(bidi_bot):
    settings = {"strategy": "beam", "beam_width": 4, "n_best": 4, "max_length": 8}
    plain = bidi_bot.reply(MESSAGE, **settings)
    bidi = bidi_bot.reply(MESSAGE, **settings, mmi_backward=1.0)
    assert sorted(c.text for c in plain.candidates) == sorted(c.text for c in bidi.candidates)
    scores = [c.score for c in bidi.candidates]
    assert scores == sorted(scores, reverse=True)
    by_text = {c.text: c.score for c in plain.candidates}
    assert all(c.score != by_text[c.text] for c in bidi.candidates)


def test_mmi_bidi_needs_a_backward_model_trained_backward(bot, tiny_bundle):
    with pytest.raises(ConfigError, match="mmi_backward needs a backward model"):
        bot.reply("Hello", mmi_backward=1.0)
    with pytest.raises(BundleError, match="trained on 'forward' ones"):
        Chatbot(Bundle.load(tiny_bundle), backward=bot)


def test_a_reply_knows_why_it_ended_and_where_each_tokens_text_ends(bot):
    forced = bot.reply("Hello there", strategy="greedy", min_length=4, max_length=4)
    assert forced.reply_tokens == 4 and forced.finish_reason == FinishReason.LENGTH
    assert len(forced.offsets) == 4 and forced.offsets[-1] == len(forced.text)
    assert list(forced.offsets) == sorted(forced.offsets)
    free = bot.reply("Hello there", strategy="beam", max_length=30, n_best=2)
    for candidate in free.candidates:
        ended_by_length = candidate.tokens >= 30
        assert candidate.finish_reason == (
            FinishReason.LENGTH if ended_by_length else FinishReason.EOS
        )


def test_merged_settings_can_be_given_instead_of_overrides(bot):
    settings = bot.settings(strategy="beam", beam_width=2, n_best=2)
    given = bot.reply_batch(["Hello there"], settings=settings)[0]
    merged = bot.reply("Hello there", strategy="beam", beam_width=2, n_best=2)
    assert given.candidates == merged.candidates


def test_specificity_makes_replies_use_rarer_pieces(bot):
    messages = ["Hello", "What is your name?", "Where do you live?", "Do you like pizza?"]

    def mean_nidf(specificity: float) -> float:
        replies = bot.reply_batch(messages, strategy="greedy", specificity=specificity)
        return float(
            np.mean([bot.bundle.nidf[i] for reply in replies for i in reply.candidates[0].ids])
        )

    assert mean_nidf(6.0) > mean_nidf(0.0) + 0.1


def test_specificity_needs_the_bundles_nidf(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    bundle.nidf = None
    with pytest.raises(ConfigError, match=r"specificity needs the bundle's nidf\.npy"):
        Chatbot(bundle).reply("Hello", specificity=2.0)


def test_n_samples_draws_more_than_it_returns_and_keeps_the_best(bot):
    options = dict(strategy="sample", seed=3, temperature=1.5, mmi_lambda=0.5)
    pool = bot.reply("Hello", n_best=6, **options).candidates
    best = bot.reply("Hello", n_samples=6, n_best=2, **options).candidates
    assert [c.text for c in best] == [c.text for c in pool[:2]]
    assert [c.score for c in best] == [c.score for c in pool[:2]]


def test_n_samples_grow_to_an_asked_n_best_unless_given(tiny_bundle):
    from chatbot.config import DecodingConfig

    bundle = Bundle.load(tiny_bundle)
    decoding = DecodingConfig(strategy="sample", n_samples=3)
    bundle.config = bundle.config.model_copy(update={"decoding": decoding})
    sampler = Chatbot(bundle)
    assert sampler.settings(n_best=5).n_samples == 5
    assert len(sampler.reply("Hello", n_best=5, seed=0).candidates) == 5
    with pytest.raises(ConfigError, match="n_best 5 exceeds n_samples 2"):
        sampler.settings(n_best=5, n_samples=2)


BANK = ReplyBank(
    [
        Pair("What's your favorite food?", "I like pizza and pasta very much."),
        Pair("What's your favorite color?", "The color is red."),
        Pair("Do you like food?", "Sure, what time does it start?"),
        Pair("Do you want to go to the movies tonight?", "It starts at eight o'clock."),
    ]
)
# Plain likelihood ranking, so that the expected scores can be computed here.
PLAIN = dict(mmi_lambda=0.0, mmi_backward=0.0, specificity=0.0, length_penalty=0.6)


@pytest.fixture(scope="module")
def bank_bot(tiny_bundle) -> Chatbot:
    bundle = Bundle.load(tiny_bundle)
    bundle.replies = BANK
    return Chatbot(bundle)


def _normalized(candidate, length_penalty: float = 0.6) -> float:
    penalty = gnmt_penalty(np.array(candidate.tokens + 1), length_penalty).numpy()
    return candidate.log_prob / float(penalty)


def test_retrieved_replies_are_the_banks_ranked_by_their_normalized_likelihood(bank_bot):
    message = "What is your favorite food?"
    reply = bank_bot.reply(
        message, reply_source="retrieve", strategy="beam", beam_width=8, n_best=8, **PLAIN
    )
    found = dict(BANK.search(bank_bot.normalizer(message), 50))
    assert sorted(c.text for c in reply.candidates) == sorted(found) and len(found) == 3
    assert {c.text: c.match for c in reply.candidates} == pytest.approx(found)
    source = np.array([bank_bot.context_ids(message)])
    for candidate in reply.candidates:
        target = np.array([[*candidate.ids, EOS_ID]])
        forced = bank_bot.generator.score(source, target)[0]
        assert candidate.log_prob == pytest.approx(float(forced), abs=1e-4)
        assert candidate.score == pytest.approx(_normalized(candidate), abs=1e-4)
    scores = [c.score for c in reply.candidates]
    assert scores == sorted(scores, reverse=True)


def test_match_weight_favours_the_reply_to_the_most_similar_message(bank_bot):
    message = "Do you like food?"  # the bank's third message word for word
    options = dict(reply_source="retrieve", strategy="beam", beam_width=8, n_best=8, **PLAIN)
    plain = bank_bot.reply(message, **options).candidates
    best_match = max(plain, key=lambda c: c.match)
    assert best_match.text == "Sure, what time does it start?"
    assert best_match.match == pytest.approx(1.0)
    weight = 1.0 + max(c.score for c in plain) - best_match.score  # enough to win, just
    matched = bank_bot.reply(message, **options, match_weight=weight).candidates
    assert matched[0].text == best_match.text != plain[0].text
    expected = {c.text: c.score + weight * c.match for c in plain}
    assert {c.text: c.score for c in matched} == pytest.approx(expected, abs=1e-4)


def test_previous_weight_matches_the_scene_before_the_message(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    bundle.replies = ReplyBank(
        [
            Pair("Will that be all?", "Yes, and the bill please.", "I'll have the fish soup."),
            Pair("Will that be all?", "Yes, just the stamps.", "I need stamps for this letter."),
            Pair("Hello there.", "Hi, how are you?"),  # so that the others' words have weight
        ]
    )
    bot = Chatbot(bundle)
    options = dict(reply_source="retrieve", match_weight=100.0, **PLAIN)
    for scene, fitting in [
        ("Some fish soup, please.", "Yes, and the bill please."),
        ("Two stamps for a letter.", "Yes, just the stamps."),
    ]:
        reply = bot.reply("Will that be all?", [scene], previous_weight=1.0, **options)
        assert reply.text == fitting
    alone = bot.reply("Will that be all?", ["Two stamps for a letter."], **options)
    assert alone.candidates[0].match == pytest.approx(1.0)  # the message's similarity alone


LONGEST = "I like pizza and pasta very much."


@pytest.mark.parametrize(
    ("rule", "left_out"),
    [
        ({"banned_phrases": ["pizza"]}, LONGEST),
        ({"max_length": None}, LONGEST),  # one piece shorter than it
        ({"block_context_ngram": 3}, "Sure, what time does it start?"),
    ],
)
def test_retrieved_replies_obey_the_decoding_rules(bank_bot, rule, left_out):
    message = "Do you like food? What time does it start?"
    options = dict(reply_source="retrieve", strategy="beam", beam_width=8, n_best=8, **PLAIN)
    if "max_length" in rule:
        rule = {"max_length": len(bank_bot.tokenizer.encode([LONGEST])[0]) - 1}
    free = [c.text for c in bank_bot.reply(message, **options).candidates]
    ruled = [c.text for c in bank_bot.reply(message, **options, **rule).candidates]
    assert left_out in free
    assert ruled and set(ruled) <= set(free) - {left_out}  # still retrieved, less that one


def test_retrieve_falls_back_to_generation_where_the_bank_has_no_match(bank_bot):
    messages = ["Zebra xylophone quartz.", "What is your favorite color?"]
    options = dict(strategy="greedy", **PLAIN)
    retrieved = bank_bot.reply_batch(messages, reply_source="retrieve", **options)
    generated = bank_bot.reply(messages[0], **options)
    assert retrieved[0].text == generated.text
    assert retrieved[1].text == "The color is red."


def test_both_sources_compete_on_normalized_likelihood(bank_bot):
    message = "What is your favorite food?"
    options = dict(strategy="beam", beam_width=4, n_best=4, **PLAIN)
    generated = bank_bot.reply(message, **options).candidates
    retrieved = bank_bot.reply(message, reply_source="retrieve", **options).candidates
    assert {c.text for c in retrieved} <= {pair.reply for pair in BANK.pairs}
    both = bank_bot.reply(message, reply_source="both", **options).candidates
    union = sorted([*generated, *retrieved], key=_normalized, reverse=True)
    assert [c.text for c in both] == [c.text for c in union[:4]]
    assert [c.score for c in both] == pytest.approx([_normalized(c) for c in union[:4]], abs=1e-4)


def test_retrieval_needs_a_reply_bank(tiny_bundle, backward_bundle):
    assert Bundle.load(backward_bundle).replies is None  # training writes none for it
    bundle = Bundle.load(tiny_bundle)
    bundle.replies = None
    with pytest.raises(ConfigError, match=r"reply_source 'both' needs the bundle's replies"):
        Chatbot(bundle).reply("Hello", reply_source="both")
