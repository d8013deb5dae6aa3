"""Paired statistics with the held-out PROBLEM as the unit.

Every seed of a head-to-head is evaluated on the same held-out problems, so seeds are not
independent samples of problems: two seeds that solve the same set are one observation per
problem, not two. Pooling per-seed gained/lost counts into one sign test counts each problem
once per seed, and its p-value shrinks as if the data had grown.

Here each arm's outcome on a problem is its mean over seeds (and over repeated items of the
same problem within a seed), and arms are compared by the per-problem differences:

- **exact sign test** (two-sided) on the differences, ties dropped: how many problems went up
  against how many went down, whatever the size of the change;
- **paired permutation test** (sign flips of the differences; exact up to
  :data:`EXACT_FLIPS_UP_TO` non-zero differences, else Monte Carlo with a fixed seed): uses
  the size of each change (a problem gained by 3 of 3 seeds counts more than by 1 of 3);
- **bootstrap over problems** (fixed seed): a 95% percentile interval for the accuracy
  difference, resampling problems with replacement.

>>> a = {"p1": 1.0, "p2": 1.0, "p3": 0.0}
>>> b = {"p1": 0.0, "p2": 1.0, "p3": 0.0}
>>> c = compare(a, b)
>>> (c.problems, c.gained, c.lost, round(c.difference, 3), c.sign_p)
(3, 1, 0, 0.333, 1.0)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Non-zero differences up to which the permutation test enumerates every sign flip.
EXACT_FLIPS_UP_TO = 16
PERMUTATION_DRAWS = 20_000
BOOTSTRAP_DRAWS = 10_000


def sign_test(gained: int, lost: int) -> float:
    """Two-sided exact sign test p-value of ``gained`` vs ``lost`` (ties left out).

    >>> sign_test(3, 0)
    0.25
    """
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def per_problem(
    seeds: Iterable[Mapping[int, float]], key: Callable[[int], Hashable] = lambda index: index
) -> dict[Hashable, float]:
    """Each problem's outcome: the mean over its items within a seed, then over seeds.

    Args:
        seeds: One mapping per seed, item index -> outcome (0/1, or a mean of samples).
        key: The problem of an item index (items of the same problem share a key); default:
            every index is its own problem.

    Returns:
        Problem -> mean outcome over the seeds that evaluated it.
    """
    totals: dict[Hashable, list[float]] = {}
    for outcomes in seeds:
        within: dict[Hashable, list[float]] = {}
        for index, value in outcomes.items():
            within.setdefault(key(index), []).append(float(value))
        for problem, values in within.items():
            totals.setdefault(problem, []).append(sum(values) / len(values))
    return {problem: sum(values) / len(values) for problem, values in totals.items()}


def permutation_test(differences: Sequence[float], *, draws: int = PERMUTATION_DRAWS) -> float:
    """Two-sided paired permutation p-value of the mean of ``differences`` (sign flips).

    Under the null hypothesis each problem's difference is as likely negative as positive.
    Exact (every flip of the non-zero differences) up to :data:`EXACT_FLIPS_UP_TO` of them,
    else ``draws`` random flips with a fixed seed, counting the observed one.

    >>> permutation_test([1.0, 1.0, 1.0])
    0.25
    """
    values = np.array([d for d in differences if d != 0], dtype=float)
    if values.size == 0:
        return 1.0
    observed = abs(values.sum()) - 1e-12
    if values.size <= EXACT_FLIPS_UP_TO:
        flips = np.array(list(itertools.product((1.0, -1.0), repeat=values.size)))
        return float(np.mean(np.abs(flips @ values) >= observed))
    rng = np.random.default_rng(0)
    flips = rng.choice((1.0, -1.0), size=(draws, values.size))
    extreme = int(np.sum(np.abs(flips @ values) >= observed))
    return (extreme + 1) / (draws + 1)


def bootstrap_interval(
    differences: Sequence[float], *, draws: int = BOOTSTRAP_DRAWS, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference, resampling problems (seed 0).

    >>> bootstrap_interval([0.5, 0.5])
    (0.5, 0.5)
    """
    values = np.asarray(differences, dtype=float)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, values.size, size=(draws, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (round(float(low), 12), round(float(high), 12))


@dataclass(frozen=True)
class Comparison:
    """Arm A against arm B over the problems both were evaluated on.

    Attributes:
        problems: Problems compared.
        a: A's mean outcome over them (accuracy, seeds averaged per problem).
        b: B's.
        difference: ``a - b``.
        interval: 95% bootstrap interval of ``difference`` (problems resampled).
        gained: Problems where A's mean outcome is higher.
        lost: Problems where it is lower.
        sign_p: Exact two-sided sign test of ``gained`` vs ``lost``.
        permutation_p: Paired permutation test of the mean difference.
    """

    problems: int
    a: float
    b: float
    difference: float
    interval: tuple[float, float]
    gained: int
    lost: int
    sign_p: float
    permutation_p: float


def compare(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> Comparison:
    """Compare two arms' per-problem outcomes (see :func:`per_problem`) on their common problems.

    Raises:
        ValueError: The arms share no problem.
    """
    problems = [p for p in a if p in b]
    if not problems:
        raise ValueError("the two arms share no problem")
    differences = [a[p] - b[p] for p in problems]
    n = len(problems)
    return Comparison(
        problems=n,
        a=sum(a[p] for p in problems) / n,
        b=sum(b[p] for p in problems) / n,
        difference=sum(differences) / n,
        interval=bootstrap_interval(differences),
        gained=sum(d > 0 for d in differences),
        lost=sum(d < 0 for d in differences),
        sign_p=sign_test(sum(d > 0 for d in differences), sum(d < 0 for d in differences)),
        permutation_p=permutation_test(differences),
    )
