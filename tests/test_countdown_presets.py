"""Countdown presets without a shortcut, and the generator knob they rest on."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import rrr_env
from rrr_env import ENV_IDS
from rrr_env.shortcuts import countdown_fixed_form_solves, countdown_forms
from rrr_env.tasks.countdown import SPLITS, CountdownTask, split_of

gym.register_envs(rrr_env)

#: The registered presets whose generator leaves out the items a fixed form solves.
PRESETS = sorted(i for i, kwargs in ENV_IDS.items() if kwargs.get("exclude_fixed_forms"))
KNOBS = ("num_count", "number_range", "target_range", "exclude_fixed_forms", "validation_percent")
#: A setting like the 3-number preset's, without the knob: fixed forms solve some of it.
WITH_SHORTCUTS = {"num_count": 3, "number_range": (1, 20), "target_range": (1, 50)}


def _task(preset: str, split: str, **options) -> CountdownTask:
    return gym.make(preset, split=split, **options).unwrapped.task


def _key(item) -> str:
    return json.dumps([sorted(item.numbers), item.target])


def _distinct(task: CountdownTask, n: int) -> list:
    seen, items = set(), []
    for index in range(len(task)):
        item = task[index]
        if _key(item) not in seen:
            seen.add(_key(item))
            items.append(item)
            if len(items) == n:
                break
    return items


def test_presets_fix_every_knob_and_say_so_in_their_id():
    assert PRESETS, "no Countdown preset leaves out the fixed forms"
    for preset in PRESETS:
        kwargs = ENV_IDS[preset]
        assert kwargs["task"] == "countdown"
        assert set(KNOBS) <= set(kwargs), preset
        assert kwargs["validation_percent"] == 10, "the validation split of rrr/Countdown-v1"
        assert "NoFixedForms" in preset


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_makes_with_its_knobs_and_grades_a_known_solution(preset):
    env = gym.make(preset, split="validation")
    task = env.unwrapped.task
    kwargs = ENV_IDS[preset]
    count = kwargs["num_count"]
    assert task.num_count == ((count, count) if isinstance(count, int) else tuple(count))
    assert task.number_range == tuple(kwargs["number_range"])
    assert task.target_range == tuple(kwargs["target_range"])
    assert task.exclude_fixed_forms is True and task.split == "validation"
    _, info = env.reset(options={"index": 0})
    item = task[0]
    _, reward, terminated, _, info = env.step(f"So \\boxed{{{item.solution}}}")
    assert info["verdict"].correct and reward > 0 and terminated


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_items_are_solvable_in_range_and_deterministic(preset):
    kwargs = ENV_IDS[preset]
    low, high = kwargs["target_range"]
    smallest, largest = kwargs["number_range"]
    for split in SPLITS:
        task, again = _task(preset, split), _task(preset, split)
        for index in range(60):
            item = task[index]
            assert item == again[index]
            assert low <= item.target <= high
            assert all(smallest <= n <= largest for n in item.numbers)
            assert task.verify(item, f"\\boxed{{{item.solution}}}").correct, item
            assert split_of(item.numbers, item.target, 10) == split
    other_seed = _task(preset, "train", seed=1)
    assert [other_seed[i] for i in range(20)] != [_task(preset, "train")[i] for i in range(20)]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_splits_are_disjoint(preset):
    keys = {
        split: {_key(item) for item in _distinct(_task(preset, split), 300)} for split in SPLITS
    }
    assert all(len(k) >= 100 for k in keys.values()), {s: len(k) for s, k in keys.items()}
    assert keys["train"].isdisjoint(keys["validation"])
    assert keys["train"].isdisjoint(keys["test"])
    assert keys["validation"].isdisjoint(keys["test"])


@pytest.mark.parametrize("preset", PRESETS)
def test_no_preset_item_is_solved_by_a_fixed_form(preset):
    for split in SPLITS:
        task = _task(preset, split)
        for index in range(200):
            item = task[index]
            assert not countdown_fixed_form_solves(item.numbers, item.target), item


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_shortcut_share_on_validation_is_at_most_10_percent(preset):
    # Each fixed form answers every problem and the env's verifier grades it, as a model is.
    task = _task(preset, "validation")
    items = _distinct(task, 200)
    assert len(items) == 200
    solved = {
        form.name: sum(task.verify(item, form.respond(item)).correct for item in items)
        for form in countdown_forms()
    }
    assert max(solved.values()) / len(items) <= 0.10, solved
    assert sum(solved.values()) == 0, "the knob leaves out every item a fixed form solves"


def test_without_the_knob_fixed_forms_do_solve_such_items():
    # So the two tests above are not vacuous: the same ranges have shortcut items.
    task = CountdownTask(split="validation", validation_percent=10, **WITH_SHORTCUTS)
    items = _distinct(task, 200)
    shortcut = sum(countdown_fixed_form_solves(item.numbers, item.target) for item in items)
    assert shortcut >= 20, shortcut  # measured: 38 of 200


def test_the_knob_keeps_every_other_item_of_the_setting():
    # Leaving out a target is the only change: items from draws whose chosen target is not a
    # fixed form's value keep their numbers; the rest re-draw among the remaining targets.
    plain = CountdownTask(size=300, seed=5, **WITH_SHORTCUTS)
    excluded = CountdownTask(size=300, seed=5, exclude_fixed_forms=True, **WITH_SHORTCUTS)
    assert (
        CountdownTask(size=300, seed=5, exclude_fixed_forms=False, **WITH_SHORTCUTS)[7]
        == (plain[7])
    )
    same = sum(plain[i].numbers == excluded[i].numbers for i in range(300))
    assert same >= 150, same
    assert all(
        not countdown_fixed_form_solves(excluded[i].numbers, excluded[i].target) for i in range(300)
    )


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"num_count": 2, "exclude_fixed_forms": True}, ValueError, "num_count >= 3"),
        ({"num_count": (2, 3), "exclude_fixed_forms": True}, ValueError, "one operation"),
        ({"num_count": 3, "exclude_fixed_forms": "yes"}, TypeError, "exclude_fixed_forms"),
        ({"num_count": 3, "exclude_fixed_forms": 1}, TypeError, "exclude_fixed_forms"),
        (
            {
                "num_count": 3,
                "exclude_fixed_forms": True,
                "data": [{"nums": [1, 2, 4], "target": 7}],
            },
            ValueError,
            "generator only",
        ),
        # 1 + 1 + 1 is the only way to reach 3 with three 1s (a test problem, served without
        # the knob): the construction-time probe sees it left out.
        (
            {
                "split": "test",
                "num_count": 3,
                "number_range": (1, 1),
                "target_range": (3, 3),
                "exclude_fixed_forms": True,
            },
            ValueError,
            "exclude_fixed_forms=True.*widen",
        ),
    ],
)
def test_bad_knob_values_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        CountdownTask(**options)


def test_a_preset_with_a_2_number_override_raises():
    with pytest.raises(ValueError, match="num_count >= 3"):
        gym.make(PRESETS[0], num_count=2)


def test_preset_search_measures_the_registered_preset_and_fold_templates():
    from benchmarks.preset_search import BY_NAME, model_free_row, render, solving_templates

    assert "-+ descending (3 numbers)" in solving_templates((3, 10, 4), 9)  # (10 - 4) + 3
    assert "+ given (2 numbers)" in solving_templates((3, 10), 13)
    candidate = BY_NAME["n3-r20-nofixed"]
    preset = {k: v for k, v in ENV_IDS["rrr/Countdown3-NoFixedForms-v1"].items() if k != "task"}
    registered = {**candidate.env_kwargs, "validation_percent": 10}
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in registered.items()} == preset
    row = model_free_row(candidate, 50)
    assert row["problems"] == 50 and row["best_form_solved"] == row["form_union_solved"] == 0
    assert row["template_union_solved"] > 0
    assert "| n3-r20-nofixed |" in render([row])
