import itertools

import keras
import numpy as np
import pytest

from chatbot.config import ModelConfig, TrainingConfig
from chatbot.model.cells import CELL_TYPES
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import BOS_ID, PAD_ID

ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general", "luong_concat")
VOCAB = 23


def tiny(**changes) -> ModelConfig:
    base = dict(embedding_dim=6, hidden_size=8, attention_units=5, dropout=0.0)
    return ModelConfig.model_validate({**base, **changes})


def batch(seed=0, source_len=7, target_len=5, pad_from=(5, 7, 3)):
    rng = np.random.default_rng(seed)
    source = rng.integers(5, VOCAB, (3, source_len)).astype("int32")
    for row, start in enumerate(pad_from):
        source[row, start:] = PAD_ID
    decoder = rng.integers(5, VOCAB, (3, target_len)).astype("int32")
    return {"source_ids": source, "decoder_input_ids": decoder}


def build(config: ModelConfig) -> Seq2Seq:
    keras.utils.set_random_seed(1)
    model = Seq2Seq(config, VOCAB)
    model.build()
    return model


@pytest.mark.parametrize(
    ("cell", "attention", "bidirectional"),
    list(itertools.product(CELL_TYPES, ATTENTIONS, (False, True))),
)
def test_every_cell_attention_and_direction_gives_the_right_shapes(cell, attention, bidirectional):
    config = tiny(
        encoder={"cell": cell, "bidirectional": bidirectional},
        decoder={"cell": cell},
        attention=attention,
    )
    logits, weights = build(config)(batch(), return_attention=True)
    assert logits.shape == (3, 5, VOCAB)
    if attention == "none":
        assert weights is None
    else:
        assert weights.shape == (3, 5, 7)
        np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("attention", ATTENTIONS[1:])
def test_padded_source_positions_get_zero_attention(attention):
    _, weights = build(tiny(attention=attention))(batch(), return_attention=True)
    weights = np.asarray(weights)
    assert (weights[0, :, 5:] == 0).all() and (weights[2, :, 3:] == 0).all()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"attention": "bahdanau"},
        {"encoder": {"cell": "lstm", "layers": 2, "merge": "concat"}, "decoder": {"cell": "lstm"}},
        {"input_feeding": True, "layer_norm": True},
    ],
)
def test_extra_padding_does_not_change_the_output(changes):
    model = build(tiny(**changes))
    inputs = batch(pad_from=(7, 7, 7))
    padded = dict(inputs, source_ids=np.pad(inputs["source_ids"], ((0, 0), (0, 4))))
    np.testing.assert_allclose(model(inputs), model(padded), atol=1e-5)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"attention": "none", "decoder": {"cell": "lstm", "layers": 2}},
        {"attention": "bahdanau", "decoder": {"cell": "lstm_coupled"}},
        {"input_feeding": True, "attention": "luong_dot"},
        {"tie_output_embedding": True, "share_embeddings": False},
    ],
)
def test_decode_step_reproduces_the_teacher_forced_logits(changes):
    """The single-step function the decoding loop uses agrees with training's full pass."""
    model = build(tiny(**changes))
    inputs = batch()
    expected = np.asarray(model(inputs))
    encoded = model.encode(inputs["source_ids"])
    attentional = model.initial_attentional(inputs["source_ids"])
    for t in range(inputs["decoder_input_ids"].shape[1]):
        step = model.decode_step(inputs["decoder_input_ids"][:, t], encoded, attentional)
        np.testing.assert_allclose(step.logits, expected[:, t], atol=1e-5)
        encoded, attentional = encoded._replace(states=step.states), step.attentional


def test_step_loop_with_full_teacher_forcing_equals_the_parallel_pass():
    model = build(tiny())
    inputs = batch()
    parallel = model(inputs)
    looped = model(inputs, teacher_forcing=1.0)
    np.testing.assert_allclose(parallel, looped, atol=1e-5)
    sampled = model(inputs, teacher_forcing=0.0)
    assert not np.allclose(parallel, sampled, atol=1e-3)


def test_bridges_appear_only_where_widths_differ():
    assert build(tiny()).bridges == {}
    concat = build(tiny(encoder={"merge": "concat"}, attention="luong_general"))
    assert sorted(concat.bridges) == ["0_h"]
    gru_to_lstm = build(
        tiny(encoder={"cell": "gru", "layers": 2}, decoder={"cell": "lstm", "layers": 3})
    )
    assert gru_to_lstm.bridges == {}
    states = gru_to_lstm.encode(batch()["source_ids"]).states
    assert len(states) == 3 and all(len(s) == 2 for s in states)
    assert not np.asarray(states[0][1]).any()  # an LSTM's c starts at zero after a GRU


def test_tied_output_embedding_has_no_separate_projection():
    tied = build(tiny(tie_output_embedding=True))
    untied = build(tiny())
    assert tied.output_projection is None
    assert tied.count_params() < untied.count_params()


def test_dot_attention_with_concatenated_encoder_is_a_config_error():
    with pytest.raises(ValueError, match=r"luong_dot.*merge 'sum'"):
        tiny(attention="luong_dot", encoder={"merge": "concat"})


def test_save_and_load_in_safe_mode_give_identical_logits(tmp_path):
    config = tiny(
        attention="bahdanau",
        decoder={"cell": "lstm_peephole"},
        layer_norm=True,
        tie_output_embedding=True,
        input_feeding=True,
    )
    model = build(config)
    inputs = batch()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    assert isinstance(loaded, Seq2Seq)
    assert loaded.model_config == config
    np.testing.assert_array_equal(model(inputs), loaded(inputs))


@pytest.mark.parametrize("tied", [False, True])
def test_unseen_pieces_start_low_and_seen_ones_keep_their_logits(tied):
    config = tiny(share_embeddings=tied, tie_output_embedding=tied, embedding_dim=8)
    model = build(config)
    inputs = batch()
    before = keras.ops.convert_to_numpy(model(inputs))
    seen = np.array([0, 3, 7, 11])
    model.start_unseen_pieces_low(seen)
    after = keras.ops.convert_to_numpy(model(inputs))
    unseen = np.setdiff1d(np.arange(VOCAB), seen)
    np.testing.assert_allclose(after[..., seen], before[..., seen], rtol=1e-6, atol=1e-6)
    if tied:  # the shared embedding stays: only the bias moves, by exactly -10
        np.testing.assert_allclose(after[..., unseen], before[..., unseen] - 10, atol=1e-5)
    else:  # no weights: the logit is the bias alone
        np.testing.assert_allclose(after[..., unseen], -10.0)


def test_loading_never_asks_keras_for_a_shared_object(tmp_path, monkeypatch):
    """Keras keys objects shared within a load by id(), which a freed layer's successor can
    reuse: a model whose layers asked for shared objects could load another layer in their
    place, at random. A stand-in that answers every such request with a wrong layer makes
    that happen every time, so the model must never ask."""
    from keras.src.saving import serialization_lib

    config = tiny(encoder={"layers": 3, "bidirectional": True})
    model = build(config)
    model.save(tmp_path / "m.keras")
    wrong = keras.layers.GRU(4, go_backwards=True)
    monkeypatch.setattr(serialization_lib, "get_shared_object", lambda obj_id: wrong)
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    np.testing.assert_array_equal(model(batch()), loaded(batch()))


def test_the_ranking_loss_scores_each_reply_against_the_next_rows_replies():
    model = build(tiny(attention="luong_general"))
    model.configure_training(TrainingConfig(contrastive_weight=0.5, contrastive_negatives=2))
    inputs = batch(seed=3)
    rng = np.random.default_rng(4)
    targets = rng.integers(5, VOCAB, (3, 5)).astype("int32")
    targets[1] = targets[0]  # the same reply twice: neither is the other's negative
    inputs["decoder_input_ids"][1] = inputs["decoder_input_ids"][0]
    weights = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32")
    objective, _ = model._batch_loss((inputs, targets, weights), training=True)

    def log_likelihood(source: int, reply: int) -> float:
        logits = model(
            {
                "source_ids": inputs["source_ids"][source : source + 1],
                "decoder_input_ids": inputs["decoder_input_ids"][reply : reply + 1],
            }
        )
        log_probs = np.asarray(keras.ops.log_softmax(logits[0], axis=-1))
        true = log_probs[np.arange(5), targets[reply]]
        return float((true * weights[reply]).sum() / weights[reply].sum())

    ranking = []
    for row in range(3):
        others = [(row - shift) % 3 for shift in (1, 2)]
        scores = [log_likelihood(row, row)]
        scores += [log_likelihood(row, o) for o in others if (targets[o] != targets[row]).any()]
        scores = np.array(scores)
        ranking.append(np.log(np.exp(scores).sum()) - scores[0])
    own = [log_likelihood(row, row) * weights[row].sum() for row in range(3)]
    token_loss = -sum(own) / weights.sum()
    expected = token_loss + 0.5 * np.mean(ranking)
    np.testing.assert_allclose(float(objective), expected, rtol=1e-4)


def test_the_ranking_loss_scores_each_reply_against_its_mined_negatives_too():
    model = build(tiny(attention="luong_general"))
    training = TrainingConfig(
        contrastive_weight=1.0, contrastive_negatives=0, contrastive_hard_negatives=2
    )
    model.configure_training(training)
    inputs = batch(seed=5)
    rng = np.random.default_rng(6)
    targets = rng.integers(5, VOCAB, (3, 5)).astype("int32")
    inputs["decoder_input_ids"] = np.concatenate(
        [np.full((3, 1), BOS_ID, "int32"), targets[:, :-1]], axis=1
    )
    weights = np.ones((3, 5), "float32")
    negative_targets = rng.integers(5, VOCAB, (3, 2, 4)).astype("int32")
    negative_targets[:, :, 3] = [[3, 0], [3, 3], [0, 3]]  # EOS-ended, or one shorter
    negative_targets[0, 1, 2:] = PAD_ID
    negative_targets[2, 0, 2:] = PAD_ID
    inputs["negative_targets"] = negative_targets
    inputs["negative_decoder_input_ids"] = np.concatenate(
        [np.full((3, 2, 1), BOS_ID, "int32"), negative_targets[:, :, :-1]], axis=2
    ) * (negative_targets != PAD_ID)
    objective, _ = model._batch_loss((inputs, targets, weights), training=True)

    def log_likelihood(row: int, decoder_ids: np.ndarray, reply: np.ndarray) -> float:
        logits = model(
            {"source_ids": inputs["source_ids"][row : row + 1], "decoder_input_ids": decoder_ids}
        )
        log_probs = np.asarray(keras.ops.log_softmax(logits[0], axis=-1))
        kept = reply != PAD_ID
        return float(log_probs[np.arange(len(reply)), reply][kept].mean())

    ranking, own = [], []
    for row in range(3):
        scores = [log_likelihood(row, inputs["decoder_input_ids"][row : row + 1], targets[row])]
        own.append(scores[0] * 5)
        for k in range(2):
            decoder_ids = inputs["negative_decoder_input_ids"][row, k][None]
            scores.append(log_likelihood(row, decoder_ids, negative_targets[row, k]))
        scores = np.array(scores)
        ranking.append(np.log(np.exp(scores).sum()) - scores[0])
    expected = -sum(own) / weights.sum() + np.mean(ranking)
    np.testing.assert_allclose(float(objective), expected, rtol=1e-4)


def test_source_side_ranking_scores_each_reply_after_other_contexts():
    model = build(tiny(attention="luong_general", encoder={"bidirectional": True, "layers": 2}))
    training = TrainingConfig(
        contrastive_weight=0.5,
        contrastive_negatives=2,
        contrastive_hard_negatives=1,
        contrastive_side="source",
    )
    model.configure_training(training)
    inputs = batch(seed=7)
    inputs["source_ids"][1] = inputs["source_ids"][0]  # the same context twice: no negative
    rng = np.random.default_rng(8)
    targets = rng.integers(5, VOCAB, (3, 5)).astype("int32")
    targets[2] = targets[0]  # the same reply to two contexts: neither is the other's negative
    inputs["decoder_input_ids"][2] = inputs["decoder_input_ids"][0]
    weights = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "float32")
    hard = rng.integers(5, VOCAB, (3, 1, 4)).astype("int32")
    hard[1, 0, 2:] = PAD_ID
    hard[2, 0, :] = PAD_ID  # no mined negative for this row
    inputs["negative_source_ids"] = hard
    objective, _ = model._batch_loss((inputs, targets, weights), training=True)

    def log_likelihood(source: np.ndarray, reply: int) -> float:
        logits = model(
            {
                "source_ids": source[None],
                "decoder_input_ids": inputs["decoder_input_ids"][reply : reply + 1],
            }
        )
        log_probs = np.asarray(keras.ops.log_softmax(logits[0], axis=-1))
        true = log_probs[np.arange(5), targets[reply]]
        return float((true * weights[reply]).sum() / weights[reply].sum())

    sources = inputs["source_ids"]
    ranking, own = [], []
    for row in range(3):
        scores = [log_likelihood(sources[row], row)]
        own.append(scores[0] * weights[row].sum())
        for other in ((row - shift) % 3 for shift in (1, 2)):
            if (sources[other] != sources[row]).any() and (targets[other] != targets[row]).any():
                scores.append(log_likelihood(sources[other], row))
        if (hard[row, 0] != PAD_ID).any():
            scores.append(log_likelihood(hard[row, 0], row))
        scores = np.array(scores)
        ranking.append(np.log(np.exp(scores).sum()) - scores[0])
    expected = -sum(own) / weights.sum() + 0.5 * np.mean(ranking)
    np.testing.assert_allclose(float(objective), expected, rtol=1e-4)
