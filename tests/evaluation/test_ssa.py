import json

import pytest

from chatbot.errors import DataError
from chatbot.evaluation.ssa import (
    HUMAN,
    Rating,
    build_pack,
    choose_examples,
    display,
    markdown_table,
    parse_ratings,
    ranked_name,
    read_jsonl,
    score,
    sensible_by_rank,
    sensible_within,
    speaker_turns,
    top_pick_sensible,
    within_context_auc,
    write_pack,
)
from chatbot.examples import Example


def _examples(dialogues: int = 6, per_dialogue: int = 3) -> list[Example]:
    return [
        Example((f"hello {d}-{t}", f"How are you, {d}-{t}?"), f"Fine {d}-{t}.", f"f.txt:{d}")
        for d in range(dialogues)
        for t in range(per_dialogue)
    ]


def test_display_is_the_same_normalization_for_every_source():
    assert (
        display("  I’M “Fine”,\tThanks ")
        == display('i\'m "fine", thanks')
        == ('i\'m "fine", thanks')
    )


def test_speakers_alternate_so_that_the_reply_is_as():
    assert speaker_turns(["x", "y", "z"]) == ("B: x", "A: y", "B: z")
    assert speaker_turns(["Hi", "Yo"]) == ("A: hi", "B: yo")


def test_contexts_come_from_different_dialogues_and_repeat_with_the_seed():
    examples = _examples()
    chosen = choose_examples(examples, 4, seed=1)
    assert len({examples[i].source for i in chosen}) == 4 and chosen == sorted(chosen)
    assert choose_examples(examples, 4, seed=1) == chosen
    with pytest.raises(DataError, match=r"7 contexts asked for, but .* 6 dialogues"):
        choose_examples(examples, 7)


def test_the_pack_hides_who_wrote_what_and_the_key_keeps_it(tmp_path):
    examples = _examples()
    chosen = choose_examples(examples, 3)
    replies = {"beam": ["that's nice."] * 3, "sample": ["I LIKE  it", "no", "maybe"]}
    items = build_pack(examples, chosen, replies, seed=5)
    assert len(items) == 9 and len({item.id for item in items}) == 9
    human = sorted((i.example, i.reply) for i in items if i.system == HUMAN)
    assert human == sorted((i, display(examples[i].response)) for i in chosen)
    assert {i.reply for i in items if i.system == "sample"} == {"i like it", "no", "maybe"}
    assert [i.system for i in items] != sorted(i.system for i in items)  # shuffled

    paths = write_pack(items, tmp_path / "pack", parts=2)
    assert [p.name for p in paths] == ["part-1.md", "part-2.md"]
    parts = [read_jsonl(tmp_path / "pack" / f"part-{n}.jsonl") for n in (1, 2)]
    assert sorted(len(part) for part in parts) == [4, 5]
    for part in parts:
        assert all(set(record) == {"id", "context", "reply"} for record in part)
    key = read_jsonl(tmp_path / "pack" / "key.jsonl")
    assert [(record["id"], record["system"]) for record in key] == [(i.id, i.system) for i in items]
    markdown = paths[0].read_text()
    assert items[0].id in markdown and "beam" not in markdown and "sample" not in markdown

    with pytest.raises(DataError, match="'human' is the human references' own"):
        build_pack(examples, chosen, {HUMAN: ["x"] * 3})
    with pytest.raises(DataError, match="system 'beam': 2 replies for 3 contexts"):
        build_pack(examples, chosen, {"beam": ["x", "y"]})


def test_a_reply_two_systems_share_is_rated_once_and_counts_for_both(tmp_path):
    examples = _examples()
    chosen = choose_examples(examples, 3)
    replies = {"beam": ["Fine.", "no", "maybe"], "greedy": ["fine.", "yes", "maybe"]}
    items = build_pack(examples, chosen, replies, seed=2)
    assert len(items) == 9 and len({item.id for item in items}) == 7
    shared = {i.id for i in items if i.system == "beam"} & {
        i.id for i in items if i.system != "beam"
    }
    assert {i.reply for i in items if i.id in shared} == {"fine.", "maybe"}

    write_pack(items, tmp_path / "pack", parts=2)
    shown = [r for n in (1, 2) for r in read_jsonl(tmp_path / "pack" / f"part-{n}.jsonl")]
    assert sorted(r["id"] for r in shown) == sorted({i.id for i in items})
    key = read_jsonl(tmp_path / "pack" / "key.jsonl")
    assert len(key) == 9
    ratings = [Rating(i.id, i.reply != "no", False) for i in items]
    results = score(key, ratings)
    assert results["beam"]["rated"] == results["greedy"]["rated"] == 3
    assert results["beam"]["sensible"] == pytest.approx(2 / 3)
    assert results["greedy"]["sensible"] == 1.0


def test_scores_by_hand():
    key = [{"id": f"h{n}", "system": HUMAN} for n in range(4)]
    key += [{"id": f"b{n}", "system": "beam"} for n in range(4)]
    key += [{"id": "u0", "system": "unrated"}]
    ratings = [
        Rating("h0", True, True),
        Rating("h1", True, True),
        Rating("h2", True, False),
        Rating("h3", True, True),
        Rating("b0", True, False),
        Rating("b1", False, True),  # specific without sense counts as not specific
        Rating("b2", False, False),
        Rating("b3", True, True),
        Rating("b3", False, False),  # rated twice: the mean of the two
    ]
    results = score(key, ratings)
    assert list(results) == [HUMAN, "beam", "unrated"]
    assert results[HUMAN] == {
        "replies": 4,
        "rated": 4,
        "sensible": 1.0,
        "specific": 0.75,
        "ssa": 0.875,
        "specific_not_sensible": 0,
    }
    beam = results["beam"]
    assert beam["sensible"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert beam["specific"] == pytest.approx(0.5 / 4)
    assert beam["ssa"] == pytest.approx((1.5 / 4 + 0.5 / 4) / 2)
    assert beam["specific_not_sensible"] == 1
    assert results["unrated"] == {"replies": 1, "rated": 0}
    table = markdown_table(results)
    assert "| human | 4 of 4 | 1.00 | 0.75 | 0.88 |" in table
    assert "| unrated | 0 of 1 | | | |" in table
    assert table.startswith("| system | rated | sensible | specific | SSA |")
    with pytest.raises(DataError, match=r"1 rated id.* not in the key, e.g. 'zz'"):
        score(key, [Rating("zz", True, True)])


def test_ratings_files_are_checked_line_by_line(tmp_path):
    path = tmp_path / "ratings.jsonl"
    path.write_text('{"id": "a1", "sensible": 1, "specific": false}\n\n', encoding="utf-8")
    assert parse_ratings(path) == [Rating("a1", True, False)]
    path.write_text('{"id": "a1", "sensible": 2, "specific": 0}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"rating 1: sensible must be 0 or 1, got 2"):
        parse_ratings(path)
    path.write_text(json.dumps({"id": "a1", "sensible": 1, "specific": 0}) + "\n{oops\n")
    with pytest.raises(DataError, match=r"ratings\.jsonl:2: not JSON"):
        parse_ratings(path)


def test_sensible_within_k_finds_each_contexts_first_sensible_candidate():
    sensible = {  # example -> the ranks rated sensible
        0: {1},
        1: {3},
        2: {2, 3},
        3: set(),
    }
    key = [
        {"id": f"{example}-{rank}", "system": ranked_name("beam", rank), "example": example}
        for example in sensible
        for rank in (1, 2, 3)
    ]
    key += [{"id": f"h{example}", "system": HUMAN, "example": example} for example in sensible]
    ratings = [
        Rating(record["id"], int(record["id"][-1]) in sensible[int(record["id"][0])], False)
        for record in key[:-4]
    ]
    ratings.append(Rating("1-3", False, False))  # rated twice, split: not sensible by most
    ratings += [Rating(f"h{example}", True, True) for example in sensible]
    assert ranked_name("beam", 1) == "beam" and ranked_name("beam", 2) == "beam, rank 2"
    within = sensible_within(key, ratings)
    assert list(within) == ["beam"]  # the human references have one rank
    assert within["beam"] == pytest.approx([1 / 4, 2 / 4, 2 / 4])
    by_rank = sensible_by_rank(key, ratings)
    assert by_rank["beam"][2] == {1: False, 2: True, 3: True}
    assert by_rank["beam"][1] == {1: False, 2: False, 3: False}  # split ratings of 1-3
    assert by_rank[HUMAN][0] == {1: True}


def test_within_context_auc_counts_pairs_of_the_same_context_only():
    values = [[3.0, 1.0, 2.0], [0.0, 5.0], [9.0, 9.0, 1.0], [4.0]]
    sensible = [[True, False, True], [True, False], [True, False, False], [True]]
    # brute force over every (sensible, not) pair of each context; ties count half
    wins = pairs = 0.0
    for row, labels in zip(values, sensible, strict=True):
        for good in (v for v, ok in zip(row, labels, strict=True) if ok):
            for bad in (v for v, ok in zip(row, labels, strict=True) if not ok):
                pairs += 1
                wins += 1.0 if good > bad else 0.5 if good == bad else 0.0
    assert within_context_auc(values, sensible) == pytest.approx(wins / pairs)
    assert within_context_auc(values, sensible) == pytest.approx((2 + 0 + 1.5) / 5)
    assert within_context_auc([[1.0, 2.0]], [[False, True]]) == 1.0


def test_within_context_auc_needs_a_context_with_both_kinds():
    with pytest.raises(DataError, match="both a sensible and a not-sensible"):
        within_context_auc([[1.0, 2.0], [3.0]], [[True, True], [False]])


def test_top_pick_sensible_is_the_rating_of_each_contexts_best_candidate():
    values = [[3.0, 1.0, 2.0], [0.0, 5.0], [9.0, 9.0, 1.0], [4.0]]
    sensible = [[False, False, True], [True, False], [True, False, False], [True]]
    # 3.0 picks a not-sensible one, 5.0 too, the first of the tied 9.0s a sensible one
    assert top_pick_sensible(values, sensible) == pytest.approx(2 / 4)
    assert top_pick_sensible([[-1.0, -2.0]], [[True, False]]) == 1.0


def test_scores_list_the_control_first_and_ranks_in_numeric_order():
    systems = ["beam, rank 10", "beam, rank 2", "beam", HUMAN, "alpha"]
    key = [{"id": f"i{n}", "system": system} for n, system in enumerate(systems)]
    results = score(key, [Rating(record["id"], True, True) for record in key])
    assert list(results) == [HUMAN, "alpha", "beam", "beam, rank 2", "beam, rank 10"]
