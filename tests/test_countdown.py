"""Countdown: generator, solver, loaders and the safe verifier."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrr_env.tasks.countdown import CountdownTask, split_of
from rrr_env.tasks.countdown_solver import reachable, solve
from rrr_env.verifiers.countdown import verify

NUMS, TARGET = [96, 74, 37, 7], 52


# -- generator -----------------------------------------------------------------------------


def test_same_seed_gives_same_items_and_other_seed_differs():
    a, b = CountdownTask(size=30, seed=1), CountdownTask(size=30, seed=1)
    c = CountdownTask(size=30, seed=2)
    assert [a[i] for i in range(30)] == [b[i] for i in range(30)]
    assert [a[i] for i in range(30)] != [c[i] for i in range(30)]


def test_generated_items_respect_ranges_and_are_solvable():
    task = CountdownTask(size=200, num_count=(3, 4), number_range=(1, 99), target_range=(10, 100))
    counts = set()
    for i in range(len(task)):
        item = task[i]
        counts.add(len(item.numbers))
        assert 3 <= len(item.numbers) <= 4
        assert all(1 <= n <= 99 for n in item.numbers)
        assert 10 <= item.target <= 100
        assert verify(f"\\boxed{{{item.solution}}}", item.numbers, item.target).correct
    assert counts == {3, 4}


def test_difficulty_knobs_change_the_items():
    easy = CountdownTask(size=50, num_count=2, number_range=(1, 10), target_range=(1, 20))
    for i in range(50):
        item = easy[i]
        assert len(item.numbers) == 2 and max(item.numbers) <= 10 and item.target <= 20


def test_train_and_test_splits_are_disjoint():
    small = {"num_count": 2, "number_range": (1, 20), "target_range": (1, 40)}
    train = CountdownTask(split="train", size=1500, **small)
    test = CountdownTask(split="test", size=300, **small)

    def key(item):
        return (tuple(sorted(item.numbers)), item.target)

    train_keys = {key(train[i]) for i in range(len(train))}
    test_keys = {key(test[i]) for i in range(len(test))}
    assert train_keys.isdisjoint(test_keys)
    assert all(split_of(*k) == "test" for k in test_keys)
    assert len(test_keys) > 20, "a small space still yields many distinct test problems"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"split": "validation"}, "split"),
        ({"source": "web"}, "source"),
        ({"num_count": 1}, "num_count"),
        ({"num_count": (4, 3)}, "num_count"),
        ({"num_count": 6}, "num_count"),
        ({"number_range": (5, "9")}, "number_range"),
        ({"size": 0}, "size"),
        ({"source": "jsonl"}, "path"),
        ({"num_count": 2, "number_range": (1, 1), "target_range": (50, 60)}, "widen"),
    ],
)
def test_bad_configs_raise_with_a_fix(options, match):
    with pytest.raises(ValueError, match=match):
        CountdownTask(**options)


def test_item_index_out_of_range_raises():
    with pytest.raises(IndexError):
        CountdownTask(size=5)[5]


# -- solver and real data ------------------------------------------------------------------


def test_solver_proves_unsolvable_and_finds_solutions():
    assert solve([1, 1], 5) is None
    assert solve([2, 3], 6) is not None
    assert Fraction(2, 3) in reachable([2, 3])


def test_every_tinyzero_test_item_is_solved_and_the_solution_verifies(tinyzero_test_path):
    task = CountdownTask(source="jsonl", path=tinyzero_test_path)
    assert len(task) == 2001
    for i in range(len(task)):
        item = task[i]
        solution = solve(item.numbers, item.target)
        assert solution is not None, item
        assert verify(f"\\boxed{{{solution}}}", item.numbers, item.target).correct, item


def test_jsonl_loader_with_split_and_size(tmp_path, tinyzero_test_path):
    test_part = CountdownTask(source="jsonl", path=tinyzero_test_path, split="test")
    train_part = CountdownTask(source="jsonl", path=tinyzero_test_path, split="train")
    assert len(test_part) + len(train_part) == 2001
    assert len(CountdownTask(source="jsonl", path=tinyzero_test_path, size=10)) == 10
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"numbers": [1, 2], "target": 3}) + "\n")
    with pytest.raises(ValueError, match="row 0"):
        CountdownTask(source="jsonl", path=bad)
    with pytest.raises(FileNotFoundError):
        CountdownTask(source="jsonl", path=tmp_path / "missing.jsonl")


# -- verifier ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "(96 - 74) + 37 - 7",
        "96 - 74 + 37 - 7 = 52",
        "52 = 96 - 74 + 37 - 7",
        "\\left(96 - 74\\right) + 37 - 7",
        "$96-74+37-7$",
    ],
)
def test_correct_answers_in_common_notations(answer):
    verdict = verify(f"Reasoning... so \\boxed{{{answer}}}.", NUMS, TARGET)
    assert verdict.correct and verdict.reason == "ok"
    assert verdict.answer.replace("(", "").replace(")", "") == "96-74+37-7"


def test_canonical_answer_ignores_spacing_and_notation():
    spaced = verify("\\boxed{ 96 -74+ 37 - 7 }", NUMS, TARGET).answer
    latex = verify("\\boxed{96 - 74 + 37 - 7 = 52}", NUMS, TARGET).answer
    assert spaced == latex == "96-74+37-7"


def test_operator_notations_are_normalised():
    assert verify("\\boxed{4 \\times 3 \\div 2 - 1}", [4, 3, 2, 1], 5).correct
    assert verify("\\boxed{4 × 3 ÷ 2 − 1}", [4, 3, 2, 1], 5).correct
    assert verify("\\boxed{4 \\cdot \\frac{3}{2} - 1}", [4, 3, 2, 1], 5).correct
    assert verify("\\boxed{-(1 - 3) * 2}", [1, 3, 2], 4).correct


def test_exact_rational_arithmetic():
    # 8 / (3 - 8/3) = 24 exactly; floating point would give 23.99999...
    assert verify("\\boxed{8 / (3 - 8 / 3)}", [8, 3, 8, 3], 24).correct


def test_last_box_counts():
    text = "\\boxed{96 + 74} no wait \\boxed{96 - 74 + 37 - 7}"
    assert verify(text, NUMS, TARGET).correct
    assert not verify(text[::-1], NUMS, TARGET).correct


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ("", "no_answer"),
        ("The answer is 52.", "no_answer"),
        ("\\boxed{}", "no_answer"),
        ("\\boxed{96 - 74 + 37 - 7", "no_answer"),
        ("\\boxed{96 - 74 + 37 + 7}", "missed_target"),
        ("\\boxed{96 - 74 + 37}", "wrong_numbers"),
        ("\\boxed{96 - 74 + 37 - 7 - 7 + 7}", "wrong_numbers"),
        ("\\boxed{96 - 74 + 37 - 8}", "wrong_numbers"),
        ("\\boxed{96 - 74 + 37 - 7 = 53}", "missed_target"),
        ("\\boxed{(96 - 74 + 37 - 7}", "invalid_expression"),
        ("\\boxed{96 ** 74 + 37 - 7}", "invalid_expression"),
        ("\\boxed{96 // 74 + 37 - 7}", "invalid_expression"),
        ("\\boxed{96 % 74 + 37 - 7}", "invalid_expression"),
        ("\\boxed{96.0 - 74 + 37 - 7}", "invalid_expression"),
        ("\\boxed{96 / (74 - 74) + 37 - 7}", "invalid_expression"),
        ("\\boxed{x - 74 + 37 - 7}", "invalid_expression"),
        ("\\boxed{abs(96) - 74 + 37 - 7}", "invalid_expression"),
        ("\\boxed{__import__('os').system('true')}", "invalid_expression"),
        ("\\boxed{(96).real - 74 + 37 - 7}", "invalid_expression"),
        ("\\boxed{1 = 2 = 3}", "invalid_expression"),
        ("\\boxed{99**98**97}", "invalid_expression"),
    ],
)
def test_wrong_empty_malformed_and_hostile_answers(response, reason):
    verdict = verify(response, NUMS, TARGET)
    assert not verdict.correct
    assert verdict.reason == reason


def test_pathological_sizes_are_rejected_not_computed():
    deep = "\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}"
    assert verify(deep, [1], 1).reason == "invalid_expression"
    long_sum = "\\boxed{" + "+".join(["1"] * 5_000) + "}"
    assert verify(long_sum, [1], 1).reason == "invalid_expression"
    huge = "\\boxed{" + "9" * 900 + " * " + "9" * 90 + "}"
    assert verify(huge, NUMS, TARGET).reason == "wrong_numbers"
    many_boxes = "\\boxed{" * 200_000
    assert verify(many_boxes, NUMS, TARGET).reason == "no_answer"


def test_non_string_response_is_a_type_error():
    with pytest.raises(TypeError):
        verify(None, NUMS, TARGET)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    for response in (text, f"\\boxed{{{text}}}"):
        verdict = verify(response, NUMS, TARGET)
        assert verdict.reason in {
            "ok",
            "no_answer",
            "invalid_expression",
            "wrong_numbers",
            "missed_target",
        }


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+-*/() =\\{}boxed.x", max_size=200))
def test_arithmetic_looking_text_never_raises(text):
    verdict = verify(f"\\boxed{{{text}}}", NUMS, TARGET)
    assert verdict.correct == (verdict.reason == "ok")
