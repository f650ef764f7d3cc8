"""The encoder-decoder model: embeddings, a stacked (optionally bidirectional) recurrent encoder,
a bridge from encoder to decoder states, a stacked recurrent decoder with attention, and an
output projection to the vocabulary.

Attention follows Luong et al. (2015) for the `luong_*` kinds (attend with the new decoder
state, then combine) and Bahdanau et al. (2015) for `bahdanau` (attend with the previous state
and feed the context into the recurrent step).

Two ways through the decoder share every weight:
- `decode_step` runs one token for a whole batch: the decoding loop calls it;
- training runs whole sequences. With plain teacher forcing, Luong attention and no input
  feeding, each decoder layer runs as one fused sequence layer and attention is computed for
  all steps at once, which is the fast path; Bahdanau attention, input feeding and scheduled
  sampling make each step depend on the previous one's output, so those run `decode_step` in
  a `tf.while_loop`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from chatbot.config import ModelConfig, ScheduledSamplingConfig, TrainingConfig
from chatbot.model.attention import make_attention
from chatbot.model.cells import make_rnn, state_names
from chatbot.tokenizer import PAD_ID
from chatbot.training.losses import (
    masked_cross_entropy,
    mean_token_log_likelihood,
    ranking_loss,
)
from chatbot.training.schedules import teacher_forcing_probability

UNSEEN_BIAS = -10.0  # exp(-10): a few hundred unseen pieces share about 1% of the probability

States = list[list[Any]]


class Encoded(NamedTuple):
    """What the decoder needs from the source, computed once per batch."""

    memory: Any  # [B, S, Dm] encoder outputs
    memory_mask: Any  # [B, S] bool, True on real tokens
    keys: Any  # attention's precomputed projection of memory, or None
    states: States  # initial states per decoder layer, ordered as cells.state_names


class Step(NamedTuple):
    """One decoder step for a batch."""

    logits: Any  # [B, V]
    states: States
    attentional: Any  # [B, H]: what input feeding passes to the next step
    weights: Any  # [B, S] attention weights, or None without attention


@keras.saving.register_keras_serializable(package="chatbot")
class Seq2Seq(keras.Model):
    """Inputs: {"source_ids": [B, S], "decoder_input_ids": [B, T]} int32, PAD_ID-padded.
    Output: logits [B, T, V] (and attention weights [B, T, S] with `return_attention=True`)."""

    def __init__(self, config: dict[str, Any] | ModelConfig, vocab_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.model_config = ModelConfig.model_validate(config)
        self.vocab_size = int(vocab_size)
        c = self.model_config
        hidden = c.hidden_size
        self.source_embedding = layers.Embedding(
            vocab_size, c.embedding_dim, name="source_embedding"
        )
        self.target_embedding = (
            self.source_embedding
            if c.share_embeddings
            else layers.Embedding(vocab_size, c.embedding_dim, name="target_embedding")
        )
        self.encoder_layers = [self._encoder_layer(i) for i in range(c.encoder.layers)]
        self.decoder_layers = [
            make_rnn(
                c.decoder.cell,
                hidden,
                activation=c.rnn_activation,
                layer_norm=c.layer_norm,
                name=f"decoder_{i}",
            )
            for i in range(c.decoder.layers)
        ]
        self.dropout = layers.Dropout(c.dropout)
        concat = c.encoder.bidirectional and c.encoder.merge == "concat"
        self.encoder_width = hidden * (2 if concat else 1)
        shared = set(state_names(c.encoder.cell)) & set(state_names(c.decoder.cell))
        self.bridges = {
            f"{j}_{name}": layers.Dense(hidden, name=f"bridge_{j}_{name}")
            for j in range(c.decoder.layers)
            for name in sorted(shared)
            if self.encoder_width != hidden
        }
        self.attention = make_attention(
            c.attention, c.attention_units, name="attention", scale=c.attention_scale
        )
        self.combine = (
            layers.Dense(hidden, activation="tanh", use_bias=False, name="attentional")
            if self.attention is not None
            else None
        )
        if c.tie_output_embedding:
            self.output_bridge = layers.Dense(c.embedding_dim, use_bias=False, name="output_bridge")
            self.output_projection = None
        else:
            self.output_bridge = None
            self.output_projection = layers.Dense(vocab_size, name="output_projection")
        self.sampling = ScheduledSamplingConfig()
        self.label_smoothing = 0.0
        self.contrastive_weight = 0.0
        self.contrastive_negatives = 1
        self.contrastive_hard_negatives = 0
        self.contrastive_side = "target"
        self.sampling_seed = keras.random.SeedGenerator(0, name="sampling_seed")
        self.loss_sum = keras.metrics.Mean(name="loss")
        self.nll_sum = keras.metrics.Mean(name="nll")
        self.ranking_sum = keras.metrics.Mean(name="ranking_loss")

    def _encoder_layer(self, index: int) -> layers.Layer:
        c = self.model_config

        def rnn(name: str, go_backwards: bool = False) -> layers.Layer:
            return make_rnn(
                c.encoder.cell,
                c.hidden_size,
                activation=c.rnn_activation,
                layer_norm=c.layer_norm,
                go_backwards=go_backwards,
                name=name,
            )

        if not c.encoder.bidirectional:
            return rnn(f"encoder_{index}")
        # The backward layer is made here rather than left to Keras: Bidirectional would
        # serialize the forward layer twice to mirror it, and while a model loads, Keras'
        # ObjectSharingScope keys that config by id(layer), which the freed template of an
        # earlier encoder layer may have had; it then hands back that layer's backward half
        # as this one's forward half, and loading fails at random ("Forward layer and
        # backward layer should have different `go_backwards` value").
        return layers.Bidirectional(
            rnn(f"encoder_{index}"),
            backward_layer=rnn(f"backward_encoder_{index}", go_backwards=True),
            merge_mode=c.encoder.merge,
            name=f"encoder_{index}_bi",
        )

    def configure_training(self, training: TrainingConfig) -> None:
        """Training-only settings, used by `train_step`; not part of the saved architecture."""
        self.sampling = training.scheduled_sampling
        self.label_smoothing = float(training.label_smoothing)
        self.contrastive_weight = float(training.contrastive_weight)
        self.contrastive_negatives = int(training.contrastive_negatives)
        self.contrastive_hard_negatives = int(training.contrastive_hard_negatives)
        self.contrastive_side = training.contrastive_side

    def start_unseen_pieces_low(self, seen_ids: np.ndarray, bias: float = UNSEEN_BIAS) -> None:
        """Start the logits of the pieces outside `seen_ids` (those no training target holds)
        at `bias`, with zero output weights where they are the model's own (untied).

        A tokenizer has pieces its replies never use: byte fallback alone adds 256. At their
        random start they take probability from the pieces that matter, and a small model
        learns slower for it: on three-digit addition with a char tokenizer (273 pieces, 16
        used), a GRU model of configs/exact.yaml's size reached 3% exact match after ten
        epochs, against 72% started low. Training still pushes them down from there."""
        unseen = np.setdiff1d(np.arange(self.vocab_size), seen_ids)
        if self.output_projection is not None:
            kernel, biases = self.output_projection.get_weights()
            kernel[:, unseen], biases[unseen] = 0.0, bias
            self.output_projection.set_weights([kernel, biases])
        else:
            biases = ops.convert_to_numpy(self.output_bias)
            biases[unseen] = bias
            self.output_bias.assign(biases)

    # ---- building and serialization -------------------------------------------------------

    def build(self, input_shape: Any = None) -> None:
        """Create every weight with a dummy batch, so that no path creates weights inside a
        loop later, and a restored model has all its variables before weights load."""
        if self.output_bridge is not None:
            self.output_bias = self.add_weight(
                shape=(self.vocab_size,), initializer="zeros", name="output_bias"
            )
        if self.attention is not None:
            hidden = self.model_config.hidden_size
            self.attention.build((None, hidden), (None, None, self.encoder_width))
        source = ops.ones((1, 2), "int32")
        encoded = self.encode(source)
        self.decode_step(source[:, 0], encoded, self.initial_attentional(source))
        if self.parallel_decoding:
            self._decode_parallel(source, encoded)
        self.built = True

    def get_config(self) -> dict[str, Any]:
        return {
            "config": self.model_config.model_dump(mode="json"),
            "vocab_size": self.vocab_size,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Seq2Seq:
        return cls(**config)

    # ---- encoder ------------------------------------------------------------------------------

    def encode(self, source_ids: Any, training: bool = False) -> Encoded:
        c = self.model_config
        mask = ops.not_equal(source_ids, PAD_ID)
        x = self.source_embedding(source_ids)
        names = state_names(c.encoder.cell)
        final: list[dict[str, Any]] = []
        for layer in self.encoder_layers:
            x = self.dropout(x, training=training)
            x, *states = layer(x, mask=mask, training=training)
            if c.encoder.bidirectional:
                forward, backward = states[: len(names)], states[len(names) :]
                merge = ops.add if c.encoder.merge == "sum" else self._concat
                states = [merge(f, b) for f, b in zip(forward, backward, strict=True)]
            final.append(dict(zip(names, states, strict=True)))
        keys = self.attention.precompute(x) if self.attention is not None else None
        return Encoded(x, mask, keys, self._bridge(final))

    @staticmethod
    def _concat(a: Any, b: Any) -> Any:
        return ops.concatenate([a, b], axis=-1)

    def _bridge(self, encoder_states: list[dict[str, Any]]) -> States:
        """Initial decoder states: decoder layer j takes encoder layer L_enc - L_dec + j (the top
        ones; the first when the encoder is shallower), projected when widths differ; a state
        the encoder cell lacks (an LSTM's c after a GRU) starts at zero."""
        n_enc, n_dec = len(encoder_states), self.model_config.decoder.layers
        result: States = []
        for j in range(n_dec):
            source = encoder_states[max(0, n_enc - n_dec + j)]
            h = self._bridged(j, "h", source["h"])
            states = [h]
            if "c" in state_names(self.model_config.decoder.cell):
                states.append(
                    self._bridged(j, "c", source["c"]) if "c" in source else ops.zeros_like(h)
                )
            result.append(states)
        return result

    def _bridged(self, layer: int, name: str, value: Any) -> Any:
        bridge = self.bridges.get(f"{layer}_{name}")
        return bridge(value) if bridge is not None else value

    # ---- decoder ------------------------------------------------------------------------------

    @property
    def parallel_decoding(self) -> bool:
        """Whether teacher-forced steps are independent given the true tokens, so that whole
        sequences run at once: not when a step's input holds the previous step's attention."""
        return not (self.model_config.input_feeding or self.attends_before_step)

    def initial_attentional(self, source_ids: Any) -> Any:
        """The zero 'previous attentional vector' that input feeding starts from."""
        return ops.zeros((ops.shape(source_ids)[0], self.model_config.hidden_size))

    @property
    def attends_before_step(self) -> bool:
        """Bahdanau et al. (2015) attend with the previous decoder state and feed the context
        into the recurrent step; Luong et al. (2015) attend with the new state, after it."""
        return self.model_config.attention == "bahdanau"

    def _attend(self, query: Any, encoded: Encoded) -> tuple[Any, Any]:
        return self.attention(query, encoded.memory, encoded.keys, encoded.memory_mask)

    def _readout(
        self, h: Any, encoded: Encoded, training: bool, attended: tuple[Any, Any] | None = None
    ) -> tuple[Any, Any, Any]:
        """(logits, attentional vector, attention weights) from the top decoder output(s);
        `attended` is the (context, weights) already computed before the step, if any."""
        weights = None
        attentional = h
        if self.attention is not None:
            context, weights = attended or self._attend(h, encoded)
            attentional = self.combine(ops.concatenate([context, h], axis=-1))
        x = self.dropout(attentional, training=training)
        if self.output_projection is not None:
            logits = self.output_projection(x)
        else:
            embeddings = ops.cast(self.target_embedding.embeddings, x.dtype)
            logits = ops.matmul(self.output_bridge(x), ops.transpose(embeddings))
            logits = logits + ops.cast(self.output_bias, logits.dtype)
        return logits, attentional, weights

    def decode_step(
        self, token_ids: Any, encoded: Encoded, attentional: Any, training: bool = False
    ) -> Step:
        """One step for a batch: previous tokens [B] and states in, logits [B, V] out."""
        x = self.target_embedding(token_ids)
        if self.model_config.input_feeding:
            x = ops.concatenate([x, ops.cast(attentional, x.dtype)], axis=-1)
        attended = None
        if self.attends_before_step:
            attended = self._attend(encoded.states[-1][0], encoded)
            x = ops.concatenate([x, ops.cast(attended[0], x.dtype)], axis=-1)
        new_states: States = []
        for layer, states in zip(self.decoder_layers, encoded.states, strict=True):
            x = self.dropout(x, training=training)
            x, states = layer.cell(x, states, training=training)
            new_states.append(list(states))
        logits, attentional, weights = self._readout(x, encoded, training, attended)
        return Step(logits, new_states, attentional, weights)

    def _decode_parallel(self, decoder_ids: Any, encoded: Encoded, training: bool = False):
        mask = ops.not_equal(decoder_ids, PAD_ID)
        x = self.target_embedding(decoder_ids)
        for layer, states in zip(self.decoder_layers, encoded.states, strict=True):
            x = self.dropout(x, training=training)
            x = layer(x, mask=mask, initial_state=states, training=training)[0]
        logits, _, weights = self._readout(x, encoded, training)
        return logits, weights

    def _decode_loop(
        self,
        decoder_ids: Any,
        encoded: Encoded,
        teacher_forcing: Any = None,
        training: bool = False,
    ) -> tuple[Any, Any]:
        """Step by step over the target. With `teacher_forcing` (a probability), each next input
        is the true token with that probability, else a sample from the model's own output
        distribution (scheduled sampling); gradients do not flow through the choice."""
        decoder_ids = ops.cast(decoder_ids, "int32")
        batch, length = ops.shape(decoder_ids)[0], ops.shape(decoder_ids)[1]
        logits_out = tf.TensorArray(self.compute_dtype, size=length)
        weights_out = tf.TensorArray(self.compute_dtype, size=length)

        def body(t, token, states, attentional, logits_out, weights_out):
            step = self.decode_step(token, encoded._replace(states=states), attentional, training)
            logits_out = logits_out.write(t, step.logits)
            if step.weights is not None:
                weights_out = weights_out.write(t, ops.cast(step.weights, self.compute_dtype))
            truth = tf.gather(decoder_ids, ops.minimum(t + 1, length - 1), axis=1)
            if teacher_forcing is not None:
                sampled = keras.random.categorical(
                    ops.cast(step.logits, "float32"), 1, seed=self.sampling_seed, dtype="int32"
                )[:, 0]
                keep = keras.random.uniform((batch,), seed=self.sampling_seed) < teacher_forcing
                truth = ops.where(keep, truth, sampled)
            return t + 1, truth, step.states, step.attentional, logits_out, weights_out

        initial = (0, decoder_ids[:, 0], encoded.states, self.initial_attentional(decoder_ids))
        *_, logits_out, weights_out = tf.while_loop(
            lambda t, *_: t < length, body, (*initial, logits_out, weights_out)
        )
        logits = tf.transpose(logits_out.stack(), [1, 0, 2])
        weights = tf.transpose(weights_out.stack(), [1, 0, 2]) if self.attention else None
        return logits, weights

    def call(
        self,
        inputs: dict[str, Any],
        training: bool = False,
        teacher_forcing: Any = None,
        return_attention: bool = False,
    ) -> Any:
        encoded = self.encode(inputs["source_ids"], training=training)
        logits, weights = self._decode(
            inputs["decoder_input_ids"], encoded, teacher_forcing, training
        )
        return (logits, weights) if return_attention else logits

    def _decode(
        self, decoder_ids: Any, encoded: Encoded, teacher_forcing: Any, training: bool
    ) -> tuple[Any, Any]:
        """(logits, attention weights) of whole target sequences, teacher-forced."""
        if teacher_forcing is None and self.parallel_decoding:
            return self._decode_parallel(decoder_ids, encoded, training)
        return self._decode_loop(decoder_ids, encoded, teacher_forcing, training)

    # ---- training -----------------------------------------------------------------------------

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_sum, self.nll_sum, self.ranking_sum]

    def _results(self, training: bool = False) -> dict[str, Any]:
        nll = self.nll_sum.result()
        results = {"loss": self.loss_sum.result(), "perplexity": ops.exp(ops.minimum(nll, 50.0))}
        if training and self.contrastive_weight:
            results["ranking_loss"] = self.ranking_sum.result()
        return results

    def _batch_loss(
        self, data: Any, training: bool, teacher_forcing: Any = None
    ) -> tuple[Any, Any]:
        """(what training minimizes, target tokens) of one batch: the mean smoothed loss per
        target token, plus the weighted ranking loss when training with one. `loss` in the
        logs is the token loss alone, comparable with `val_loss`."""
        inputs, targets, weights = data
        encoded = self.encode(inputs["source_ids"], training=training)
        logits, _ = self._decode(inputs["decoder_input_ids"], encoded, teacher_forcing, training)
        loss, nll, tokens = masked_cross_entropy(logits, targets, weights, self.label_smoothing)
        tokens = ops.maximum(tokens, 1.0)
        self.loss_sum.update_state(loss / tokens, sample_weight=tokens)
        self.nll_sum.update_state(nll / tokens, sample_weight=tokens)
        objective = loss / tokens
        if training and self.contrastive_weight:
            ranking = self._ranking_loss(data, encoded, logits, teacher_forcing)
            self.ranking_sum.update_state(ranking)
            objective = objective + self.contrastive_weight * ranking
        return objective, tokens

    def _ranking_loss(self, data: Any, encoded: Encoded, logits: Any, teacher_forcing: Any) -> Any:
        """`ranking_loss` of each example's reply, as scored after its own context, against
        its negatives: other replies after its context (`contrastive_side` "target",
        `_target_side_negatives`) or its reply after other contexts ("source",
        `_source_side_negatives`)."""
        _, targets, weights = data
        negatives = (
            self._source_side_negatives
            if self.contrastive_side == "source"
            else self._target_side_negatives
        )
        scores, valid = negatives(data, encoded, teacher_forcing)
        own = mean_token_log_likelihood(logits, targets, weights)
        return ranking_loss(
            ops.stack([own, *scores], axis=1),
            ops.stack([ops.ones_like(own, dtype="bool"), *valid], axis=1),
        )

    def _target_side_negatives(
        self, data: Any, encoded: Encoded, teacher_forcing: Any
    ) -> tuple[list[Any], list[Any]]:
        """(scores, valid), each [B] per negative: the replies of the next
        `contrastive_negatives` examples in the batch (rows rolled by 1..K) and the example's
        `contrastive_hard_negatives` mined ones (`inputs["negative_targets"]`), each decoded
        from the example's own encoded context. Bucketing by length makes the rolled ones
        about as long as the true reply; one with the same tokens as the true reply is no
        negative (mining already leaves those out)."""
        inputs, targets, weights = data
        scores: list[Any] = []
        valid: list[Any] = []
        for shift in range(1, self.contrastive_negatives + 1):
            other_targets = ops.roll(targets, shift, axis=0)
            other_ids = ops.roll(inputs["decoder_input_ids"], shift, axis=0)
            other_logits, _ = self._decode(other_ids, encoded, teacher_forcing, True)
            other_weights = ops.roll(weights, shift, axis=0)
            scores.append(mean_token_log_likelihood(other_logits, other_targets, other_weights))
            valid.append(ops.any(ops.not_equal(other_targets, targets), axis=1))
        for k in range(self.contrastive_hard_negatives):
            hard_targets = inputs["negative_targets"][:, k]
            hard_ids = inputs["negative_decoder_input_ids"][:, k]
            hard_logits, _ = self._decode(hard_ids, encoded, teacher_forcing, True)
            hard_weights = ops.cast(ops.not_equal(hard_targets, PAD_ID), "float32")
            scores.append(mean_token_log_likelihood(hard_logits, hard_targets, hard_weights))
            valid.append(ops.any(ops.not_equal(hard_targets, PAD_ID), axis=1))
        return scores, valid

    def _source_side_negatives(
        self, data: Any, encoded: Encoded, teacher_forcing: Any
    ) -> tuple[list[Any], list[Any]]:
        """(scores, valid), each [B] per negative: the example's own reply decoded from other
        contexts, those of the next `contrastive_negatives` examples in the batch (the encoded
        batch rolled by 1..K, so no context is encoded twice) and its
        `contrastive_hard_negatives` mined ones (`inputs["negative_source_ids"]`). A context
        with the same tokens as its own (or padding) is no negative, nor one whose example has
        the same target (that context did precede this reply; mining leaves those out)."""
        inputs, targets, weights = data
        sources = inputs["source_ids"]
        scores: list[Any] = []
        valid: list[Any] = []
        for shift in range(1, self.contrastive_negatives + 1):
            rolled = keras.tree.map_structure(
                lambda t, shift=shift: None if t is None else ops.roll(t, shift, axis=0), encoded
            )
            other_logits, _ = self._decode(
                inputs["decoder_input_ids"], rolled, teacher_forcing, True
            )
            scores.append(mean_token_log_likelihood(other_logits, targets, weights))
            other_sources = ops.roll(sources, shift, axis=0)
            other_targets = ops.roll(targets, shift, axis=0)
            valid.append(
                ops.any(ops.not_equal(other_sources, sources), axis=1)
                & ops.any(ops.not_equal(other_targets, targets), axis=1)
            )
        for k in range(self.contrastive_hard_negatives):
            hard_sources = inputs["negative_source_ids"][:, k]
            other = self.encode(hard_sources, training=True)
            other_logits, _ = self._decode(
                inputs["decoder_input_ids"], other, teacher_forcing, True
            )
            scores.append(mean_token_log_likelihood(other_logits, targets, weights))
            valid.append(ops.any(ops.not_equal(hard_sources, PAD_ID), axis=1))
        return scores, valid

    def train_step(self, data: Any) -> dict[str, Any]:
        teacher_forcing = None
        results: dict[str, Any] = {}
        if self.sampling.schedule != "none":
            teacher_forcing = teacher_forcing_probability(self.sampling, self.optimizer.iterations)
            results["teacher_forcing"] = teacher_forcing
        with tf.GradientTape() as tape:
            loss, tokens = self._batch_loss(data, training=True, teacher_forcing=teacher_forcing)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return {**self._results(training=True), **results, "tokens": tokens}

    def test_step(self, data: Any) -> dict[str, Any]:
        self._batch_loss(data, training=False)
        return self._results()
