"""Evaluation metrics on hand-built episodes, checked against values computed by hand."""

from __future__ import annotations

import math

from agents.metrics import majority_correct, rise_metrics, rrr_metrics
from agents.rollout import Episode, Turn


def graded(correct: bool, answer: str | None, reason: str | None = None) -> Turn:
    reason = reason or ("ok" if correct else "missed_target")
    return Turn("attempt", 1, "", 0, 0, True, float(correct), correct, reason, answer)


def reflection() -> Turn:
    return Turn("reflection", 1, "", 0, 0, True, 0.0)


def episode(index: int, turns: list[Turn], sample: int = 0) -> Episode:
    return Episode(index, f"item-{index}", sample, turns=turns, done=True)


def test_rrr_metrics_by_hand():
    episodes = [
        episode(0, [graded(True, "a")]),  # right first
        episode(1, [graded(False, "b", "wrong_numbers"), reflection(), graded(True, "c")]),
        episode(2, [graded(False, None, "no_answer"), reflection(), graded(False, "d")]),
        episode(3, [graded(False, "e", "wrong_numbers"), reflection(), graded(False, "f")]),
    ]
    metrics = rrr_metrics(episodes)
    assert metrics["episodes"] == 4
    assert metrics["first_try"] == 0.25
    assert metrics["second_try"] == 0.5
    assert (metrics["fixed_by_retry"], metrics["retried"]) == (1, 3)
    assert metrics["first_try_errors"] == {"wrong_numbers": 2, "no_answer": 1}


def test_majority_vote_rules():
    assert majority_correct([graded(False, "x"), graded(True, "y"), graded(True, "y")])
    assert not majority_correct([graded(False, "x"), graded(False, "x"), graded(True, "y")])
    # a tie goes to the answer seen first
    assert not majority_correct([graded(False, "x"), graded(True, "y")])
    assert majority_correct([graded(True, "y"), graded(False, "x")])
    # no answers: wrong; unanswered turns do not vote
    assert not majority_correct([graded(False, None), graded(False, None)])
    assert majority_correct([graded(False, None), graded(False, None), graded(True, "y")])


def test_rise_metrics_by_hand():
    # item 0: three samples, three turns each (no oracle: every turn graded)
    item0 = [
        episode(0, [graded(True, "r"), graded(False, "w"), graded(True, "r")], 0),
        episode(0, [graded(False, "w"), graded(False, "w"), graded(True, "r")], 1),
        episode(0, [graded(False, "w"), graded(True, "r"), graded(True, "r")], 2),
    ]
    # item 1: never solved
    item1 = [episode(1, [graded(False, "v")] * 3, s) for s in range(3)]
    metrics = rise_metrics(item0 + item1)
    assert metrics["items"] == 2 and metrics["episodes"] == 6
    assert math.isclose(metrics["m1@t1"], 1 / 6)
    assert metrics["m3@t1"] == 0.0  # item 0 turn-1 answers r, w, w -> w (wrong)
    # majority over turns: (r, w, r) right; (w, w, r) wrong; (w, r, r) right; item 1 wrong
    assert math.isclose(metrics["m1@t3"], 2 / 6)
    assert math.isclose(metrics["p1@t3"], 3 / 6)
    assert metrics["accuracy_by_turn"] == [1 / 6, 1 / 6, 3 / 6]
    assert metrics["right_to_wrong"] == 1
    assert metrics["wrong_to_right"] == 3
