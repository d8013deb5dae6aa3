"""Lockstep rollouts, evaluation and failure collection with a scripted policy."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import pytest

import rrr_env
from agents.collect_failures import CollectArgs, collect, read_progress
from agents.evaluate import evaluate, read_episodes
from agents.rollout import PhaseSampling, SamplingParams, rollout
from agents.scripted import ScriptedBackend
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
PROMPT = re.compile(r"Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)")


def solution(conversation) -> str:
    numbers, target = PROMPT.search(conversation[1]["content"]).groups()
    return f"\\boxed{{{solve([int(n) for n in numbers.split(',')], int(target))}}}"


def odd_targets_fail_first(conversation) -> str:
    """Wrong first attempt on odd targets, a reflection, then the right answer."""
    if conversation[-1]["content"].startswith("You tried"):
        return "I must use every number exactly once."
    target = int(PROMPT.search(conversation[1]["content"]).group(2))
    first = len(conversation) == 2
    return "\\boxed{1 + 1}" if first and target % 2 else solution(conversation)


def without_timing(episode) -> dict:
    data = episode.to_dict()
    for turn in data["turns"]:
        turn.pop("seconds")
    return data


def make_env():
    return gym.make("rrr/Countdown-v0", split="test", size=40)


def test_lockstep_rollout_batches_each_phase_and_records_turns():
    backend = ScriptedBackend(odd_targets_fail_first)
    episodes = rollout(make_env, backend, list(range(10)), group_size=2)
    assert [(e.index, e.sample) for e in episodes] == [(i, s) for i in range(10) for s in (0, 1)]
    odd = [e for e in episodes if len(e.turns) == 3]
    even = [e for e in episodes if len(e.turns) == 1]
    assert len(odd) + len(even) == 20 and odd and even
    assert backend.calls == 3, "one call per phase: attempts, reflections, retries"
    assert backend.conversations == 20 + 2 * len(odd)
    for e in odd:
        assert [t.phase for t in e.turns] == ["attempt", "reflection", "retry"]
        assert [t.correct for t in e.turns] == [False, None, True]
        assert e.solved_at == 2 and e.done
        assert e.messages[-1]["role"] == "assistant"
    assert all(e.solved_at == 1 for e in even)


def test_group_members_share_the_item():
    episodes = rollout(make_env, ScriptedBackend(solution), [7], group_size=4)
    assert len({e.item_id for e in episodes}) == 1 and len(episodes) == 4


def test_max_steps_stops_after_first_attempts():
    episodes = rollout(make_env, ScriptedBackend(odd_targets_fail_first), range(20), max_steps=1)
    assert all(len(e.turns) == 1 for e in episodes)
    failed = [e for e in episodes if not e.turns[0].correct]
    assert failed and all(not e.done for e in failed)
    assert all(e.messages[-1]["content"].startswith("You tried") for e in failed)


def test_phase_sampling_is_passed_per_phase():
    seen = []

    class Recorder(ScriptedBackend):
        def generate(self, conversations, params, tools=None):
            seen.append(params.max_new_tokens)
            return super().generate(conversations, params, tools)

    sampling = PhaseSampling(SamplingParams(100), SamplingParams(20), SamplingParams(50))
    rollout(make_env, Recorder(lambda c: "no answer"), [0], sampling=sampling)
    assert seen == [100, 20, 50]


def test_evaluate_resumes_without_redoing_items(tmp_path):
    path = tmp_path / "episodes.jsonl"
    full, metrics = evaluate(
        make_env, ScriptedBackend(odd_targets_fail_first), range(12), chunk_items=4, progress=False
    )
    # A run killed after its first chunk, with a torn line from the kill:
    evaluate(
        make_env,
        ScriptedBackend(odd_targets_fail_first),
        range(4),
        episodes_path=path,
        progress=False,
    )
    with path.open("a") as handle:
        handle.write('{"index": 5, "item_')
    backend = ScriptedBackend(odd_targets_fail_first)
    resumed, resumed_metrics = evaluate(
        make_env, backend, range(12), episodes_path=path, chunk_items=4, progress=False
    )
    assert (
        backend.calls > 0 and backend.conversations < ScriptedBackend(solution).conversations + 40
    )
    assert [without_timing(e) for e in resumed] == [without_timing(e) for e in full]
    assert resumed_metrics == metrics
    stored = read_episodes(path)
    assert sorted(e.index for e in stored) == list(range(12)), "no item lost or duplicated"


def test_collect_failures_keeps_failures_with_reflection_prompt(tmp_path):
    args = CollectArgs(
        env="rrr/Countdown-v0",
        split="test",
        env_kwargs=json.dumps({"size": 40}),
        n=10,
        samples_per_query=4,
        failures_per_query=2,
        round_size=2,
        output_dir=str(tmp_path),
    )
    rows = collect(args, ScriptedBackend(odd_targets_fail_first), progress=False)
    progress = read_progress(tmp_path / "progress.jsonl")
    assert sorted(progress) == list(range(10))
    for record in progress.values():
        if record["failures"]:
            assert record["pass_rate"] == 0.0 and record["samples"] == 2, "early stop"
        else:
            assert record["pass_rate"] == 1.0 and record["samples"] == 4
    assert rows and all(r["prompt"][-1]["content"].startswith("You tried") for r in rows)
    assert all(r["prompt"][-2]["role"] == "assistant" for r in rows)
    import datasets

    dataset = datasets.load_from_disk(str(tmp_path / "dataset"))
    assert dataset.num_rows == len(rows)
    assert dataset[0]["prompt"] == rows[0]["prompt"]


class Killed(Exception):
    pass


def test_collect_failures_resumes_after_a_kill(tmp_path):
    def args(path):
        return CollectArgs(
            env="rrr/Countdown-v0",
            split="test",
            env_kwargs=json.dumps({"size": 40}),
            n=12,
            samples_per_query=4,
            failures_per_query=2,
            round_size=2,
            chunk_queries=3,
            output_dir=str(path),
        )

    reference = collect(
        args(tmp_path / "ref"), ScriptedBackend(odd_targets_fail_first), progress=False
    )

    calls = {"n": 0}

    def dies_midway(conversation):
        calls["n"] += 1
        if calls["n"] > 20:
            raise Killed
        return odd_targets_fail_first(conversation)

    with pytest.raises(Killed):
        collect(args(tmp_path / "run"), ScriptedBackend(dies_midway), progress=False)
    partial = read_progress(tmp_path / "run" / "progress.jsonl")
    assert 0 < len(partial) < 12
    resumed = collect(
        args(tmp_path / "run"), ScriptedBackend(odd_targets_fail_first), progress=False
    )
    assert resumed == reference
    lines = (tmp_path / "run" / "progress.jsonl").read_text().splitlines()
    assert len(lines) == 12, "each query recorded exactly once"


def test_collect_failures_with_min_successes_keeps_only_queries_the_model_solves(tmp_path):
    # Odd targets: the attempt alternates wrong, right, wrong, ...; even targets: always wrong.
    counts: dict[str, int] = {}

    def sometimes(conversation) -> str:
        question = conversation[1]["content"]
        counts[question] = counts.get(question, 0) + 1
        target = int(PROMPT.search(question).group(2))
        if target % 2 and counts[question] % 2 == 0:
            return solution(conversation)
        return "\\boxed{1 + 1}"

    args = CollectArgs(
        env="rrr/Countdown-v0",
        split="test",
        env_kwargs=json.dumps({"size": 40}),
        n=10,
        samples_per_query=4,
        failures_per_query=1,
        min_successes=1,
        round_size=1,
        output_dir=str(tmp_path),
    )
    rows = collect(args, ScriptedBackend(sometimes), progress=False)
    progress = read_progress(tmp_path / "progress.jsonl")
    env = gym.make("rrr/Countdown-v0", split="test", size=40)
    odd = {i for i in range(10) if env.unwrapped.task[i].target % 2}
    assert odd and odd != set(range(10))
    for index, record in progress.items():
        # Sampling goes on past the first failure until a success (or the limit).
        assert record["samples"] == (2 if index in odd else 4)
    assert {r["index"] for r in rows} == odd
    assert all(r["pass_rate"] == 0.5 for r in rows)
    with pytest.raises(ValueError, match="--min-successes"):
        CollectArgs(samples_per_query=2, failures_per_query=1, min_successes=2)
