import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from chatbot.bot import Chatbot
from chatbot.bundle import Bundle
from chatbot.config import DataConfig, load_config
from chatbot.errors import ConfigError, DataError
from chatbot.evaluation.evaluate import evaluate, format_report, load_examples
from chatbot.evaluation.metrics import word_count
from chatbot.evaluation.plots import plot_attention
from chatbot.evaluation.ranking import draw_distractors
from chatbot.examples import Example
from chatbot.model.seq2seq import Seq2Seq
from chatbot.prepare import prepare
from chatbot.tokenizer import EOS_ID
from chatbot.training.trainer import TrainOptions, train

TINY = [
    "model.embedding_dim=8",
    "model.hidden_size=16",
    "model.attention_units=8",
    "training.batch_size=8",
    "training.epochs=1",
    "training.warmup_steps=2",
]
WORDS = ["red", "blue", "green", "big", "small", "cat", "dog", "bird", "sees", "likes", "the", "a"]
METRICS = ["examples", "perplexity", "nll_per_token", "bleu", "distinct_1", "generic_share"]
METRICS += ["replies", "seconds", "replies_per_second", "word_perplexity", "words"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Three-turn dialogues, so validation contexts hold a history as well as a message."""
    rng = np.random.default_rng(0)
    turns = [" ".join(rng.choice(WORDS, size=rng.integers(2, 5))) for _ in range(90)]
    lines = [json.dumps({"turns": turns[i : i + 3]}) for i in range(0, 90, 3)]
    root = tmp_path_factory.mktemp("data")
    (root / "chats.jsonl").write_text("\n".join(lines[:24]) + "\n", encoding="utf-8")
    (root / "valid.jsonl").write_text("\n".join(lines[24:]) + "\n", encoding="utf-8")
    config = DataConfig(history=2, tokenizer={"vocab_size": 300})
    valid = [root / "valid.jsonl"]  # 6 dialogues, 12 examples
    prepare("jsonl", [root / "chats.jsonl"], root / "prepared", config, valid_inputs=valid)
    return root / "prepared"


@pytest.fixture(scope="module")
def bot(prepared, tmp_path_factory) -> Chatbot:
    out = tmp_path_factory.mktemp("models") / "model"
    train(load_config("configs/tiny.yaml", TINY), prepared, out, TrainOptions(verbose=False))
    return Chatbot.load(out)


@pytest.fixture(scope="module")
def examples(prepared) -> list[Example]:
    return load_examples(prepared)


def test_load_examples_from_a_prepared_directory_and_a_jsonl_file(prepared, examples):
    assert len(examples) == 12 and any(len(example.context) == 2 for example in examples)
    assert load_examples(prepared, "train")[0] != examples[0]
    assert load_examples(prepared / "valid.jsonl") == examples


def test_load_examples_names_a_missing_or_empty_source(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: no such prepared data directory or examples"):
        load_examples(tmp_path / "nowhere")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl: holds no examples"):
        load_examples(tmp_path / "empty.jsonl")


def test_perplexity_matches_the_models_own_scores(bot, examples):
    results = evaluate(bot, examples, batch_size=5)
    log_likelihood, tokens = 0.0, 0
    for example in examples:  # one row at a time: no padding to get wrong
        source = bot.context_ids(example.context[-1], example.context[:-1])
        target = [*bot.tokenizer.encode([example.response])[0], EOS_ID]
        log_likelihood += bot.generator.score(np.array([source]), np.array([target]))[0]
        tokens += len(target)
    assert results["perplexity"] == pytest.approx(np.exp(-log_likelihood / tokens), rel=1e-4)
    assert results["nll_per_token"] == pytest.approx(math.log(results["perplexity"]))
    assert results["perplexity"] > 1


def test_word_perplexity_spreads_the_same_likelihood_over_words(bot, examples):
    results = evaluate(bot, examples, hits_k=0)
    words = sum(word_count(bot.normalizer(example.response)) for example in examples)
    assert results["words"] == words
    nll = results["nll_per_token"] * sum(
        len(ids) + 1 for ids in bot.tokenizer.encode([ex.response for ex in examples])
    )
    assert results["word_perplexity"] == pytest.approx(math.exp(nll / words), rel=1e-6)
    assert "hits_at_1" not in results


def test_hits_at_1_against_one_pair_at_a_time(bot, examples):
    results = evaluate(bot, examples, hits_k=3, distractor_seed=7)
    references = [bot.normalizer(example.response) for example in examples]
    rows = draw_distractors([ex.source for ex in examples], references, 3, seed=7)

    def score(source, reply):  # one row at a time: no padding to get wrong
        target = [*bot.tokenizer.encode([reply])[0], EOS_ID]
        value = bot.generator.score(np.array([source]), np.array([target]))[0]
        return value, value / len(target)

    hits = {"summed": 0, "per_token": 0, "blind_summed": 0, "blind_per_token": 0}
    for example, row, reference in zip(examples, rows, references, strict=True):
        context = bot.context_ids(example.context[-1], example.context[:-1])
        for prefix, source in (("", context), ("blind_", [EOS_ID])):
            true = score(source, reference)
            others = [score(source, references[j]) for j in row]
            hits[prefix + "summed"] += all(true[0] > other[0] for other in others)
            hits[prefix + "per_token"] += all(true[1] > other[1] for other in others)
    n = len(examples)
    assert results["hits_k"] == 3
    assert results["hits_at_1"] == pytest.approx(hits["per_token"] / n)
    assert results["hits_at_1_summed"] == pytest.approx(hits["summed"] / n)
    assert results["hits_at_1_blind"] == pytest.approx(hits["blind_per_token"] / n)
    assert results["hits_at_1_summed_blind"] == pytest.approx(hits["blind_summed"] / n)


def test_hits_at_1_against_similar_distractors_names_them(bot, examples):
    similar = evaluate(bot, examples, hits_k=3, distractors="similar", samples=0)
    assert similar["hits_distractors"] == "similar"
    assert evaluate(bot, examples, hits_k=3, samples=0)["hits_distractors"] == "random"
    assert 0 <= similar["hits_at_1"] <= 1 and 0 <= similar["hits_at_1_blind"] <= 1


def test_hits_at_1_is_skipped_with_its_reason_when_too_few_dialogues(bot, examples):
    results = evaluate(bot, examples, hits_k=20)
    assert results["hits_k"] == 20 and "hits_at_1" not in results
    assert re.search(r"hits@1/20 needs 19 distractor replies", results["hits_skipped"])
    with pytest.raises(ConfigError, match="hits_k"):
        evaluate(bot, examples, hits_k=1)


def test_replies_and_metrics_for_every_example(bot, examples):
    results = evaluate(bot, examples, batch_size=5)
    assert results["examples"] == results["replies"] == len(examples)
    assert set(METRICS) <= set(results)
    assert 0 <= results["bleu"] <= 100 and results["replies_per_second"] > 0
    assert json.loads(json.dumps(results)) == results
    first = results["samples"][0]
    assert len(results["samples"]) == 5
    assert first["context"] == list(examples[0].context)
    assert first["reference"] == examples[0].response
    assert first["reply"] == bot.reply(examples[0].context[-1], examples[0].context[:-1]).text


def test_limit_and_decoding_settings_pass_through(bot, examples):
    results = evaluate(bot, examples, limit=3, samples=2, strategy="beam", beam_width=3)
    assert results["examples"] == results["replies"] == 3 and len(results["samples"]) == 2
    assert results["decoding"]["strategy"] == "beam" and results["decoding"]["beam_width"] == 3
    beam = bot.reply_batch(
        [ex.context[-1] for ex in examples[:2]],
        [ex.context[:-1] for ex in examples[:2]],
        strategy="beam",
        beam_width=3,
    )
    assert [sample["reply"] for sample in results["samples"]] == [reply.text for reply in beam]


def test_bad_settings_are_refused(bot, examples):
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate(bot, examples, batch_size=0)
    with pytest.raises(ConfigError, match="limit"):
        evaluate(bot, examples, limit=0)
    with pytest.raises(ConfigError, match="samples"):
        evaluate(bot, examples, samples=-1)
    with pytest.raises(ConfigError, match="beam_width"):
        evaluate(bot, examples, beam_width=0)
    with pytest.raises(DataError, match="no examples"):
        evaluate(bot, [])


def test_format_report_shows_every_metric_and_the_samples(bot, examples):
    results = evaluate(bot, examples, limit=4, samples=2)
    report = format_report(results)
    for key in METRICS:
        assert re.search(rf"^{key} +\S", report, re.MULTILINE)
    assert re.search(rf"^perplexity +{results['perplexity']:.4f}$", report, re.MULTILINE)
    assert "decoding: strategy=greedy" in report
    sample = results["samples"][1]
    assert len(sample["context"]) == 2
    assert f"  context:   {sample['context'][0]}\n             {sample['context'][1]}\n" in report
    assert f"  reply:     {sample['reply']}" in report
    assert "[3]" not in report


def test_plot_attention_writes_a_png(bot, examples, tmp_path):
    path = plot_attention(bot, examples[0], tmp_path / "plots" / "attention.png")
    assert path == tmp_path / "plots" / "attention.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_plot_attention_refuses_a_model_without_attention(bot, examples, tmp_path):
    config = bot.config.model_copy(
        update={"model": bot.config.model.model_copy(update={"attention": "none"})}
    )
    model = Seq2Seq(config.model, bot.tokenizer.vocab_size)
    model.build()
    plain = Chatbot(Bundle(config, bot.tokenizer, model))
    with pytest.raises(ConfigError, match="no attention"):
        plot_attention(plain, examples[0], tmp_path / "attention.png")
    assert not (tmp_path / "attention.png").exists()
