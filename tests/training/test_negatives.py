"""Hard negatives: replies to the most similar other messages, never the example's own reply,
written beside the shards and read back with them."""

import pytest

from chatbot.pipeline import read_shards
from chatbot.retrieval import TfIdf
from chatbot.shards import ShardWriter
from chatbot.tokenizer import join_context, split_context
from chatbot.training.negatives import choose_negatives, mined_shards

PAIRS = [
    ("How do I submit an expense report?", "Fill in the form and give it to Anna."),
    ("How much was the expense report?", "About 3,000 dollars."),
    ("How do I submit an expense report?", "Fill in the form and give it to Anna."),
    ("How do I submit an expense report?", "Ask your manager."),
    ("What a lovely garden!", "Thank you, I planted it myself."),
    ("The report is late again.", "I'll talk to him."),
    ("How much was the expense report?", "About 3,000 dollars."),
    ("Lovely weather for a garden party.", "Let's invite the neighbours."),
]
MESSAGES = [message for message, _ in PAIRS]
REPLIES = [reply for _, reply in PAIRS]


def test_negatives_answer_the_most_similar_other_messages():
    chosen = choose_negatives(MESSAGES, REPLIES, 2, seed=0)
    assert chosen.shape == (len(PAIRS), 2)
    # the same message ("How do I submit...") is no source of negatives, and the two copies
    # of "About 3,000 dollars." count once
    first = {REPLIES[i] for i in chosen[0]}
    assert first == {"About 3,000 dollars.", "I'll talk to him."}
    # one similar message, one random reply
    assert "Let's invite the neighbours." in {REPLIES[i] for i in chosen[4]}
    for example, negatives in enumerate(chosen):
        assert all(REPLIES[i] != REPLIES[example] for i in negatives)
        assert len({REPLIES[i] for i in negatives}) == 2


def test_too_few_similar_messages_are_topped_up_with_random_replies():
    chosen = choose_negatives(MESSAGES, REPLIES, 4, seed=1)
    for example, negatives in enumerate(chosen):
        assert example not in negatives
        assert all(REPLIES[i] != REPLIES[example] for i in negatives)
    assert (choose_negatives(MESSAGES, REPLIES, 4, seed=1) == chosen).all()


def test_messages_above_the_similarity_cap_give_no_negatives():
    index = TfIdf(MESSAGES)
    cap = float(index.similarities(MESSAGES[0])[1]) - 1e-3  # below "How much was ..."
    chosen = choose_negatives(MESSAGES, REPLIES, 1, seed=0, max_similarity=cap, pool=1)
    assert REPLIES[chosen[0, 0]] == "I'll talk to him."


def test_a_single_example_cannot_have_negatives():
    with pytest.raises(ValueError, match="at least 2 examples"):
        choose_negatives(MESSAGES[:1], REPLIES[:1], 1, seed=0)


def test_mined_shards_hold_each_examples_negatives_and_are_reused(tmp_path, tiny_tokenizer):
    (tmp_path / "data").mkdir()
    writer = ShardWriter(tmp_path / "data", "train", 2)
    encoded = tiny_tokenizer.encode(["Hello there.", *MESSAGES, *REPLIES])
    hello, messages, replies = encoded[0], encoded[1:9], encoded[9:]
    for message, reply in zip(messages, replies, strict=True):
        writer.write(join_context([hello, message]), reply)
    shards = writer.close()

    mined = mined_shards(shards, tiny_tokenizer, 2, tmp_path / "mined", seed=0)
    assert [shard.examples for shard in mined] == [shard.examples for shard in shards]
    read = read_shards([shard.path for shard in mined], shuffle=False, seed=0, negatives=True)
    rows = list(read.as_numpy_iterator())
    assert len(rows) == len(PAIRS)
    for source, target, negatives in rows:
        reply = tiny_tokenizer.decode(target)
        assert tiny_tokenizer.decode(split_context(source)[-1]) in MESSAGES
        texts = [tiny_tokenizer.decode(n) for n in negatives]
        assert len(texts) == 2 and reply not in texts and set(texts) <= set(REPLIES)

    stamps = [path.stat().st_mtime_ns for path in (tmp_path / "mined").iterdir()]
    mined_shards(shards, tiny_tokenizer, 2, tmp_path / "mined", seed=0)
    assert [path.stat().st_mtime_ns for path in (tmp_path / "mined").iterdir()] == stamps
    mined_shards(shards, tiny_tokenizer, 3, tmp_path / "mined", seed=0)
    read = read_shards([mined[0].path], shuffle=False, seed=0, negatives=True)
    assert {len(n) for _, _, n in read.as_numpy_iterator()} == {3}


def test_source_side_negatives_are_the_contexts_of_the_most_similar_targets(
    tmp_path, tiny_tokenizer
):
    # a backward model's examples: each reply is the source, the message it answered the target
    (tmp_path / "data").mkdir()
    writer = ShardWriter(tmp_path / "data", "train", 1)
    encoded = tiny_tokenizer.encode([*REPLIES, *MESSAGES])
    for reply, message in zip(encoded[: len(PAIRS)], encoded[len(PAIRS) :], strict=True):
        writer.write(join_context([reply]), message)
    shards = writer.close()

    mined = mined_shards(shards, tiny_tokenizer, 2, tmp_path / "mined", seed=0, side="source")
    read = read_shards([shard.path for shard in mined], shuffle=False, seed=0, negatives=True)
    for (message, reply), (_, _, negatives) in zip(PAIRS, read.as_numpy_iterator(), strict=True):
        texts = {tiny_tokenizer.decode(n) for n in negatives}
        assert reply not in texts
        if message == "How do I submit an expense report?":
            # the replies to the other messages about the report; near copies of its own
            # message (above the similarity cap) give none
            assert texts == {"About 3,000 dollars.", "I'll talk to him."}
    stamp = (tmp_path / "mined" / "mined.json").read_text()
    assert '"side": "source"' in stamp
