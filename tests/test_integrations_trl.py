"""The TRL adapter, driven the way TRL's GRPOTrainer drives it, against gym.make."""

import inspect
from pathlib import Path

import gymnasium as gym
import pytest

import rrr_env
from rrr_env.integrations import trl as rrr_trl
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)

ENV_ID = "rrr/Countdown-v1"
KWARGS = {"split": "test"}


def correct(index, **kwargs):
    env = gym.make(ENV_ID, **{**KWARGS, **kwargs})
    env.reset(options={"index": index})
    item = env.unwrapped.item
    return f"so \\boxed{{{solve(item.numbers, item.target)}}}"


def gym_episode(index, texts, **kwargs):
    """Rewards per step and the number of steps, as gym.make gives them."""
    env = gym.make(ENV_ID, **{**KWARGS, **kwargs})
    env.reset(options={"index": index})
    rewards = []
    for text in texts:
        _, reward, terminated, truncated, _ = env.step(text)
        rewards.append(reward)
        if terminated or truncated:
            break
    return rewards


def test_prompts_dataset_matches_the_env():
    ds = rrr_trl.prompts_dataset(ENV_ID, split="test", n=3, start=2)
    assert ds.column_names == ["prompt", "index", "item_id"]
    assert ds["index"] == [2, 3, 4]
    env = gym.make(ENV_ID, **KWARGS)
    for row in ds:
        obs, info = env.reset(options={"index": row["index"]})
        assert row["prompt"] == obs
        assert row["item_id"] == info["item_id"]


def test_prompts_dataset_of_tool_tasks_keeps_tools_in_the_prompt():
    data = str(Path(__file__).resolve().parent / "fixtures" / "xlam_sample.jsonl")
    ds = rrr_trl.prompts_dataset("rrr/FunctionCalling-v0", split=None, n=2, data=data)
    assert ds.column_names == ["prompt", "index", "item_id"]
    assert "<tools>" in ds[0]["prompt"][0]["content"]
    # GRPOTrainer renders one tool list for all rows: per-item chat-template tools are refused.
    with pytest.raises(ValueError, match="per row"):
        rrr_trl.prompts_dataset(
            "rrr/FunctionCalling-v0", split=None, n=2, data=data, prompt_style="chat_template"
        )


def test_reward_function_called_as_trl_calls_it_matches_gym():
    ds = rrr_trl.prompts_dataset(ENV_ID, split="test", n=3)
    reward = rrr_trl.reward_function(ENV_ID, **KWARGS)
    texts = [correct(0), "no idea", "\\boxed{1 + 2}"]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    logged = {}
    # TRL's _calculate_rewards: every non-prompt/completion column as a list, plus these.
    rewards = reward(
        prompts=ds["prompt"],
        completions=completions,
        completion_ids=[[1]] * 3,
        index=ds["index"],
        item_id=ds["item_id"],
        trainer_state=None,
        log_extra=lambda name, values: logged.__setitem__(name, values),
        log_metric=lambda name, value: None,
    )
    assert rewards == [gym_episode(i, [t])[0] for i, t in enumerate(texts)] == [1.0, 0.0, 0.0]
    assert logged["verdict_reason"] == ["ok", "no_answer", "wrong_numbers"]
    assert reward.__name__ == "rrr_verifier"


def test_reward_function_refuses_a_dataset_of_another_split():
    ds = rrr_trl.prompts_dataset(ENV_ID, split="test", n=1)
    reward = rrr_trl.reward_function(ENV_ID, split="train")
    with pytest.raises(ValueError, match="split included"):
        reward(prompts=ds["prompt"], completions=["x"], index=ds["index"], item_id=ds["item_id"])


def trl_tool_loop(env, row, calls):
    """What GRPOTrainer does with an environment_factory instance: reset(**row), then each
    tool call by name (exceptions become {"error": ...}), then get_reward()."""
    tools = {
        name: getattr(env, name)
        for name, _ in inspect.getmembers(type(env), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    }
    note = env.reset(**row)
    results = []
    for name, arguments in calls:
        try:
            results.append(tools[name](**arguments))
        except Exception as error:  # TRL's _tool_call_loop catches every tool error
            results.append({"error": str(error)})
    return note, results, env.get_reward(), tools


@pytest.mark.parametrize(
    ("texts", "kwargs"),
    [
        (["FIRST"], {}),
        (["no idea", "I misread the numbers", "FIRST"], {}),
        (["no idea", "I misread the numbers", "\\boxed{1}"], {}),
        (["no", "\\boxed{2}", "FIRST"], {"reflect": False, "max_attempts": 3}),
    ],
)
def test_environment_factory_episode_matches_gym(texts, kwargs):
    texts = [correct(1, **kwargs) if t == "FIRST" else t for t in texts]
    factory = rrr_trl.environment_factory(ENV_ID, **KWARGS, **kwargs)
    env = factory()
    row = rrr_trl.prompts_dataset(ENV_ID, n=2, **KWARGS, **kwargs)[1]
    reflect = kwargs.get("reflect", True)
    calls = []
    for k, text in enumerate(texts):
        is_reflection = reflect and k % 2 == 1
        calls.append(
            ("reflect", {"reflection": text})
            if is_reflection
            else ("submit_answer", {"answer": text})
        )
    note, results, reward, tools = trl_tool_loop(env, row, calls)
    assert sorted(tools) == ["reflect", "submit_answer"]
    assert "submit_answer" in note
    expected = gym_episode(1, texts, **kwargs)
    assert reward == sum(expected)
    assert len(results) == len(expected)
    assert not any(isinstance(r, dict) for r in results)


def test_environment_factory_tools_have_json_schemas_for_chat_templates():
    from transformers.utils import get_json_schema

    env = rrr_trl.environment_factory(ENV_ID, **KWARGS)()
    schema = get_json_schema(env.submit_answer)
    assert schema["function"]["parameters"]["required"] == ["answer"]
    assert get_json_schema(env.reflect)["function"]["parameters"]["required"] == ["reflection"]


def test_environment_factory_rejects_out_of_order_tool_calls():
    env = rrr_trl.environment_factory(ENV_ID, **KWARGS)()
    row = rrr_trl.prompts_dataset(ENV_ID, n=1, **KWARGS)[0]
    _, results, reward, _ = trl_tool_loop(
        env,
        row,
        [
            ("reflect", {"reflection": "too early"}),
            ("submit_answer", {"answer": "no"}),
            ("submit_answer", {"answer": "again, without reflecting"}),
        ],
    )
    assert "no reflection is asked for" in results[0]["error"]
    assert "reflect" in results[1] and not isinstance(results[1], dict)
    assert "reflect on the wrong answer first" in results[2]["error"]
    assert reward == 0.0


def test_environment_factory_cannot_express_a_fresh_retry_conversation():
    with pytest.raises(ValueError, match="fresh conversation"):
        rrr_trl.environment_factory(ENV_ID, retry_context="reflection", **KWARGS)


def test_failures_dataset_keeps_wrong_first_attempts_only():
    ds = rrr_trl.failures_dataset(
        ENV_ID, [(0, correct(0)), (1, "no idea"), (2, "\\boxed{1}"), (1, "no idea")], **KWARGS
    )
    assert ds["index"] == [1, 2]
    assert ds["reason"] == ["no_answer", "wrong_numbers"]
    env = gym.make(ENV_ID, **KWARGS)
    env.reset(options={"index": 1})
    obs, *_ = env.step("no idea")
    assert ds[0]["prompt"] == obs


def test_rrr_rollout_func_replays_the_failures():
    ds = rrr_trl.failures_dataset(ENV_ID, [(1, "no idea"), (2, "\\boxed{1}")], **KWARGS)
    rollout = rrr_trl.rrr_rollout_func(ENV_ID, ds, retry_max_tokens=8, **KWARGS)
    from agents.grpo_reflect import ReflectRetryRollout, retry_success

    assert isinstance(rollout, ReflectRetryRollout)
    assert rrr_trl.retry_success is retry_success
    env = rollout.replayer.envs(1)[0]
    info = rollout.replayer.replay(env, ds[1]["prompt"])
    assert info["phase"] == "reflection" and info["index"] == 2


def test_importing_the_adapters_needs_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, rrr_env.integrations.trl, rrr_env.integrations.verl, "
        "rrr_env.integrations.verifiers, rrr_env.integrations.skyrl; "
        "heavy = {'torch', 'trl', 'verl', 'verifiers', 'skyrl_gym', 'datasets', 'ray'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_grpo_trainer_trains_a_step_with_the_environment_factory(tmp_path, monkeypatch):
    """TRL's own loop: GRPOTrainer probes the class, resets one instance per rollout on the
    row's item, renders the tools into the prompt, and adds get_reward as a reward."""
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from agents.models import load_model_and_tokenizer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model, tokenizer = load_model_and_tokenizer("qwen2.5-coder-0.5b")
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=16,
        learning_rate=1e-6,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
    )
    dataset = rrr_trl.prompts_dataset(ENV_ID, n=1, start=3, **KWARGS)
    trainer = GRPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        environment_factory=rrr_trl.environment_factory(ENV_ID, **KWARGS),
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),  # a quick step
    )
    assert trainer.reward_func_names == ["RRRToolEnv"]
    assert sorted(t.__name__ for t in trainer.tools) == ["reflect", "submit_answer"]
    trainer.train()
    pool = trainer._environment_pool[None]
    assert {env._episode.info["index"] for env in pool} == {3}
    logged = trainer.state.log_history[0]
    assert logged["rewards/RRRToolEnv/mean"] == sum(env.get_reward() for env in pool) / len(pool)
