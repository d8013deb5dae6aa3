"""Choosing evaluation items: distinct problems, so that items are independent samples.

A seeded generator draws each item independently, so a small problem space repeats
problems: the first 200 test items of easy Countdown (2 numbers in 1..20, target in 1..40)
hold only 44 distinct problems. Accuracy over repeated problems is a weighted mean over few
problems, and a sign test that counts each repeat as an independent item is wrong.

Example:
    >>> import gymnasium as gym
    >>> import rrr_env
    >>> gym.register_envs(rrr_env)
    >>> make = lambda: gym.make("rrr/Countdown-v0", split="test", num_count=2,
    ...                         number_range=(1, 20), target_range=(1, 40))
    >>> len(distinct_indices(make, 40))
    40
    >>> len(distinct_indices(make, 1000))  # fewer distinct problems exist in this split
    46
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

__all__ = ["distinct_indices"]


def distinct_indices(make_env: Callable[[], gym.Env], n: int, *, start: int = 0) -> list[int]:
    """The first ``n`` item indices from ``start`` on whose problems differ.

    Two items are the same problem when their task's ``problem_key`` says so (Countdown:
    the same numbers, in any order, and target; other tasks: the same prompt). Returns fewer
    than ``n`` indices when the task has fewer distinct problems.

    Args:
        make_env: Builds the env whose items are chosen.
        n: Most indices to return.
        start: First index to consider.
    """
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    env = make_env()
    try:
        task = env.unwrapped.task
        seen: set[str] = set()
        chosen: list[int] = []
        for index in range(start, len(task)):
            if len(chosen) == n:
                break
            key = task.problem_key(task[index])
            if key not in seen:
                seen.add(key)
                chosen.append(index)
        return chosen
    finally:
        env.close()
