"""Control backends of the head-to-head: a fixed reflection, and token counting."""

from __future__ import annotations

import gymnasium as gym
import pytest

import rrr_env
from agents.controls import GENERIC_REFLECTION, CountingBackend, FixedReflectionBackend
from agents.rollout import PhaseSampling, SamplingParams, rollout
from agents.scripted import ScriptedBackend

gym.register_envs(rrr_env)
WRONG = "\\boxed{1 + 1}"


def make_env(**kwargs):
    return gym.make("rrr/Countdown-v0", split="test", size=8, max_attempts=2, **kwargs)


def test_fixed_reflection_replaces_only_reflections_and_the_retry_sees_it():
    seen = []

    def policy(conversation):
        seen.append(conversation)
        if conversation[-1]["content"].startswith("Using the numbers"):
            return WRONG  # the first attempt, and the retry (the task is posed again)
        return "MODEL REFLECTION"

    inner = ScriptedBackend(policy)
    request = make_env().unwrapped.task.reflection_request
    backend = FixedReflectionBackend(inner, request)
    episodes = rollout(make_env, backend, [0, 1, 2], sampling=PhaseSampling.same(SamplingParams(8)))

    for episode in episodes:
        assert [t.phase for t in episode.turns] == ["attempt", "reflection", "retry"]
        reflection = episode.turns[1]
        assert reflection.text == GENERIC_REFLECTION and reflection.completion_tokens == 0
        assert {"role": "assistant", "content": GENERIC_REFLECTION} in episode.messages
    assert inner.conversations == 6, "attempts and retries only; no reflection was generated"
    retries = [c for c in seen if any(m["content"] == GENERIC_REFLECTION for m in c)]
    assert len(retries) == 3, "each retry prompt carries the fixed reflection"


def test_fixed_reflection_keeps_order_and_tools_in_mixed_batches():
    calls = []

    class Recorder:
        def generate(self, conversations, params, tools=None):
            calls.append((len(conversations), list(tools)))
            return ScriptedBackend(lambda c: c[-1]["content"].upper()).generate(
                conversations, params, tools
            )

    backend = FixedReflectionBackend(Recorder(), "Reflect.", text="fixed")
    batch = [
        [{"role": "user", "content": "a"}],
        [{"role": "user", "content": "Reflect."}],
        [{"role": "user", "content": "b"}],
        [{"role": "assistant", "content": "Reflect."}],  # not a user request
    ]
    out = backend.generate(batch, SamplingParams(4), ["t0", "t1", "t2", "t3"])
    assert [g.text for g in out] == ["A", "fixed", "B", "REFLECT."]
    assert calls == [(3, ["t0", "t2", "t3"])]
    assert backend.generate([batch[1]], SamplingParams(4))[0].text == "fixed"
    assert calls == [(3, ["t0", "t2", "t3"])], "no call when every prompt is a reflection"
    with pytest.raises(ValueError, match="reflection_request"):
        FixedReflectionBackend(Recorder(), "")


def test_counting_backend_counts_generated_tokens():
    backend = CountingBackend(ScriptedBackend(lambda c: "xyz"))
    backend.generate([[{"role": "user", "content": "q"}]] * 4, SamplingParams(4))
    backend.generate([[{"role": "user", "content": "q"}]], SamplingParams(4))
    assert (backend.completion_tokens, backend.responses) == (15, 5)
