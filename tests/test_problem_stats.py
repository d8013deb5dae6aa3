"""Problem-level statistics: seeds that repeat each other add no evidence."""

from __future__ import annotations

import math

import pytest

from benchmarks.problem_stats import (
    bootstrap_interval,
    compare,
    per_problem,
    permutation_test,
    sign_test,
)


def outcomes(solved: set[int], n: int = 200) -> dict[int, float]:
    return {i: float(i in solved) for i in range(n)}


def test_two_seeds_that_solve_the_same_problems_are_no_stronger_than_one():
    control = outcomes(set(range(50)))
    trained = outcomes(set(range(10, 90)))  # 40 gained (50..89), 10 lost (0..9)
    one = compare(per_problem([trained]), per_problem([control]))
    two = compare(per_problem([trained, trained]), per_problem([control]))
    three = compare(per_problem([trained] * 3), per_problem([control]))
    assert (one.gained, one.lost) == (two.gained, two.lost) == (40, 10)
    assert two.sign_p == three.sign_p == one.sign_p
    assert two.permutation_p == one.permutation_p
    assert two.interval == one.interval
    # What pooling the seeds' counts did: 80 gained / 20 lost, a far smaller p-value.
    assert sign_test(80, 20) < one.sign_p / 1e4


def test_seeds_that_disagree_count_once_per_problem_with_their_mean():
    control = outcomes(set())
    seeds = [outcomes({0, 1, 2}), outcomes({0, 3})]
    result = compare(per_problem(seeds), per_problem([control]))
    assert result.gained == 4 and result.lost == 0
    assert result.difference == pytest.approx((1 + 0.5 + 0.5 + 0.5) / 200)
    assert result.sign_p == sign_test(4, 0) == 0.125


def test_repeated_items_of_one_problem_are_one_problem():
    key = {0: "a", 1: "a", 2: "b", 3: "c"}.__getitem__
    table = per_problem([{0: 1.0, 1: 0.0, 2: 1.0, 3: 0.0}, {0: 1.0, 1: 1.0, 2: 0.0}], key)
    assert table == {"a": pytest.approx(0.75), "b": 0.5, "c": 0.0}


def test_sign_test_on_known_cases():
    assert sign_test(0, 0) == 1.0
    assert sign_test(3, 0) == pytest.approx(2 / 8)
    assert sign_test(5, 5) == 1.0
    assert sign_test(11, 7) == pytest.approx(0.4807, abs=1e-4)
    # The problem-level count for RISE-AWR on test: 35 gained, 3 lost.
    expected = 2 * sum(math.comb(38, k) for k in range(4)) / 2**38
    assert sign_test(35, 3) == pytest.approx(expected) == pytest.approx(6.7e-8, rel=0.01)


def test_permutation_test_exact_and_sampled():
    assert permutation_test([]) == 1.0
    assert permutation_test([0.0, 0.0]) == 1.0
    assert permutation_test([1.0] * 5) == pytest.approx(2 / 32)
    # 1 and -1 cancel in half of the 4 flips; |sum| = 2 in the other half.
    assert permutation_test([1.0, -1.0]) == 1.0
    assert permutation_test([1.0, 1.0, -1.0]) == pytest.approx(1.0)
    # Sampled beyond 16 non-zero differences: near the sign test for +-1 differences.
    sampled = permutation_test([1.0] * 30 + [-1.0] * 10)
    assert sampled == pytest.approx(sign_test(30, 10), abs=0.002)
    assert permutation_test([1.0] * 40) == pytest.approx(1 / 20_001), "the floor of 20k draws"


def test_bootstrap_interval_covers_the_difference_and_is_seeded():
    differences = [1.0] * 30 + [-1.0] * 10 + [0.0] * 160
    low, high = bootstrap_interval(differences)
    assert low < 0.1 < high
    assert bootstrap_interval(differences) == (low, high), "seeded: the same interval again"
    # Roughly mean +- 1.96 standard errors.
    se = (sum((d - 0.1) ** 2 for d in differences) / 199) ** 0.5 / 200**0.5
    assert low == pytest.approx(0.1 - 1.96 * se, abs=0.01)
    assert high == pytest.approx(0.1 + 1.96 * se, abs=0.01)
    assert bootstrap_interval([0.2] * 10) == (0.2, 0.2)


def test_compare_needs_shared_problems():
    with pytest.raises(ValueError, match="share no problem"):
        compare({"a": 1.0}, {"b": 0.0})
    result = compare({"a": 1.0, "b": 0.0}, {"a": 0.0, "c": 1.0})
    assert result.problems == 1 and result.gained == 1
