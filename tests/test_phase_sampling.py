"""Per-phase sampling: the retry's own temperature in RRR-GRPO, best-of-N's in RISE-AWR."""

from __future__ import annotations

import re

import gymnasium as gym
import pytest

import rrr_env
from agents.grpo_reflect import GRPOReflectConfig
from agents.reflection_rollout import (
    EpisodeReplayer,
    HFGenerator,
    TRLVLLMGenerator,
    reflect_and_retry,
    with_sampling,
)
from agents.rise_awr import Args, collect
from agents.rollout import Generation, PhaseSampling, SamplingParams
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
EASY = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'
TASK = re.compile(r"Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)")


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from transformers import AutoTokenizer

    from agents.models import DEFAULT_MODEL, resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL).path)


class Recording:
    """A token generator that answers every prompt with ``reply`` and records its calls."""

    def __init__(self, tokenizer, reply: str) -> None:
        self.tokenizer = tokenizer
        self.reply = reply
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.calls: list[tuple[int, int]] = []

    def __call__(self, prompt_ids, max_new_tokens, group_size=1):
        self.calls.append((len(prompt_ids), max_new_tokens))
        ids = self.tokenizer.encode(self.reply, add_special_tokens=False) + [self.eos]
        return [list(ids) for _ in prompt_ids], None


class FakeEngine:
    """The attributes of TRL's ``VLLMGeneration`` that a call reads, and what it saw."""

    def __init__(self) -> None:
        self.temperature, self.top_p, self.max_completion_length = 1.0, 1.0, 64
        self.seen: list[tuple[float, float, int]] = []

    def generate(self, prompts, images, num_generations):
        self.seen.append((self.temperature, self.top_p, self.max_completion_length))
        return None, [[7] for _ in prompts], None, None


def test_with_sampling_replaces_only_what_is_given():
    generator = HFGenerator(model=None, eos_ids=[1], pad_id=0, temperature=1.0, top_p=0.9)
    assert with_sampling(generator, None) is generator
    greedy = with_sampling(generator, 0.0)
    assert (greedy.temperature, greedy.top_p) == (0.0, 0.9)
    assert generator.temperature == 1.0, "the reflection's generator is unchanged"
    assert with_sampling(generator, None, 0.5).top_p == 0.5
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        with_sampling(generator, -1.0)
    with pytest.raises(TypeError, match="cannot change the sampling"):
        with_sampling(lambda *a: None, 0.0)


def test_vllm_generator_overrides_the_engine_for_one_call_only():
    engine = FakeEngine()
    TRLVLLMGenerator(engine)([[1, 2]], 32, 1)
    with_sampling(TRLVLLMGenerator(engine), 0.0, 0.8)([[1, 2]], 16, 1)
    assert engine.seen == [(1.0, 1.0, 32), (0.0, 0.8, 16)]
    assert (engine.temperature, engine.top_p, engine.max_completion_length) == (1.0, 1.0, 64)


def test_retries_come_from_the_retry_generator(smollm_tokenizer):
    config = GRPOReflectConfig(
        output_dir="unused", failures_path="unused", env_kwargs=EASY, report_to="none"
    )
    make_env = lambda: gym.make(config.env_id, **config.env_options())  # noqa: E731
    env = make_env()
    rows = []
    for index in range(2):
        obs, _ = env.reset(options={"index": index})
        obs, *_ = env.step("I do not know.")
        rows.append({"prompt": obs, "index": index})
    numbers, target = TASK.search(rows[0]["prompt"][1]["content"]).groups()
    right = f"\\boxed{{{solve([int(n) for n in numbers.split(',')], int(target))}}}"
    reflect = Recording(smollm_tokenizer, "Use each number once.")
    retry = Recording(smollm_tokenizer, right)
    batch = reflect_and_retry(
        [rows[0]["prompt"]] * 2,
        EpisodeReplayer(make_env, rows),
        reflect,
        smollm_tokenizer,
        {reflect.eos},
        reflection_max_tokens=12,
        retry_max_tokens=20,
        group_size=2,
        retry_generate=retry,
    )
    assert reflect.calls == [(2, 12)] and retry.calls == [(2, 20)]
    assert batch.retries == [right, right] and batch.rewards == [1.0, 1.0]


def test_retry_sampling_options_are_validated():
    base = {"output_dir": "unused", "failures_path": "unused", "report_to": "none"}
    assert GRPOReflectConfig(**base).retry_temperature is None
    assert GRPOReflectConfig(**base, retry_temperature=0.0).retry_temperature == 0.0
    with pytest.raises(ValueError, match="--retry_temperature must be >= 0"):
        GRPOReflectConfig(**base, retry_temperature=-0.5)
    with pytest.raises(ValueError, match="--retry_top_p must be in"):
        GRPOReflectConfig(**base, retry_top_p=0.0)
    # Trained retry tokens must be sampled at the temperature TRL scores them with.
    with pytest.raises(ValueError, match="--credit reflection"):
        GRPOReflectConfig(**base, credit="reflection+retry", retry_temperature=0.0)
    same = GRPOReflectConfig(**base, credit="reflection+retry", retry_temperature=1.0)
    assert same.retry_temperature == same.temperature


class ParamsSeen:
    """A backend that answers wrong and records the sampling parameters of each call."""

    def __init__(self) -> None:
        self.params: list[SamplingParams] = []

    def generate(self, conversations, params, tools=None):
        self.params.append(params)
        return [Generation("\\boxed{1 + 1}", [0], [0], True) for _ in conversations]


def test_rise_best_of_samples_use_their_own_temperature():
    backend = ParamsSeen()
    rollout = PhaseSampling.same(SamplingParams(16, temperature=1.0))
    best_of = SamplingParams(16, temperature=0.5)
    collect(
        lambda: gym.make("rrr/Countdown-v0", split="test", size=4, max_attempts=2, reflect=False),
        backend,
        [0, 1],
        samples_per_item=2,
        best_of=3,
        sampling=rollout,
        best_of_sampling=best_of,
    )
    # Two rollout phases at the rollout's temperature, then one call for every fresh sample.
    assert [p.temperature for p in backend.params] == [1.0, 1.0, 0.5]


def test_rise_sampling_arguments():
    args = Args(best_of_temperature=0.7)
    assert args.best_of_sampling().temperature == 0.7
    assert args.sampling().retry.temperature == args.temperature == 1.0
    assert Args().best_of_sampling().temperature == 1.0
    assert Args().train_on_failures is False, "correct targets only, by default"
    # Greedy rollouts with sampled best-of-N responses are a valid combination.
    assert Args(temperature=0.0, samples_per_item=1, best_of_temperature=0.7).best_of == 4
    with pytest.raises(ValueError, match="--best-of-temperature"):
        Args(best_of_temperature=0.0)
    with pytest.raises(ValueError, match="--best-of-temperature must be >= 0"):
        Args(best_of_temperature=-1.0)
