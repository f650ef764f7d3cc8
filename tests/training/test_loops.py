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


def test_a_resumed_epoch_reads_the_batches_the_whole_epoch_had_left(tmp_path):
    """Resume restores the input position mid-epoch: the same seed gives the same shuffled
    batches, and skipping those already trained leaves exactly the rest."""
    writer = ShardWriter(tmp_path, "train", 4)
    for i in range(40):
        writer.write([10 + i, 3], [50 + i % 7])
    shards = writer.close()

    def sources(skip: int) -> list[list[int]]:
        dataset, steps = loops().distributed(shards, shuffle=True, seed=7, skip=skip)
        assert steps == 10
        return [batch[0]["source_ids"].numpy()[:, 0].tolist() for batch in dataset]

    whole = sources(0)
    assert sorted(i for batch in whole for i in batch) == list(range(10, 50))
    assert sources(6) == whole[6:]


def test_validation_without_examples_is_empty(tmp_path):
    shards = ShardWriter(tmp_path, "valid", 2).close()
    assert loops().validate(None, shards) == {}  # type: ignore[arg-type]
