"""Evaluation honours a policy's adapter scope (issue 25).

Under ``adapter_scope="reflection"`` only reflections come from the adapted model; attempts and
retries come from the frozen base, by PEFT's ``disable_adapter()`` on the same model. A saved
policy's ``rrr_policy.json`` makes ``agents.evaluate`` do so without being told.

A 2-layer model from SmolLM2-135M's config (random weights, its real tokenizer) with a LoRA
adapter whose weights are made non-zero, so that the adapter changes greedy generations.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from test_no_signal_step import EASY, tiny_model
from transformers import AutoTokenizer

import rrr_env
from agents.backends import ReflectionAdapterBackend, TransformersBackend, scoped_backend
from agents.models import resolve_model
from agents.rollout import PhaseSampling, SamplingParams, rollout
from agents.snapshots import POLICY_FILE, load_policy, read_adapter_scope

gym.register_envs(rrr_env)
GREEDY = SamplingParams(max_new_tokens=8, temperature=0.0)


def make_env():
    return gym.make("rrr/Countdown-v0", split="test", **json.loads(EASY))


def with_adapter(model):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    policy = get_peft_model(model, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.5)  # LoRA starts with B = 0: an adapter that does nothing
    return policy.eval()


class Recorder:
    """Passes calls on and records each conversation with its response text."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def generate(self, conversations, params, tools=None):
        generations = self.inner.generate(conversations, params, tools)
        self.calls += [(c, g.text) for c, g in zip(conversations, generations, strict=True)]
        return generations


def greedy(model, tokenizer, conversation) -> str:
    return TransformersBackend(model, tokenizer).generate([conversation], GREEDY)[0].text


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    tokenizer.padding_side = "left"
    return tokenizer


@pytest.mark.slow
def test_reflections_come_from_the_adapter_and_answers_from_the_base(tokenizer):
    base = tiny_model()
    policy = with_adapter(tiny_model())
    request = make_env().unwrapped.task.reflection_request
    recorder = Recorder(ReflectionAdapterBackend(TransformersBackend(policy, tokenizer), request))
    episodes = rollout(make_env, recorder, [0], sampling=PhaseSampling.same(GREEDY))

    phases = [t.phase for t in episodes[0].turns]
    assert phases == ["attempt", "reflection", "retry"], "the random model's attempt fails"
    reflections = [(c, t) for c, t in recorder.calls if c[-1]["content"] == request]
    answers = [(c, t) for c, t in recorder.calls if c[-1]["content"] != request]
    assert len(reflections) == 1 and len(answers) == 2
    for conversation, text in answers:
        assert text == greedy(base, tokenizer, conversation)
    for conversation, text in reflections:
        assert text == greedy(policy, tokenizer, conversation)
    # The adapter matters: the adapted model would have answered otherwise.
    assert any(t != greedy(policy, tokenizer, c) for c, t in recorder.calls)
    # The adapter is on again after the base-model phases.
    assert reflections[0][1] == greedy(policy, tokenizer, reflections[0][0])


def test_scope_all_is_the_backend_itself_and_reflection_needs_an_adapter(tokenizer):
    backend = object()
    assert scoped_backend(backend, "all", "Reflect.") is backend
    with pytest.raises(ValueError, match="adapter_scope"):
        scoped_backend(backend, "retry", "Reflect.")
    with pytest.raises(TypeError, match="PEFT"):
        scoped_backend(backend, "reflection", "Reflect.")


def test_the_policy_file_names_the_scope(tmp_path):
    assert read_adapter_scope(tmp_path) == "all", "no rrr_policy.json: shared weights"
    (tmp_path / POLICY_FILE).write_text('{"adapter_scope": "reflection"}\n')
    assert read_adapter_scope(tmp_path) == "reflection"
    (tmp_path / POLICY_FILE).write_text('{"adapter_scope": "attempt"}\n')
    with pytest.raises(ValueError, match="adapter_scope"):
        read_adapter_scope(tmp_path)


@pytest.mark.slow
def test_evaluate_reads_the_scope_of_a_saved_policy(tokenizer, tmp_path: Path):
    from transformers import AutoModelForCausalLM

    import agents.evaluate

    base_dir, policy_dir = tmp_path / "base", tmp_path / "policy"
    tiny_model().save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    policy = with_adapter(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32))
    policy.save_pretrained(policy_dir)
    (policy_dir / POLICY_FILE).write_text('{"adapter_scope": "reflection"}\n')

    loaded, _, scope = load_policy(policy_dir, dtype="float32")
    assert scope == "reflection" and hasattr(loaded, "disable_adapter"), "unmerged PEFT model"

    out = tmp_path / "eval"
    agents.evaluate.main(
        [
            *("--model", str(policy_dir), "--env-kwargs", EASY, "--n", "1", "--dtype", "float32"),
            *("--max-new-tokens", "8", "--reflection-max-new-tokens", "8"),
            *("--output-dir", str(out)),
        ]
    )
    (episode,) = [json.loads(line) for line in (out / "episodes.jsonl").open()]
    attempt, reflection = episode["turns"][0]["text"], episode["turns"][1]["text"]
    env = make_env()
    observation, _ = env.reset(seed=0, options={"index": 0})
    request = env.unwrapped.task.reflection_request
    asked = [*observation, {"role": "assistant", "content": attempt}]
    asked.append({"role": "user", "content": request})
    assert attempt == greedy(base, tokenizer, observation)
    assert attempt != greedy(policy, tokenizer, observation), "the adapter changes the attempt"
    assert reflection == greedy(policy, tokenizer, asked)


@pytest.mark.slow
def test_the_main_jobs_evaluation_answers_with_the_base_under_a_reflection_scope(
    tokenizer, tmp_path: Path
):
    from test_no_signal_step import make_config

    from agents.grpo_reflect import evaluate_model

    base, policy = tiny_model(), with_adapter(tiny_model())
    config = make_config(
        tmp_path, adapter_scope="reflection", eval_n=1, attempt_max_tokens=8, retry_max_tokens=8
    )
    metrics = evaluate_model(config, policy, tokenizer, "after")
    assert metrics is not None
    lines = (Path(config.output_dir) / "eval_after" / "episodes.jsonl").open()
    (episode,) = [json.loads(line) for line in lines]
    messages = episode["messages"]
    first = next(k for k, m in enumerate(messages) if m["role"] == "assistant")
    prompt, attempt = messages[:first], episode["turns"][0]["text"]
    assert messages[first]["content"] == attempt
    assert attempt == greedy(base, tokenizer, prompt)
    assert attempt != greedy(policy, tokenizer, prompt), "the adapter changes the attempt"
