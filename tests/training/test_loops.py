import numpy as np
import tensorflow as tf

from chatbot.config import TrainingConfig
from chatbot.pipeline import EncodedExamples
from chatbot.training.loops import Loops, make_strategy


def loops() -> Loops:
    training = TrainingConfig(batch_size=4, bucket_width=4)
    return Loops(
        make_strategy("default"),
        training,
        multi_worker=False,
        max_source_len=8,
        max_target_len=8,
    )


def test_one_process_has_one_input_pipeline():
    assert make_strategy("default") is tf.distribute.get_strategy()
    assert loops().input_pipelines() == 1


def test_a_distributed_epoch_has_whole_batches_and_skips_those_done():
    sources = [np.array([5, 6, 3], np.int32)] * 12
    targets = [np.array([7, 3], np.int32)] * 12
    encoded = EncodedExamples(sources, targets)
    dataset, steps = loops().distributed(encoded, shuffle=False, seed=0)
    assert steps == 3 and len(list(dataset)) == 3
    rest, _ = loops().distributed(encoded, shuffle=False, seed=0, skip=2)
    assert len(list(rest)) == 1


def test_validation_without_examples_is_empty():
    assert loops().validate(None, EncodedExamples([], [])) == {}  # type: ignore[arg-type]
