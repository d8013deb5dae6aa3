"""No update without signal, sampling without dropout, a reflection-only adapter (issue 25).

A batch whose GRPO groups all got the same reward has no advantage, yet an AdamW step on it
still moves the weights through momentum. With ``skip_steps_without_signal`` such a step moves
no weight, no optimizer moment and no learning rate; without it (TRL's behaviour) it does.
``sample_with_dropout=False`` generates in eval mode: two greedy generations agree although
the model trains with dropout. With ``adapter_scope="reflection"`` the retries are the base
model's (the LoRA adapter disabled).

A 2-layer model from SmolLM2-135M's config (random weights, its real tokenizer and chat
template) keeps the trainer cheap; a scripted token generator decides the rewards, the env
grades them.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainerCallback

import rrr_env
from agents.backends import render_prompt
from agents.grpo_reflect import GRPOReflectConfig, SkipStepsWithoutSignal, build_trainer
from agents.models import resolve_model
from agents.reflection_rollout import with_sampling
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
EASY = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'
TASK = re.compile(r"Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)")
GOOD, BAD = "Use each number exactly once.", "No idea."


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_model(attention_dropout: float = 0.0):
    config = AutoConfig.from_pretrained(resolve_model("smollm2-135m").path)
    config.num_hidden_layers, config.attention_dropout = 2, attention_dropout
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:2]
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


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
        "learning_rate": 1e-3,
        "warmup_steps": 0,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "eval_n": 0,
        "seed": 0,
        "bf16": False,
        "use_cpu": True,
    }
    return GRPOReflectConfig(**{**options, **overrides})


def failures(config: GRPOReflectConfig, count: int):
    from agents.grpo_reflect import load_failures

    env = gym.make(config.env_id, **config.env_options())
    rows = []
    for index in range(count):
        env.reset(options={"index": index})
        obs, _, _, _, info = env.step("I do not know.")
        assert info["phase"] == "reflection"
        rows.append({"prompt": obs, "index": index})
    path = Path(config.failures_path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_failures(path)


class Scripted:
    """Reflections alternate GOOD / BAD within each group while ``signal`` holds, else all BAD;
    a retry after GOOD is a correct answer, any other retry a wrong one."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.signal = [True, False]  # per step

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) + [self.eos]

    def __call__(self, prompt_ids, max_new_tokens, group_size):
        out = []
        for ids in prompt_ids:
            context = self.tokenizer.decode(ids)
            if context.rstrip().endswith("next time.<|im_end|>\n<|im_start|>assistant"):
                useful = self.signal[0] and len(out) % 2 == 0
                out.append(self.encode(GOOD if useful else BAD))
            elif GOOD in context.split("Reflect on what went wrong")[-1]:
                numbers, target = TASK.findall(context)[-1]
                solution = solve([int(n) for n in numbers.split(",")], int(target))
                out.append(self.encode(f"\\boxed{{{solution}}}"))
            else:
                out.append(self.encode("\\boxed{1 + 1}"))
        if group_size == 1:  # the retry call ends a step's rollout
            self.signal = self.signal[1:] or self.signal
        return out, None


class Snapshots(TrainerCallback):
    """Weights, optimizer state and learning rates after each optimizer step."""

    def __init__(self) -> None:
        self.after: dict[int, dict] = {}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        moments = {
            (i, key): value.clone()
            for i, per_param in enumerate(optimizer.state.values())
            for key, value in per_param.items()
            if torch.is_tensor(value)
        }
        self.after[state.global_step] = {
            "weights": {n: p.detach().clone() for n, p in model.named_parameters()},
            "moments": moments,
            "lr": [g["lr"] for g in optimizer.param_groups],
            "schedule": kwargs["lr_scheduler"].state_dict()["last_epoch"],
        }


def train_two_steps(tokenizer, tmp_path, **overrides):
    config = make_config(tmp_path, **overrides)
    dataset = failures(config, 4)
    scripted = Scripted(tokenizer)
    snapshots = Snapshots()
    trainer = build_trainer(
        config,
        tiny_model(),
        tokenizer,
        dataset,
        callbacks=[snapshots],
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train()
    return trainer, snapshots.after


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_batch_without_reward_variance_moves_no_weight_moment_or_learning_rate(
    tokenizer, tmp_path
):
    trainer, after = train_two_steps(tokenizer, tmp_path)
    assert any(isinstance(c, SkipStepsWithoutSignal) for c in trainer.callback_handler.callbacks)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["frac_reward_zero_std"] for h in logged] == [0.0, 1.0]
    assert [h["rrr/skipped_steps"] for h in logged] == [0, 1]
    assert [h["rrr/step_skipped"] for h in logged] == [0.0, 1.0]

    step1, step2 = after[1], after[2]
    assert step1["moments"], "step 1 (with variance) filled AdamW's moments"
    assert same(step1["weights"], step2["weights"]), "the skipped step moved no weight"
    assert same(step1["moments"], step2["moments"]), "nor any moment or step count"
    # The schedule is put back after the step (this test's callback ran before that).
    assert [g["lr"] for g in trainer.optimizer.param_groups] == step1["lr"]
    assert trainer.lr_scheduler.state_dict()["last_epoch"] == step1["schedule"] == 1


def test_a_resumed_run_counts_on_the_steps_it_skipped():
    from types import SimpleNamespace

    from agents.grpo_reflect import ReflectRetryRollout

    skip = SkipStepsWithoutSignal(ReflectRetryRollout(lambda: None, [], retry_max_tokens=4))
    history = [
        {"step": 1, "rrr/skipped_steps": 0},
        {"step": 2},
        {"step": 3, "rrr/skipped_steps": 2},
    ]
    skip.on_train_begin(None, SimpleNamespace(log_history=history), None)
    assert skip.skipped == 2
    skip.on_train_begin(None, SimpleNamespace(log_history=[]), None)
    assert skip.skipped == 0


@pytest.mark.slow
def test_without_the_option_a_batch_without_variance_still_moves_the_weights(tokenizer, tmp_path):
    trainer, after = train_two_steps(tokenizer, tmp_path, skip_steps_without_signal=False)
    assert not any(
        isinstance(c, SkipStepsWithoutSignal) for c in trainer.callback_handler.callbacks
    )
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["frac_reward_zero_std"] for h in logged] == [0.0, 1.0]
    assert "rrr/skipped_steps" not in logged[0]
    step1, step2 = after[1], after[2]
    assert not same(step1["weights"], step2["weights"]), "AdamW's momentum moved them"
    assert not same(step1["moments"], step2["moments"])
    assert step2["schedule"] == step1["schedule"] + 1


@pytest.mark.slow
def test_a_batch_with_variance_steps(tokenizer, tmp_path):
    """Both steps have variance: nothing is skipped, every step moves the weights."""
    config = make_config(tmp_path)
    dataset = failures(config, 4)
    scripted = Scripted(tokenizer)
    scripted.signal = [True]
    before = tiny_model()
    initial = {n: p.detach().clone() for n, p in before.named_parameters()}
    snapshots = Snapshots()
    trainer = build_trainer(
        config,
        before,
        tokenizer,
        dataset,
        callbacks=[snapshots],
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["rrr/skipped_steps"] for h in logged] == [0, 0]
    assert not same(initial, snapshots.after[1]["weights"])
    assert not same(snapshots.after[1]["weights"], snapshots.after[2]["weights"])


class GradForwards(TrainerCallback):
    """Counts, per optimizer step, the model's forward passes that build a graph (the loss's;
    the reference model's log-probabilities are computed without one)."""

    def __init__(self, model) -> None:
        self.per_step: dict[int, int] = {}
        self.step = 0
        model.register_forward_hook(self.hook)

    def hook(self, module, inputs, output) -> None:
        if torch.is_grad_enabled():
            self.per_step[self.step] = self.per_step.get(self.step, 0) + 1

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = state.global_step + 1


@pytest.mark.slow
def test_a_step_without_signal_runs_no_forward_or_backward_pass(tokenizer, tmp_path):
    """Its gradients would be dropped: the trainer leaves its loss uncomputed (logged 0)."""
    config = make_config(tmp_path)
    model = tiny_model()
    forwards, scripted = GradForwards(model), Scripted(tokenizer)  # signal in step 1 only
    trainer = build_trainer(
        config,
        model,
        tokenizer,
        failures(config, 4),
        callbacks=[forwards],
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["rrr/skipped_steps"] for h in logged] == [0, 1]
    assert forwards.per_step.get(1, 0) > 0, "the step with signal computes its loss"
    assert forwards.per_step.get(2, 0) == 0, "the skipped one runs no forward pass"
    assert trainer.signal_skip.uncomputed_losses == 1
    assert logged[1]["loss"] == 0.0 and logged[1]["grad_norm"] == 0.0
    assert "kl" in logged[0] and "kl" not in logged[1]


@pytest.mark.slow
@pytest.mark.parametrize("signal", [[True, False, False, False], [False, True, False, False]])
def test_a_step_fed_by_several_generations_steps_if_any_of_them_had_signal(
    tokenizer, tmp_path, signal
):
    """One generation per micro-batch, two micro-batches per step: step 1 has signal in one
    of its two generations (the first or the latest), step 2 in neither. Its losses are all
    computed (a later generation could still bring signal), and only step 2 is skipped."""
    config = make_config(
        tmp_path, steps_per_generation=1, gradient_accumulation_steps=2, max_steps=2
    )
    scripted = Scripted(tokenizer)
    scripted.signal = signal
    model = tiny_model()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    forwards, snapshots = GradForwards(model), Snapshots()
    trainer = build_trainer(
        config,
        model,
        tokenizer,
        failures(config, 4),
        callbacks=[forwards, snapshots],
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["rrr/skipped_steps"] for h in logged] == [0, 1]
    assert not same(initial, snapshots.after[1]["weights"]), "step 1 updated"
    assert same(snapshots.after[1]["weights"], snapshots.after[2]["weights"])
    assert trainer.signal_skip.uncomputed_losses == 0
    assert forwards.per_step[1] == forwards.per_step[2] > 0


@pytest.mark.slow
def test_every_drawn_training_episode_is_written_with_what_was_trained(tokenizer, tmp_path):
    """Step 1's first draw has no signal and is replaced by a second; step 2's first draw
    has signal. Each episode of each draw is a row, the replaced groups marked untrained."""
    config = make_config(tmp_path, resample_groups=1)
    scripted = Scripted(tokenizer)
    scripted.signal = [False, True]
    trainer = build_trainer(
        config,
        tiny_model(),
        tokenizer,
        failures(config, 4),
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_episodes.jsonl").open()]
    shape = [(r["step"], r["draw"], r["group_with_signal"], r["trained"]) for r in rows]
    assert shape == [(1, 0, False, False)] * 4 + [(1, 1, True, True)] * 4 + [(2, 0, True, True)] * 4
    first, redrawn = rows[:4], rows[4:8]
    assert [r["reflection"] for r in first] == [BAD] * 4
    assert [r["reflection"] for r in redrawn] == [GOOD, BAD, GOOD, BAD]
    assert [r["reward"] for r in redrawn] == [1.0, 0.0, 1.0, 0.0]
    assert [r["reason"] for r in redrawn][::2] == ["ok", "ok"]
    assert [r["slot"] for r in rows[:8]] == [0, 0, 1, 1] * 2
    assert {r["index"] for r in first}.isdisjoint({r["index"] for r in redrawn})
    assert {r["index"] for r in rows} <= {0, 1, 2, 3}
    assert all(r["retry"] and r["reflection_stopped"] for r in rows)


def test_no_episode_file_without_the_option(tokenizer, tmp_path):
    config = make_config(tmp_path, save_train_episodes=False)
    trainer = build_trainer(config, tiny_model(), tokenizer, failures(config, 4))
    assert trainer.rollout_func.episodes_path is None
    assert make_config(tmp_path).save_train_episodes is True


@pytest.mark.slow
@pytest.mark.parametrize("with_dropout", [False, True])
def test_greedy_generations_in_training_mode_agree_without_dropout(
    tokenizer, tmp_path, with_dropout
):
    config = make_config(tmp_path, sample_with_dropout=with_dropout)
    dataset = failures(config, 4)
    trainer = build_trainer(config, tiny_model(attention_dropout=0.5), tokenizer, dataset)
    trainer.model.train()
    prompt = render_prompt(tokenizer, dataset[0]["prompt"])
    rollout = trainer.rollout_func
    torch.manual_seed(0)
    with rollout.trainer_generator(trainer) as sample:
        assert sample.model.training is with_dropout
        generate = with_sampling(sample, temperature=0.0)  # greedy
        first, _ = generate([prompt], 16, 1)
        second, _ = generate([prompt], 16, 1)
    assert trainer.model.training, "training mode is restored after generating"
    assert (first == second) is not with_dropout


def test_both_options_are_command_line_flags_with_the_fixes_on_by_default():
    from trl import ModelConfig, TrlParser

    parser = TrlParser((GRPOReflectConfig, ModelConfig))
    defaults, _ = parser.parse_args_and_config([])
    assert defaults.skip_steps_without_signal is None and defaults.sample_with_dropout is False
    args, _ = parser.parse_args_and_config(
        ["--skip_steps_without_signal", "false", "--sample_with_dropout", "true"]
    )
    assert args.skip_steps_without_signal is False and args.sample_with_dropout is True


# -- issue 25, part 1: a reflection-only adapter ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["reflection", "all"])
def test_with_a_reflection_scope_the_base_model_samples_the_retries(tokenizer, tmp_path, scope):
    from peft import LoraConfig

    from agents.reflection_rollout import HFGenerator

    config = make_config(tmp_path, adapter_scope=scope, retry_temperature=0.0)
    dataset = failures(config, 4)
    lora = LoraConfig(
        r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    trainer = build_trainer(config, tiny_model(), tokenizer, dataset, peft_config=lora)
    trainer.model.train()
    prompts = [dataset[k]["prompt"] for k in (0, 1) for _ in range(2)]
    trainer.rollout_func(prompts, trainer)
    batch = trainer.rollout_func.last_batch

    model = trainer.model.eval()
    greedy = HFGenerator(model, eos_ids=trainer.eos_token_ids, pad_id=tokenizer.pad_token_id)
    greedy = with_sampling(greedy, temperature=0.0)
    contexts = [
        p + r + s
        for p, r, s in zip(
            batch.prompt_ids, batch.reflection_ids, batch.retry_prompt_ids, strict=True
        )
    ]
    with model.disable_adapter():
        base, _ = greedy(contexts, config.retry_max_tokens, 1)
    adapted, _ = greedy(contexts, config.retry_max_tokens, 1)
    assert base != adapted, "the adapter changes the greedy retries of this model"
    assert batch.retry_ids == (base if scope == "reflection" else adapted)


def test_a_reflection_scope_needs_an_adapter_and_transformers_generation(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="--credit reflection"):
        make_config(tmp_path, adapter_scope="reflection", credit="reflection+retry")
    with pytest.raises(ValueError, match="adapter_scope must be one of"):
        make_config(tmp_path, adapter_scope="retry")
    config = make_config(tmp_path, adapter_scope="reflection")
    with pytest.raises(ValueError, match="--use_peft"):
        build_trainer(config, tiny_model(), tokenizer, failures(config, 4))


def test_skipping_is_refused_where_it_cannot_skip(tokenizer, tmp_path):
    config = make_config(tmp_path, skip_steps_without_signal=True)
    config.fp16 = True  # set after validation: fp16 needs a GPU here
    with pytest.raises(ValueError, match="cannot skip a step under --fp16"):
        build_trainer(config, tiny_model(), tokenizer, failures(config, 4))


# -- issue 25, part 2: truncated reflections, greedy collection ------------------------------


class CutScripted(Scripted):
    """Reflections follow ``pattern`` within each group: ``(text, cut)`` per position; a cut
    one fills the token limit without an end-of-turn token. Retries as :class:`Scripted`."""

    def __init__(self, tokenizer, pattern) -> None:
        super().__init__(tokenizer)
        self.pattern = pattern

    def __call__(self, prompt_ids, max_new_tokens, group_size):
        if group_size == 1:
            return super().__call__(prompt_ids, max_new_tokens, group_size)
        out = []
        for k in range(len(prompt_ids)):
            text, cut = self.pattern[k % len(self.pattern)]
            ids = self.encode(text)
            if cut:  # the text repeated up to the limit, no end-of-turn token
                ids = (ids[:-1] * max_new_tokens)[:max_new_tokens]
            out.append(ids)
        return out, None


def train_scripted(tokenizer, tmp_path, pattern, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = make_config(tmp_path, **overrides)
    dataset = failures(config, 4)
    model = tiny_model()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    snapshots = Snapshots()
    trainer = build_trainer(
        config,
        model,
        tokenizer,
        dataset,
        callbacks=[snapshots],
        generator_factory=lambda trainer: contextlib.nullcontext(CutScripted(tokenizer, pattern)),
    )
    trainer.train()
    return trainer, initial, snapshots.after


def rollout_batch(rewards, stopped):
    from agents.reflection_rollout import RolloutBatch

    n = len(rewards)
    return RolloutBatch(
        prompt_ids=[[1]] * n,
        reflection_ids=[[2, 3] if s else [2, 2] for s in stopped],
        retry_prompt_ids=[[4]] * n,
        retry_ids=[[5]] * n,
        reflections=["r"] * n,
        retries=["a"] * n,
        rewards=list(rewards),
        reasons=["x"] * n,
        reflection_logprobs=None,
        retry_logprobs=None,
        reflection_stopped=list(stopped),
        retry_continues=[True] * n,
    )


@pytest.mark.parametrize("credit", ["reflection", "reflection+retry"])
def test_truncated_reflections_change_the_rewards_or_masks_that_trl_receives(credit):
    from agents.grpo_reflect import ReflectRetryRollout, retry_success

    # Two groups of 2: (success after a cut reflection, failure) and (failure, failure cut).
    batch = rollout_batch([1.0, 0.0, 0.0, 0.0], [False, True, True, False])
    outputs = {}
    for mode in ("keep", "mask", "penalize"):
        rollout = ReflectRetryRollout(
            lambda: None, [], retry_max_tokens=4, credit=credit, truncated_reflections=mode
        )
        outputs[mode] = (rollout.to_trl(batch), rollout.groups_without_signal(batch, 2))
    keep, mask, penalize = (outputs[m][0] for m in ("keep", "mask", "penalize"))
    assert keep["trained_reward"] == [1.0, 0.0, 0.0, 0.0] == keep["retry_reward"]
    assert penalize["trained_reward"] == [0.0, 0.0, 0.0, -1.0]
    assert penalize["retry_reward"] == [1.0, 0.0, 0.0, 0.0], "the env's verdicts stay"
    assert mask["trained_reward"] == keep["trained_reward"]
    # Under mask, a cut reflection's whole completion carries no loss.
    lengths = [len(ids) for ids in mask["completion_ids"]]
    assert [sum(m) for m in mask["env_mask"]][0:1] == [0]
    assert [len(m) for m in mask["env_mask"]] == lengths
    assert all(sum(m) > 0 for m in mask["env_mask"][1:3]) and sum(mask["env_mask"][3]) == 0
    assert ("env_mask" in keep) is (credit != "reflection")
    # Which groups give a gradient: kept, group 0 only; penalized, group 1 only (its success
    # came after a cut reflection, its cut failure scores -1 against 0); masked, group 0,
    # which still has a finished reflection.
    assert outputs["keep"][1] == [1] and outputs["mask"][1] == [1]
    assert outputs["penalize"][1] == [0]
    # The reward function returns what GRPO trains on and logs the verdicts.
    logged = {}
    rewards = retry_success(
        [None] * 4,
        [None] * 4,
        log_metric=logged.__setitem__,
        **{k: v for k, v in penalize.items() if k not in ("prompt_ids", "completion_ids")},
    )
    assert rewards == [0.0, 0.0, 0.0, -1.0] and logged["rrr/retry_success"] == 0.25
    assert logged["rrr/reflection_clipped"] == 0.5


def test_masking_drops_groups_whose_every_reflection_was_cut():
    from agents.grpo_reflect import ReflectRetryRollout

    batch = rollout_batch([1.0, 0.0, 1.0, 0.0], [False, False, True, True])
    rollout = ReflectRetryRollout(
        lambda: None, [], retry_max_tokens=4, truncated_reflections="mask"
    )
    assert rollout.groups_without_signal(batch, 2) == [0]


@pytest.mark.slow
def test_a_penalty_gives_a_gradient_where_only_truncation_differs(tokenizer, tmp_path):
    """Every retry succeeds; half the reflections are cut. Kept, no group has signal and the
    steps are skipped; penalized, cut ones score 0 against 1 and every step updates."""
    pattern = [(GOOD, False), (GOOD, True)]
    kept, initial, after = train_scripted(tokenizer, tmp_path / "keep", pattern)
    assert [h["rrr/skipped_steps"] for h in kept.state.log_history if "loss" in h] == [1, 2]
    assert same(initial, after[2]["weights"])
    penalized, initial, after = train_scripted(
        tokenizer, tmp_path / "penalize", pattern, truncated_reflections="penalize"
    )
    logged = [h for h in penalized.state.log_history if "loss" in h]
    assert [h["rrr/skipped_steps"] for h in logged] == [0, 0]
    assert [h["rrr/retry_success"] for h in logged] == [1.0, 1.0]
    assert [h["reward"] for h in logged] == [0.5, 0.5]
    assert not same(initial, after[1]["weights"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["keep", "mask"])
def test_masked_cut_reflections_carry_no_loss(tokenizer, tmp_path, mode):
    """Every reflection is cut and the rewards vary: kept, the step moves the weights;
    masked, no token carries loss, so even without skipping no weight moves."""
    pattern = [(GOOD, True), (BAD, True)]
    trainer, initial, after = train_scripted(
        tokenizer,
        tmp_path,
        pattern,
        truncated_reflections=mode,
        skip_steps_without_signal=False,
        max_steps=1,
    )
    assert same(initial, after[1]["weights"]) is (mode == "mask")


def test_the_options_are_flags_and_bad_values_are_refused(tmp_path):
    from trl import ModelConfig, TrlParser

    parser = TrlParser((GRPOReflectConfig, ModelConfig))
    defaults, _ = parser.parse_args_and_config([])
    assert defaults.truncated_reflections == "keep" and defaults.collect_temperature == 1.0
    args, _ = parser.parse_args_and_config(
        ["--truncated_reflections", "mask", "--collect_temperature", "0"]
    )
    assert args.truncated_reflections == "mask" and args.collect_temperature == 0
    with pytest.raises(ValueError, match="truncated_reflections must be one of"):
        make_config(tmp_path, truncated_reflections="drop")
    with pytest.raises(ValueError, match="--samples_per_query 1"):
        make_config(tmp_path, collect_temperature=0.0, samples_per_query=4)
    with pytest.raises(ValueError, match="collect_temperature must be >= 0"):
        make_config(tmp_path, collect_temperature=-1.0)
