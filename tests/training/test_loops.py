import tensorflow as tf

from chatbot.config import TrainingConfig
from chatbot.shards import ShardWriter
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


def test_a_distributed_epoch_has_whole_batches_and_skips_those_done(tmp_path):
    writer = ShardWriter(tmp_path, "train", 2)
    for _ in range(12):
        writer.write([5, 6, 3], [7, 3])
    shards = writer.close()
    dataset, steps = loops().distributed(shards, shuffle=False, seed=0)
    assert steps == 3 and len(list(dataset)) == 3
    rest, _ = loops().distributed(shards, shuffle=False, seed=0, skip=2)
    assert len(list(rest)) == 1


def test_validation_without_examples_is_empty(tmp_path):
    shards = ShardWriter(tmp_path, "valid", 2).close()
    assert loops().validate(None, shards) == {}  # type: ignore[arg-type]
