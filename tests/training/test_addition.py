"""Exact answers are learned: on three-digit addition generated here (`485+739` -> `1224`),
the exact-answer config (configs/exact.yaml: character pieces, the text kept as written, an
attention model) gets at least 99% of held-out sums exactly right with greedy decoding.

The data go the way a user's do: a TSV through `prepare` (normalizer and char tokenizer), and
the replies come from the `Chatbot` facade, detokenized. The training loop is the test's own, as
in test_learning.py: Keras `fit` with a linear warm-up and a cosine learning-rate decay, after
starting the logits of pieces no answer uses low (`Seq2Seq.start_unseen_pieces_low`, as
`chatbot train` does).
Subword pieces fail this task (issue 20: about 60% exact match after ten CPU-minutes) because
they merge digits differently from one number to the next; with one piece a digit, place value
looks the same in every sum. No test sum occurs in training: the model must add, not recall."""

import time
from pathlib import Path

import keras
import numpy as np
import pytest

from chatbot.bot import Chatbot
from chatbot.bundle import Bundle
from chatbot.config import load_config
from chatbot.model.seq2seq import Seq2Seq
from chatbot.prepare import PreparedData, prepare
from chatbot.tokenizer import BOS_ID, EOS_ID, Tokenizer
from chatbot.training.optimizer import FusedAdam

# With GRU cells and unscaled attention scores the result depended on the seed (exact match
# by seed 0/1/2: 1.00/0.99/0.16 at a peak learning rate of 0.005). The config's LSTM cells and
# scaled scores, with this warm-up to 0.01 and 12 epochs, give 1.00/1.00/1.00/0.998 at seeds
# 0-3, in 155-168 CPU-seconds to prepare and train on a loaded 2-core machine (10 epochs:
# 0.98 at seed 0; batch 32: 0.97 or 0.95 at seed 3).

EXACT = Path(__file__).resolve().parents[2] / "configs" / "exact.yaml"
TRAIN, TEST = 20_000, 500
EPOCHS, BATCH = 12, 64
PEAK_LR, WARMUP = 0.01, 300


def sums(count: int, seed: int, exclude: set[tuple[int, int]] = frozenset()) -> list[tuple]:
    """`count` distinct (a, b) with 0 <= a, b <= 999, none in `exclude`."""
    rng = np.random.default_rng(seed)
    chosen: dict[tuple[int, int], None] = {}
    while len(chosen) < count:
        pair = tuple(int(x) for x in rng.integers(0, 1000, 2))
        if pair not in exclude:
            chosen[pair] = None
    return list(chosen)


def arrays(data: PreparedData) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The training split as the pipeline's (inputs, targets, weights), padded to fixed widths."""
    examples = data.examples("train")
    tokenizer: Tokenizer = data.tokenizer
    sources = tokenizer.encode([example.context[-1] for example in examples])
    targets = tokenizer.encode([example.response for example in examples])
    width_s, width_t = max(map(len, sources)) + 1, max(map(len, targets)) + 1
    source, decoder_input, target = (
        np.zeros((len(examples), width), "int32") for width in (width_s, width_t, width_t)
    )
    for row, (s, t) in enumerate(zip(sources, targets, strict=True)):
        source[row, : len(s) + 1] = [*s, EOS_ID]
        target[row, : len(t) + 1] = [*t, EOS_ID]
        decoder_input[row, : len(t) + 1] = [BOS_ID, *t]
    inputs = {"source_ids": source, "decoder_input_ids": decoder_input}
    return inputs, target, (target != 0).astype("float32")


@pytest.fixture(scope="module")
def adder(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("addition")
    test = sums(TEST, seed=1)
    train = sums(TRAIN, seed=0, exclude=set(test))
    lines = "".join(f"{a}+{b}\t{a + b}\n" for a, b in train)
    (root / "sums.tsv").write_text(lines, encoding="utf-8")
    config = load_config(EXACT, ["data.valid_fraction=0"])
    started = time.process_time()
    prepare("tsv", [root / "sums.tsv"], root / "data", config.data)
    data = PreparedData.load(root / "data")
    keras.utils.set_random_seed(0)
    model = Seq2Seq(config.model, data.tokenizer.vocab_size)
    model.build()
    inputs, target, weights = arrays(data)
    model.start_unseen_pieces_low(np.unique(target))  # as `chatbot train` does
    steps = EPOCHS * -(-TRAIN // BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - WARMUP, alpha=0.02, warmup_target=PEAK_LR, warmup_steps=WARMUP
    )
    model.compile(optimizer=FusedAdam(schedule, global_clipnorm=config.training.clip_norm))
    model.fit(inputs, target, sample_weight=weights, batch_size=BATCH, epochs=EPOCHS, verbose=0)
    print(f"\nprepare and train: {time.process_time() - started:.0f} CPU-seconds")
    return Chatbot(Bundle(config, data.tokenizer, model)), test


def test_exact_config_adds_held_out_three_digit_numbers(adder):
    bot, test = adder
    assert bot.config.data.tokenizer.model_type == "char"
    started = time.process_time()
    replies = bot.reply_batch([f"{a}+{b}" for a, b in test])
    pairs = zip(replies, test, strict=True)
    wrong = [(f"{a}+{b}", reply.text) for reply, (a, b) in pairs if reply.text != str(a + b)]
    exact = 1 - len(wrong) / len(test)
    print(f"exact match {exact:.3f} ({time.process_time() - started:.0f} CPU-s); wrong: {wrong}")
    assert exact >= 0.99, wrong
