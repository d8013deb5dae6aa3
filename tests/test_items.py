"""Evaluation items are distinct problems."""

from __future__ import annotations

import gymnasium as gym
import pytest

import rrr_env
from agents.items import distinct_indices
from rrr_env.tasks.countdown import CountdownItem, CountdownTask

gym.register_envs(rrr_env)


def easy(split: str = "test"):
    return gym.make(
        "rrr/Countdown-v0", split=split, num_count=2, number_range=(1, 20), target_range=(1, 40)
    )


def test_easy_countdown_repeats_problems_and_distinct_indices_skips_the_repeats():
    task = easy().unwrapped.task
    keys = [task.problem_key(task[i]) for i in range(200)]
    assert len(set(keys)) < 100, "the generator draws with replacement from a small space"
    chosen = distinct_indices(easy, 30)
    chosen_keys = [task.problem_key(task[i]) for i in chosen]
    assert len(chosen) == 30 and len(set(chosen_keys)) == 30
    assert chosen[0] == 0 and chosen == sorted(chosen)
    # Every skipped index repeats a problem chosen before it.
    for index in range(chosen[-1]):
        if index not in chosen:
            assert task.problem_key(task[index]) in chosen_keys[: sum(c < index for c in chosen)]


def test_fewer_indices_when_the_split_has_fewer_problems():
    task = easy().unwrapped.task
    every = distinct_indices(easy, 10_000)
    assert len(every) == len({task.problem_key(task[i]) for i in range(len(task))}) < 100
    later = distinct_indices(easy, 5, start=every[-1] + 1)
    assert len(later) == 5 and later[0] == every[-1] + 1, "start begins a new selection"


def test_countdown_problem_key_ignores_the_order_of_the_numbers():
    task = CountdownTask(split="test", num_count=2, number_range=(1, 20), target_range=(1, 40))
    a = CountdownItem("a", (3, 7), 10)
    b = CountdownItem("b", (7, 3), 10)
    c = CountdownItem("c", (3, 7), 4)
    assert task.problem_key(a) == task.problem_key(b) != task.problem_key(c)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n and start"):
        distinct_indices(easy, -1)
