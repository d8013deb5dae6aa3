"""RRR-GRPO on TRL: config, rollout_func, loss mask, rewards, training, resume, GPU wiring.

Trainer tests use the real SmolLM2-135M with tiny budgets (2 prompts x 2 generations, 12-token
reflections). Where a test needs known verdicts or reward variance, a scripted token generator
replaces sampling; the rest (TRL's trainer, the env, the verifier, the chat template) is real.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import pytest
import torch
import yaml
from trl import ModelConfig, TrlParser, get_peft_config

import rrr_env
from agents.backends import eos_token_ids, render_prompt
from agents.grpo_reflect import (
    GRPOReflectConfig,
    ReflectRetryRollout,
    TimeBudget,
    TimeSnapshots,
    apply_cpu_recipe,
    build_trainer,
    format_result,
    load_failures,
    load_policy,
    main,
    retry_success,
)
from agents.models import load_model_and_tokenizer
from agents.reflection_rollout import (
    EpisodeReplayer,
    HFGenerator,
    TRLVLLMGenerator,
    reflect_and_retry,
)
from agents.snapshots import list_snapshots, load_snapshot
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
CONFIGS = Path(__file__).resolve().parents[1] / "agents" / "configs"
EASY = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'
TASK = re.compile(r"Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)")
GOOD, BAD = "Use each number exactly once.", "No idea."


def make_config(tmp_path: Path, **overrides) -> GRPOReflectConfig:
    options = {
        "output_dir": str(tmp_path / "run"),
        "failures_path": str(tmp_path / "failures.jsonl"),
        "env_kwargs": EASY,
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "max_completion_length": 12,
        "retry_max_tokens": 12,
        "max_steps": 2,
        "learning_rate": 1e-5,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "eval_n": 0,
        "seed": 0,
    }
    return GRPOReflectConfig(**{**options, **overrides})


def failure_rows(config: GRPOReflectConfig, count: int) -> list[dict]:
    """Real failure prompts: the env's own conversation after a wrong first attempt."""
    env = gym.make(config.env_id, **config.env_options())
    rows = []
    for index in range(count):
        env.reset(options={"index": index})
        obs, reward, _, _, info = env.step("I do not know.")
        assert reward == 0.0 and info["phase"] == "reflection"
        rows.append({"prompt": obs, "index": index, "item_id": info["item_id"]})
    return rows


@pytest.fixture(scope="module")
def smol():
    return load_model_and_tokenizer("smollm2-135m", dtype="float32")


@pytest.fixture
def dataset(tmp_path):
    rows = failure_rows(make_config(tmp_path), 4)
    path = tmp_path / "failures.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_failures(path)


class ScriptedTokens:
    """Even-numbered sequences of a call get a useful reflection and a correct retry.

    Odd ones get a useless reflection and a wrong retry, so every GRPO group of two has reward
    variance and the verdicts are known in advance.
    """

    def __init__(self, tokenizer, eos: int) -> None:
        self.tokenizer, self.eos = tokenizer, eos
        self.calls: list[tuple[int, int, int]] = []

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) + [self.eos]

    def __call__(self, prompt_ids, max_new_tokens, group_size):
        self.calls.append((len(prompt_ids), max_new_tokens, group_size))
        out = []
        for ids in prompt_ids:
            context = self.tokenizer.decode(ids)
            if context.rstrip().endswith("next time.<|im_end|>\n<|im_start|>assistant"):
                # the reflection phase: alternate within each group
                out.append(self.encode(GOOD if len(out) % 2 == 0 else BAD))
            elif GOOD in context.split("Reflect on what went wrong")[-1]:
                numbers, target = TASK.findall(context)[-1]
                solution = solve([int(n) for n in numbers.split(",")], int(target))
                out.append(self.encode(f"\\boxed{{{solution}}}"))
            else:
                out.append(self.encode("\\boxed{1 + 1}"))
        return out, None


def scripted_factory(tokenizer):
    scripted = ScriptedTokens(tokenizer, tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return scripted, lambda trainer: contextlib.nullcontext(scripted)


def spy_on(trainer) -> tuple[list[dict], list[dict]]:
    """Record what the rollout_func returned and what compute_loss received."""
    rollouts, losses = [], []
    rollout, compute_loss = trainer.rollout_func, trainer.compute_loss

    def recording_rollout(prompts, trainer_):
        output = rollout(prompts, trainer_)
        rollouts.append({"prompts": prompts, **output})
        return output

    def recording_loss(model, inputs, *args, **kwargs):
        losses.append({k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()})
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.rollout_func = recording_rollout
    trainer.compute_loss = recording_loss
    return rollouts, losses


def trained_tokens(batch: dict) -> tuple[list[tuple], list[tuple]]:
    """Per row: the prompt tokens, and the completion tokens that carry loss."""
    mask = batch["completion_mask"]
    if "tool_mask" in batch:
        mask = mask * batch["tool_mask"]
    prompts, trained = [], []
    for row in range(mask.size(0)):
        prompts.append(tuple(batch["prompt_ids"][row][batch["prompt_mask"][row].bool()].tolist()))
        trained.append(tuple(batch["completion_ids"][row][mask[row].bool()].tolist()))
    return prompts, trained


def fake_trainer(config, tokenizer, eos: int, **extra) -> SimpleNamespace:
    """What the rollout reads of a GRPOTrainer: groups of 2, in training mode."""
    return SimpleNamespace(
        args=config,
        num_generations=2,
        num_generations_eval=2,
        model=SimpleNamespace(training=True),
        eos_token_ids=[eos],
        processing_class=tokenizer,
        **extra,
    )


def env_verdict(config, prompt, reflection, retry) -> float:
    """Grade a retry with a fresh env, independently of the rollout code."""
    env = gym.make(config.env_id, **config.env_options())
    index = next(i for i in range(100) if env.reset(options={"index": i})[0] == prompt[:-2])
    env.reset(options={"index": index})
    env.step(prompt[-2]["content"])
    env.step(reflection)
    _, reward, terminated, _, _ = env.step(retry)
    assert terminated
    return reward


# -- configuration ---------------------------------------------------------------------------


def test_config_has_the_paper_defaults_and_per_device_precision(tmp_path):
    config = make_config(tmp_path)
    paper = GRPOReflectConfig(output_dir=str(tmp_path), cpu_recipe=False)
    assert paper.learning_rate == 5e-7 and paper.beta == 0.001
    assert apply_cpu_recipe(paper, ModelConfig()).use_peft is False
    default = GRPOReflectConfig(output_dir=str(tmp_path))
    assert default.cpu_recipe is not torch.cuda.is_available()
    if default.cpu_recipe:  # LoRA at 1e-4 instead of a full fine-tune at 5e-7
        assert default.learning_rate == 1e-4 and default.beta == 0.001
        lora = apply_cpu_recipe(default, ModelConfig())
        assert (lora.use_peft, lora.lora_r, lora.lora_alpha) == (True, 16, 32)
    # What the user sets wins over the recipe.
    assert GRPOReflectConfig(output_dir=str(tmp_path), learning_rate=3e-6).learning_rate == 3e-6
    kept = apply_cpu_recipe(default, ModelConfig(use_peft=True, lora_r=4))
    assert (kept.use_peft, kept.lora_r) == (True, 4)
    # No warmup under the CPU recipe (0.03 of a 2-step run is a whole step at lr 0).
    assert default.lr_scheduler_type == "cosine"
    assert default.warmup_steps == (0 if default.cpu_recipe else 0.03)
    # The default run matches the bundled screened failures of the CPU demo: no collection.
    assert default.collect is False and default.credit == "reflection"
    if not torch.cuda.is_available():
        assert default.gradient_checkpointing is False
        if default.bf16:  # an AMX CPU: bf16 autocast needs transformers' use_cpu
            assert default.use_cpu
    assert config.env_options() == {
        **json.loads(EASY),
        "max_attempts": 2,
        "reflect": True,
        "feedback": "binary",
        "split": "train",
    }
    assert config.env_options(held_out=True)["split"] == "test"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"credit": "retry"}, "--credit"),
        ({"env_kwargs": '{"max_attempts": 3}'}, "trainer controls"),
        ({"env_kwargs": "[1]"}, "JSON object"),
        ({"collect": True}, "only one"),
        ({"failures_path": None, "collect": False}, "--failures_path DIR or --collect"),
        ({"eval_strategy": "steps"}, "--eval_n"),
        ({"use_transformers_continuous_batching": True}, "--use_vllm"),
        ({"max_minutes": 0}, "--max_minutes must be > 0"),
        ({"resample_groups": -1}, "--resample_groups must be >= 0"),
        (
            {"credit": "reflection+retry", "env_kwargs": '{"retry_context": "reflection"}'},
            "use --credit reflection",
        ),
    ],
)
def test_config_rejects_bad_combinations_with_a_fix(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config(tmp_path, **overrides)


def test_dynamic_sampling_is_refused_before_a_multi_process_launch(tmp_path, monkeypatch):
    monkeypatch.setattr(GRPOReflectConfig, "world_size", property(lambda self: 2))
    with pytest.raises(ValueError, match="needs a single process .* 2 were launched"):
        make_config(tmp_path, resample_groups=1)
    assert make_config(tmp_path, resample_groups=0).resample_groups == 0


def test_time_budget_stops_training_after_the_step_that_spends_it():
    from transformers import TrainerControl

    def step(budget: TimeBudget, global_step: int) -> bool:
        control = TrainerControl()
        state = SimpleNamespace(global_step=global_step, max_steps=10)
        return budget.on_step_end(None, state, control).should_training_stop

    spent = TimeBudget(minutes=1.0, started=time.perf_counter() - 61.0)
    assert step(spent, 3) and spent.stopped_early
    fresh = TimeBudget(minutes=1.0, started=time.perf_counter())
    assert not step(fresh, 3) and not fresh.stopped_early
    last = TimeBudget(minutes=1.0, started=time.perf_counter() - 61.0)
    assert not step(last, 10) and not last.stopped_early, "max_steps ended it, not the budget"


def test_the_result_table_says_when_a_run_is_too_short_to_show_learning(tmp_path):
    metrics = {"rrr": {"first_try": 0.25, "second_try": 0.3, "fixed_by_retry": 1, "retried": 12}}
    result = {"before": metrics, "after": metrics, "steps": 4, "failures": 16}
    result["train_seconds"], result["log_history"] = 60.0, []
    short = format_result(make_config(tmp_path, eval_n=16), result)
    assert "| vanilla | 0.250 | 0.300 | 1 / 12 |" in short
    assert "not that the model learned" in short
    long = format_result(make_config(tmp_path, eval_n=200), {**result, "steps": 500})
    assert "not that the model learned" not in long


def test_cli_reads_yaml_configs_and_lora_options():
    parser = TrlParser((GRPOReflectConfig, ModelConfig))
    args, model_args = parser.parse_args_and_config(
        ["--config", str(CONFIGS / "grpo_reflect_countdown.yaml"), "--max_steps", "3"]
    )
    assert args.env_id == "rrr/Countdown-v0" and json.loads(args.env_kwargs)["num_count"] == 2
    assert args.max_steps == 3 and args.collect and args.report_to == ["tensorboard"]
    defaults, _ = parser.parse_args_and_config([])
    for name in ("model", "env_kwargs", "collect_n", "eval_n", "gradient_accumulation_steps"):
        assert getattr(args, name) == getattr(defaults, name), "the YAML spells out the defaults"
    args, model_args = parser.parse_args_and_config(
        ["--use_peft", "--lora_r", "8", "--lora_target_modules", "q_proj", "v_proj"]
    )
    peft_config = get_peft_config(model_args)
    assert peft_config.r == 8 and set(peft_config.target_modules) == {"q_proj", "v_proj"}


def test_gpu_configs_are_on_trl_and_accelerate_paths():
    from accelerate.commands.config.config_args import load_config_from_file

    expected = {
        "accelerate_single_gpu.yaml": ("NO", 1),
        "accelerate_multi_gpu.yaml": ("MULTI_GPU", 8),
        "accelerate_deepspeed_zero3.yaml": ("DEEPSPEED", 8),
    }
    for name, (kind, processes) in expected.items():
        config = load_config_from_file(str(CONFIGS / name))
        assert (str(config.distributed_type).split(".")[-1], config.num_processes) == (
            kind,
            processes,
        )
        assert config.mixed_precision == "bf16"
    zero3 = yaml.safe_load((CONFIGS / "accelerate_deepspeed_zero3.yaml").read_text())
    assert zero3["deepspeed_config"]["zero_stage"] == 3
    args, _ = TrlParser((GRPOReflectConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(CONFIGS / "grpo_reflect_h100.yaml")]
    )
    assert args.use_vllm and args.vllm_mode == "colocate" and args.bf16
    assert args.max_steps == 1750 and args.learning_rate == 5e-7


def test_multi_process_launches_let_trl_load_the_model(tmp_path):
    config = make_config(tmp_path)
    model, tokenizer = load_policy(config, ModelConfig(dtype="bfloat16"), num_processes=8)
    assert isinstance(model, str) and Path(model, "config.json").exists()
    assert config.model_init_kwargs == {"dtype": "bfloat16"}
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


def test_too_few_failures_for_a_generation_batch_is_an_error(dataset, smol, tmp_path):
    model, tokenizer = smol
    config = make_config(tmp_path, gradient_accumulation_steps=4)  # 16 sequences = 8 failures
    with pytest.raises(ValueError, match="needs 8 distinct failures"):
        build_trainer(config, model, tokenizer, dataset)


# -- the rollout -----------------------------------------------------------------------------


def scripted_rollout(tokenizer, config, count: int):
    """Groups of 2 on ``count`` real failures, generated by :class:`ScriptedTokens`."""
    rows = failure_rows(config, count)
    replayer = EpisodeReplayer(lambda: gym.make(config.env_id, **config.env_options()), rows)
    scripted, _ = scripted_factory(tokenizer)
    prompts = [r["prompt"] for r in rows for _ in range(2)]
    batch = reflect_and_retry(
        prompts,
        replayer,
        scripted,
        tokenizer,
        {scripted.eos},
        reflection_max_tokens=12,
        retry_max_tokens=20,
        group_size=2,
    )
    return prompts, batch, scripted


def test_rollout_rewards_are_the_env_verdicts_on_known_retries(smol, tmp_path):
    _, tokenizer = smol
    config = make_config(tmp_path)
    prompts, batch, scripted = scripted_rollout(tokenizer, config, 3)
    assert batch.rewards == [1.0, 0.0] * 3
    assert batch.reasons[1] == "wrong_numbers" or batch.reasons[1] == "missed_target"
    assert batch.reflections == [GOOD, BAD] * 3
    assert scripted.calls == [(6, 12, 2), (6, 20, 1)], "one generation call per phase"
    for prompt, reflection, retry, reward in zip(
        prompts, batch.reflections, batch.retries, batch.rewards, strict=True
    ):
        assert env_verdict(config, prompt, reflection, retry) == reward
    # The retry context is the failure prompt + reflection + the env's retry request.
    context = batch.prompt_ids[0] + batch.reflection_ids[0] + batch.retry_prompt_ids[0]
    conversation = [*prompts[0], {"role": "assistant", "content": GOOD}]
    env = gym.make(config.env_id, **config.env_options())
    env.reset(options={"index": 0})
    env.step(prompts[0][-2]["content"])
    obs, *_ = env.step(GOOD)
    assert obs[: len(conversation)] == conversation
    assert context == render_prompt(tokenizer, obs)


def test_a_retry_from_the_reflection_alone_cannot_see_the_failed_attempt(smol, tmp_path):
    _, tokenizer = smol
    config = make_config(tmp_path, env_kwargs='{"retry_context": "reflection"}')
    prompts, batch, _ = scripted_rollout(tokenizer, config, 3)
    assert batch.rewards == [1.0, 0.0] * 3, "the useful reflection still reaches the retry"
    assert batch.retry_continues == [False] * 6
    env = gym.make(config.env_id, **config.env_options())
    env.reset(options={"index": 0})
    env.step(prompts[0][-2]["content"])
    obs, *_ = env.step(GOOD)
    assert batch.retry_prompt_ids[0] == render_prompt(tokenizer, obs), "the env's fresh context"
    retry_context = tokenizer.decode(batch.retry_prompt_ids[0])
    assert GOOD in retry_context and "I do not know." not in retry_context


def test_sampled_retries_are_graded_by_the_env(smol, tmp_path):
    model, tokenizer = smol
    config = make_config(tmp_path)
    rows = failure_rows(config, 2)
    replayer = EpisodeReplayer(lambda: gym.make(config.env_id, **config.env_options()), rows)
    eos = eos_token_ids(model, tokenizer)
    generate = HFGenerator(model, sorted(eos), tokenizer.pad_token_id, temperature=1.0)
    torch.manual_seed(0)
    prompts = [r["prompt"] for r in rows for _ in range(2)]
    batch = reflect_and_retry(
        prompts,
        replayer,
        generate,
        tokenizer,
        eos,
        reflection_max_tokens=10,
        retry_max_tokens=10,
    )
    assert all(0 < len(ids) <= 10 for ids in batch.reflection_ids + batch.retry_ids)
    for prompt, reflection, retry, reward in zip(
        prompts, batch.reflections, batch.retries, batch.rewards, strict=True
    ):
        assert env_verdict(config, prompt, reflection, retry) == reward


def test_replay_rejects_failures_from_another_env(tmp_path):
    config = make_config(tmp_path)
    rows = failure_rows(config, 1)
    other = make_config(tmp_path, env_kwargs='{"num_count": 3}')
    replayer = EpisodeReplayer(lambda: gym.make(other.env_id, **other.env_options()), rows)
    with pytest.raises(ValueError, match="same --env_id, --env_kwargs and --train_split"):
        replayer.replay(replayer.envs(1)[0], rows[0]["prompt"])
    with pytest.raises(KeyError, match="not in the dataset"):
        replayer.replay(replayer.envs(1)[0], [{"role": "user", "content": "?"}])


class OnlySomeItemsLearnable(ScriptedTokens):
    """Like :class:`ScriptedTokens` on the failures of ``learnable`` (their numbers and target);
    on every other failure both reflections are useless, so the group has no reward variance.
    """

    def __init__(self, tokenizer, eos: int, learnable: set[tuple[str, str]]) -> None:
        super().__init__(tokenizer, eos)
        self.learnable = learnable

    def __call__(self, prompt_ids, max_new_tokens, group_size):
        out, _ = super().__call__(prompt_ids, max_new_tokens, group_size)
        for k, ids in enumerate(prompt_ids):
            context = self.tokenizer.decode(ids)
            if TASK.findall(context)[-1] not in self.learnable:
                useless = "\\boxed{1 + 1}" if "Reflect on what went wrong" in context else BAD
                out[k] = self.encode(useless)
        return out, None


def resampling_setup(
    smol, tmp_path, resample_groups: int, resample_batch: int = 1, learnable_rows=(6, 7)
):
    _, tokenizer = smol
    config = make_config(tmp_path)
    rows = failure_rows(config, 8)
    learnable = {TASK.findall(rows[k]["prompt"][1]["content"])[-1] for k in learnable_rows}
    scripted = OnlySomeItemsLearnable(
        tokenizer, tokenizer.convert_tokens_to_ids("<|im_end|>"), learnable
    )
    rollout = ReflectRetryRollout(
        lambda: gym.make(config.env_id, **config.env_options()),
        rows,
        retry_max_tokens=40,
        resample_groups=resample_groups,
        resample_batch=resample_batch,
        seed=0,
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
        episodes_path=tmp_path / "train_episodes.jsonl",
    )
    trainer = fake_trainer(config, tokenizer, scripted.eos, state=SimpleNamespace(global_step=0))
    return rows, rollout, trainer, scripted


def test_dynamic_sampling_replaces_groups_without_reward_variance(smol, tmp_path):
    _, tokenizer = smol
    rows, rollout, trainer, scripted = resampling_setup(smol, tmp_path, resample_groups=50)
    # Groups on failures 0 and 6: the first has no variance, the second has.
    prompts = [rows[0]["prompt"]] * 2 + [rows[6]["prompt"]] * 2
    output = rollout(prompts, trainer)

    assert output["retry_reward"] == [1.0, 0.0, 1.0, 0.0], "both groups now have variance"
    assert output["group_uniform"] == [False] * 4
    draws = output["group_draws"]
    assert draws[0] == draws[1] > 1 and draws[2:] == [1, 1], "only the first group was redrawn"
    # The replacement is the one other learnable failure (6 was taken by the batch), and the
    # trainer receives its rendered prompt, so the loss is on the failure that was rolled out.
    assert output["prompt_ids"][0] == render_prompt(tokenizer, rows[7]["prompt"])
    assert output["prompt_ids"][2] == render_prompt(tokenizer, rows[6]["prompt"])
    # Each draw is one reflection call and one retry call for the redrawn group only.
    assert len(scripted.calls) == 2 * draws[0]
    assert scripted.calls[2:4] == [(2, 12, 2), (2, 40, 1)]
    # The reward function reports the share of drawn groups without variance.
    metrics = {}
    retry_success(
        prompts=prompts,
        completions=[[]] * 4,
        log_metric=metrics.__setitem__,
        **{k: output[k] for k in ("retry_reward", "group_draws", "group_uniform")},
    )
    groups_drawn = draws[0] + 1
    assert metrics["rrr/group_draws"] == groups_drawn / 2
    assert metrics["rrr/drawn_zero_variance"] == (groups_drawn - 2) / groups_drawn


def test_resampling_in_batches_trains_on_the_first_group_with_signal(smol, tmp_path):
    """Six replacement groups generated together (one reflection call, one retry call): two
    of them have signal; the slot trains on the first of those in draw order, as drawing one
    at a time would, and the metrics count both."""
    _, tokenizer = smol
    rows, rollout, trainer, scripted = resampling_setup(
        smol, tmp_path, resample_groups=6, resample_batch=6, learnable_rows=(5, 6, 7)
    )
    prompts = [rows[0]["prompt"]] * 2 + [rows[6]["prompt"]] * 2
    output = rollout(prompts, trainer)

    # One round: the 6 failures not in the batch (1-5 and 7), 2 prompts each, in one call each.
    assert scripted.calls[2:] == [(12, 12, 2), (12, 40, 1)]
    assert output["group_draws"] == [7, 7, 1, 1]
    assert output["group_signal_draws"] == [2, 2, 1, 1]
    assert output["group_uniform"] == [False] * 4
    episodes = [json.loads(line) for line in (tmp_path / "train_episodes.jsonl").open()]
    redrawn = [e for e in episodes if e["draw"] == 1][::2]  # one row per group
    assert sorted(e["index"] for e in redrawn) == sorted(
        rows[k]["index"] for k in (1, 2, 3, 4, 5, 7)
    )
    first = next(e for e in redrawn if e["group_with_signal"])
    assert [e["index"] for e in redrawn if e["trained"]] == [first["index"]]
    assert output["prompt_ids"][0] == render_prompt(
        tokenizer, next(r["prompt"] for r in rows if r["index"] == first["index"])
    )
    assert sum(e["trained"] for e in episodes) == 4, "one trained group per slot"
    metrics = {}
    retry_success(
        prompts=prompts,
        completions=[[]] * 4,
        log_metric=metrics.__setitem__,
        **{k: output[k] for k in ("retry_reward", "group_draws", "group_uniform")},
        group_signal_draws=output["group_signal_draws"],
    )
    assert metrics["rrr/group_draws"] == 8 / 2
    assert metrics["rrr/drawn_zero_variance"] == (8 - 3) / 8


def test_resampling_in_batches_keeps_to_the_budget(smol, tmp_path):
    """Budget 5 in batches of 2: rounds of 2, 2 and 1 groups, all without signal."""
    rows, rollout, trainer, scripted = resampling_setup(
        smol, tmp_path, resample_groups=5, resample_batch=2, learnable_rows=(6,)
    )
    prompts = [rows[0]["prompt"]] * 2 + [rows[6]["prompt"]] * 2
    output = rollout(prompts, trainer)
    assert [n for n, _, _ in scripted.calls[2::2]] == [4, 4, 2]
    assert output["group_draws"] == [6, 6, 1, 1]
    assert output["group_uniform"] == [True, True, False, False]
    episodes = [json.loads(line) for line in (tmp_path / "train_episodes.jsonl").open()]
    trained = [(e["draw"], e["slot"]) for e in episodes if e["trained"]][::2]
    assert trained == [(0, 1), (3, 0)], "a slot without signal trains on its last group"


def test_resampling_batch_is_checked(smol, tmp_path):
    with pytest.raises(ValueError, match="resample_batch must be >= 1"):
        resampling_setup(smol, tmp_path, resample_groups=1, resample_batch=0)
    with pytest.raises(ValueError, match="--resample_batch must be >= 1"):
        make_config(tmp_path, resample_batch=0)


def test_dynamic_sampling_still_redraws_when_generation_switches_to_eval_mode(smol, tmp_path):
    """The trainer's own generator samples in eval mode (no dropout); it must not turn a
    training rollout's resampling off (it did: the no-argument demo never redrew a group)."""
    rows, rollout, trainer, scripted = resampling_setup(smol, tmp_path, resample_groups=50)

    @contextlib.contextmanager
    def in_eval_mode(trainer):
        trainer.model.training = False  # as ReflectRetryRollout.generation_mode does
        try:
            yield scripted
        finally:
            trainer.model.training = True

    rollout.generator_factory = in_eval_mode
    prompts = [rows[0]["prompt"]] * 2 + [rows[6]["prompt"]] * 2
    output = rollout(prompts, trainer)
    assert output["group_draws"][0] > 1 and output["group_uniform"] == [False] * 4


def test_without_resampling_or_in_evaluation_uniform_groups_are_kept(smol, tmp_path):
    rows, rollout, trainer, scripted = resampling_setup(smol, tmp_path, resample_groups=0)
    prompts = [rows[0]["prompt"]] * 2 + [rows[6]["prompt"]] * 2
    output = rollout(prompts, trainer)
    assert output["retry_reward"] == [0.0, 0.0, 1.0, 0.0]
    assert output["group_draws"] == [1] * 4
    assert output["group_uniform"] == [True, True, False, False]
    assert len(scripted.calls) == 2

    _, rollout, trainer, scripted = resampling_setup(smol, tmp_path, resample_groups=50)
    trainer.model.training = False
    assert rollout(prompts, trainer)["group_draws"] == [1] * 4
    assert len(scripted.calls) == 2


def test_retry_success_logs_rrr_metrics():
    metrics, extra = {}, {}
    rewards = retry_success(
        prompts=[[]] * 2,
        completions=[[]] * 2,
        retry_reward=[1.0, 0.0],
        reflection_tokens=[4, 6],
        retry_tokens=[10, 20],
        reflection_stopped=[True, False],
        reflection=["a", "b"],
        retry=["c", "d"],
        retry_reason=["ok", "no_answer"],
        log_metric=metrics.__setitem__,
        log_extra=extra.__setitem__,
    )
    assert rewards == [1.0, 0.0]
    assert metrics == {
        "rrr/retry_success": 0.5,
        "rrr/reflection_tokens": 5.0,
        "rrr/retry_tokens": 15.0,
        "rrr/reflection_clipped": 0.5,
    }
    assert extra["retry_reason"] == ["ok", "no_answer"]


def test_vllm_generation_goes_through_trls_engine_for_both_phases(smol, tmp_path):
    _, tokenizer = smol
    config = make_config(tmp_path, use_vllm=True, credit="reflection+retry")
    rows = failure_rows(config, 2)
    scripted, _ = scripted_factory(tokenizer)

    class FakeVLLMGeneration:  # TRL's VLLMGeneration interface, without vLLM
        max_completion_length = config.max_completion_length
        calls = []

        def generate(self, prompts, images, num_generations):
            self.calls.append((len(prompts), num_generations, self.max_completion_length))
            ids, _ = scripted(prompts, self.max_completion_length, num_generations)
            logprobs = [[[-0.5]] * len(c) for c in ids]
            return prompts, ids, logprobs, None

    engine = FakeVLLMGeneration()
    trainer = fake_trainer(config, tokenizer, scripted.eos, vllm_generation=engine)
    rollout = ReflectRetryRollout(
        lambda: gym.make(config.env_id, **config.env_options()),
        rows,
        retry_max_tokens=config.retry_max_tokens + 5,
        credit=config.credit,
    )
    with rollout.trainer_generator(trainer) as generate:
        assert isinstance(generate, TRLVLLMGenerator)
    prompts = [r["prompt"] for r in rows for _ in range(2)]
    output = rollout(prompts, trainer)
    assert engine.calls == [(4, 2, 12), (4, 1, 17)], "groups deduplicated, retry limit raised"
    assert engine.max_completion_length == 12, "the engine's limit is restored"
    for ids, mask, logprobs in zip(
        output["completion_ids"], output["env_mask"], output["logprobs"], strict=True
    ):
        assert len(ids) == len(mask) == len(logprobs)
        assert [lp for lp, m in zip(logprobs, mask, strict=True) if m] == [-0.5] * sum(mask)
    assert output["retry_reward"] == [1.0, 0.0, 1.0, 0.0]


# -- training --------------------------------------------------------------------------------


def test_two_steps_train_only_the_reflection_tokens(dataset, tmp_path):
    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = make_config(tmp_path, warmup_steps=0)  # step 1 moves the weights too
    scripted, factory = scripted_factory(tokenizer)
    # A mark passed at once: the policy after step 1 is saved, not after the last step.
    snapshots = TimeSnapshots([1e-6], time.perf_counter(), tmp_path / "run", tokenizer)
    trainer = build_trainer(
        config, model, tokenizer, dataset, generator_factory=factory, callbacks=[snapshots]
    )
    rollouts, losses = spy_on(trainer)
    trainer.train()

    assert trainer.state.global_step == 2
    [(path, info)] = list_snapshots(tmp_path / "run")
    assert info["step"] == 1
    name = "model.layers.0.self_attn.q_proj.weight"
    saved = dict(load_snapshot(path, "smollm2-135m")[0].named_parameters())[name]
    final = dict(trainer.model.named_parameters())[name]
    assert not torch.equal(saved, before[name]) and not torch.equal(saved, final)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) > len(before) // 2, "most parameters moved"
    logged = trainer.state.log_history[0]
    assert logged["reward"] == 0.5 and logged["rrr/retry_success"] == 0.5
    assert logged["frac_reward_zero_std"] == 0.0 and "kl" in logged

    for rollout, loss in zip(rollouts, losses, strict=True):
        assert rollout["retry_reward"] == [1.0, 0.0] * 2
        assert "env_mask" not in rollout
        prompts, trained = trained_tokens(loss)
        reflections = [tuple(ids) for ids in rollout["completion_ids"]]
        assert sorted(trained) == sorted(reflections), "loss on exactly the reflection tokens"
        assert {tokenizer.decode(t, skip_special_tokens=True) for t in trained} == {GOOD, BAD}
        rendered = [tuple(render_prompt(tokenizer, p)) for p in rollout["prompts"]]
        assert sorted(prompts) == sorted(rendered)
        for prompt in prompts:  # the first attempt is context, never a completion
            text = tokenizer.decode(prompt)
            assert text.count("I do not know.") == 1 and text.endswith("<|im_start|>assistant\n")


def test_trainer_scores_the_resampled_failures(dataset, tmp_path):
    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    config = make_config(tmp_path, max_steps=1, resample_groups=50)
    learnable = {TASK.findall(dataset[k]["prompt"][1]["content"])[-1] for k in (2, 3)}
    scripted = OnlySomeItemsLearnable(
        tokenizer, tokenizer.convert_tokens_to_ids("<|im_end|>"), learnable
    )
    factory = lambda trainer: contextlib.nullcontext(scripted)  # noqa: E731
    trainer = build_trainer(config, model, tokenizer, dataset, generator_factory=factory)
    rollouts, losses = spy_on(trainer)
    trainer.train()

    (rollout,), (loss,) = rollouts, losses
    assert rollout["retry_reward"] == [1.0, 0.0] * 2 and not any(rollout["group_uniform"])
    prompts, _ = trained_tokens(loss)
    learned = {tuple(render_prompt(tokenizer, dataset[k]["prompt"])) for k in (2, 3)}
    assert set(prompts) == learned, "the loss is on the failures that were rolled out"
    assert (loss["advantages"] != 0).all()
    logged = trainer.state.log_history[0]
    assert logged["frac_reward_zero_std"] == 0.0
    assert logged["rrr/group_draws"] == sum(rollout["group_draws"]) / 4 >= 1
    assert 0 <= logged["rrr/drawn_zero_variance"] < 1


def test_reflection_plus_retry_credit_masks_the_retry_prompt(dataset, tmp_path):
    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    config = make_config(tmp_path, credit="reflection+retry", max_completion_length=8)
    trainer = build_trainer(config, model, tokenizer, dataset)  # real sampling, both phases
    rollouts, losses = spy_on(trainer)
    trainer.train()

    assert trainer.state.global_step == 2
    assert {"rrr/retry_tokens", "rrr/reflection_clipped"} <= set(trainer.state.log_history[0])
    for rollout, loss in zip(rollouts, losses, strict=True):
        expected = []
        for ids, mask, n_reflection, n_retry in zip(
            rollout["completion_ids"],
            rollout["env_mask"],
            rollout["reflection_tokens"],
            rollout["retry_tokens"],
            strict=True,
        ):
            n_prompt = len(ids) - n_reflection - n_retry
            assert mask == [1] * n_reflection + [0] * n_prompt + [1] * n_retry
            retry_prompt = tokenizer.decode(ids[n_reflection : n_reflection + n_prompt])
            assert "Using the numbers" in retry_prompt and retry_prompt.endswith("assistant\n")
            expected.append(tuple(ids[:n_reflection] + ids[n_reflection + n_prompt :]))
        _, trained = trained_tokens(loss)
        assert sorted(trained) == sorted(expected)
        for prompt, reflection, retry, reward in zip(
            rollout["prompts"],
            rollout["reflection"],
            rollout["retry"],
            rollout["retry_reward"],
            strict=True,
        ):
            assert env_verdict(config, prompt, reflection, retry) == reward


def test_resume_from_checkpoint_continues_the_step_count_with_lora(dataset, tmp_path):
    _, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    lora = get_peft_config(
        ModelConfig(use_peft=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"])
    )

    def run(max_steps: int, resume: str | None) -> tuple:
        model, _ = load_model_and_tokenizer("smollm2-135m", dtype="float32")
        config = make_config(
            tmp_path, max_steps=max_steps, save_strategy="steps", save_steps=1, warmup_steps=0.03
        )
        scripted, factory = scripted_factory(tokenizer)
        trainer = build_trainer(
            config, model, tokenizer, dataset, peft_config=lora, generator_factory=factory
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer, scripted

    first, _ = run(1, None)
    checkpoint = Path(first.args.output_dir) / "checkpoint-1"
    assert (checkpoint / "adapter_model.safetensors").exists()
    resumed, scripted = run(2, str(checkpoint))
    assert resumed.state.global_step == 2
    assert len(scripted.calls) == 2, "only step 2 ran: one reflection and one retry call"
    logged = {h["step"]: h for h in resumed.state.log_history if "loss" in h}
    assert sorted(logged) == [1, 2], "the log history was restored, then extended"
    assert logged[2]["learning_rate"] == 1e-5, "the schedule continued (step 1 was warmup)"


def test_command_line_collects_evaluates_trains_and_reports(tmp_path, capsys):
    output = tmp_path / "run"
    result = main(
        [
            *("--model", "smollm2-135m", "--env_kwargs", EASY, "--output_dir", str(output)),
            *("--collect_n", "2", "--samples_per_query", "1", "--eval_n", "2"),
            *("--max_steps", "1", "--num_generations", "2", "--per_device_train_batch_size", "2"),
            *("--gradient_accumulation_steps", "1"),
            *("--attempt_max_tokens", "8", "--max_completion_length", "6"),
            *("--retry_max_tokens", "8", "--save_strategy", "no"),
        ]
    )
    assert result["steps"] == 1 and result["failures"] == 2
    assert result["generation_engine"] == "torch"
    assert "_original_forward" not in vars(result["model"]), "accelerate's autocast removed"
    for name in ("before", "after"):
        metrics = json.loads((output / f"eval_{name}" / "metrics.json").read_text())
        assert metrics["rrr"]["episodes"] == 2 == result[name]["rrr"]["episodes"]
    assert (output / "failures" / "dataset").is_dir()
    # Without a GPU the CPU recipe trains (and saves) a LoRA adapter; the paper's recipe, a model.
    if torch.cuda.is_available():
        assert (output / "model.safetensors").exists()
    else:
        assert (output / "adapter_model.safetensors").exists()
        reloaded, _ = load_model_and_tokenizer(str(output), dtype="float32")
        assert hasattr(reloaded, "peft_config"), "the adapter folder loads as a model"
    assert json.loads((output / "result.json").read_text())["steps"] == 1
    assert json.loads((output / "rrr_policy.json").read_text()) == {"adapter_scope": "all"}
    printed = capsys.readouterr().out
    assert "| vanilla |" in printed and "| trained |" in printed and "by step: 1:" in printed
    assert "not that the model learned" in printed
