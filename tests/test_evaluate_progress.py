"""Long jobs show progress per finished episode, not per chunk (issue 27).

``agents.evaluate --n 8`` sat at ``0/8`` until its 32-item chunk ended, and the main job
(``agents.grpo_reflect``) showed nothing while it collected failures or evaluated. Each test
runs a job with a scripted backend (right on even targets, wrong on odd ones) and records, in
order, every generation call and every progress-bar update: some progress must come before the
job's last generation call.
"""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import agents.backends
import agents.collect_failures
import agents.evaluate
import rrr_env
from agents.collect_failures import CollectArgs, collect
from agents.evaluate import evaluate
from agents.grpo_reflect import GRPOReflectConfig, collect_failures, evaluate_model
from agents.rollout import PhaseSampling, SamplingParams
from agents.scripted import ScriptedBackend
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)

EASY = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'
TASK = re.compile(r"Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)")


def answer(conversation) -> str:
    """A right answer when the target is even, a wrong one when it is odd."""
    numbers, target = TASK.search(conversation[1]["content"]).groups()
    numbers = [int(n) for n in numbers.split(",")]
    if conversation[-1]["role"] == "user" and "reflect" in conversation[-1]["content"].lower():
        return "I should check the arithmetic."
    if int(target) % 2 == 0 and (solution := solve(numbers, int(target))) is not None:
        return f"\\boxed{{{solution}}}"
    return "\\boxed{1 + 1}"


class RecordingBackend(ScriptedBackend):
    def __init__(self, events: list) -> None:
        super().__init__(answer)
        self.events = events

    def generate(self, conversations, params, tools=None):
        out = super().generate(conversations, params, tools)
        self.events.append(("generate", len(conversations)))
        return out


@pytest.fixture
def events(monkeypatch) -> list:
    """Every generation call and progress update, in order (the jobs' bars record updates)."""
    recorded: list = []

    class RecordingBar:
        def __init__(self, total=None, *, initial=0, enabled=True, **kwargs):
            self.n, self.total, self.disable = initial, total, not enabled

        def update(self, n=1):
            self.n += n
            if n and not self.disable:
                recorded.append(("progress", n))

        def set_postfix_str(self, *args, **kwargs):
            pass

        def set_description_str(self, *args, **kwargs):
            pass

        def refresh(self):
            pass

        def close(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    monkeypatch.setattr(agents.evaluate, "progress_bar", RecordingBar, raising=False)
    monkeypatch.setattr(agents.collect_failures, "progress_bar", RecordingBar, raising=False)
    return recorded


def progress_before_the_last_generation(events: list) -> bool:
    last = max(i for i, (kind, _) in enumerate(events) if kind == "generate")
    return any(kind == "progress" for kind, _ in events[:last])


def test_evaluate_advances_per_episode_within_a_chunk(events):
    backend = RecordingBackend(events)
    _, metrics = evaluate(
        lambda: gym.make("rrr/Countdown-v0", split="test", num_count=2),
        backend,
        list(range(8)),
        sampling=PhaseSampling.same(SamplingParams(8, temperature=0.0)),
        chunk_items=32,
    )
    assert metrics["rrr"]["episodes"] == 8
    assert 0 < metrics["rrr"]["first_try"] < 1, "some episodes must end at the first attempt"
    assert sum(n for kind, n in events if kind == "progress") == 8
    assert progress_before_the_last_generation(events), events


def test_collect_failures_advances_per_finished_query(events, tmp_path):
    args = CollectArgs(
        env="rrr/Countdown-v0",
        env_kwargs=EASY,
        n=8,
        samples_per_query=4,
        failures_per_query=1,
        round_size=1,
        chunk_queries=16,
        output_dir=str(tmp_path / "failures"),
    )
    rows = collect(args, RecordingBackend(events))
    assert rows, "the odd targets fail"
    assert sum(n for kind, n in events if kind == "progress") == 8
    assert progress_before_the_last_generation(events), events


class TinyPolicy(torch.nn.Module):
    """Stands in for the policy: the scripted backend generates, the model is not the point."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self) -> torch.device:
        return self.weight.device


def main_job_config(tmp_path: Path, **overrides) -> GRPOReflectConfig:
    options = {
        "output_dir": str(tmp_path / "run"),
        "env_kwargs": EASY,
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "report_to": "none",
        "bf16": False,
        "eval_n": 8,
        "collect_n": 8,
        "samples_per_query": 16,  # two rounds of 8 for the queries with no failure
        "failures_per_query": 1,
        "attempt_max_tokens": 8,
        "max_completion_length": 8,
        "retry_max_tokens": 8,
    }
    return GRPOReflectConfig(**{**options, **overrides})


@pytest.fixture
def scripted_transformers_backend(monkeypatch, events):
    monkeypatch.setattr(
        agents.backends, "TransformersBackend", lambda *args, **kwargs: RecordingBackend(events)
    )


def test_main_job_evaluation_shows_progress(tmp_path, events, scripted_transformers_backend):
    metrics = evaluate_model(main_job_config(tmp_path), TinyPolicy(), None, "before")
    assert metrics["rrr"]["episodes"] == 8
    assert sum(n for kind, n in events if kind == "progress") == 8
    assert progress_before_the_last_generation(events), events


def test_main_job_collection_shows_progress(tmp_path, events, scripted_transformers_backend):
    dataset = collect_failures(main_job_config(tmp_path), TinyPolicy(), None)
    assert len(dataset) > 0
    assert sum(n for kind, n in events if kind == "progress") == 8
    assert progress_before_the_last_generation(events), events
