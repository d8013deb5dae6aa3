"""RISE-style advantage-weighted regression (AWR) on an ``rrr/*`` env: the training loop.

    python -m agents.rise_awr                                    # CPU demo: one iteration
    python -m agents.rise_awr --iterations 8 --items-per-iteration 16 --eval-n 100
    python -m agents.rise_awr --env-id rrr/GSM8K-v0 --best-of 16 --no-use-peft --learning-rate 1e-5
    python -m agents.rise_awr --config my_rise.yaml
    python -m agents.rise_awr --resume runs/rise_awr/<run_name>/checkpoint --iterations 8

RISE (Recursive Introspection, arXiv 2407.18219) turns a single-turn problem into a
multi-turn MDP: after a wrong answer the model is told "The answer is incorrect. Please try
again." and answers again, for up to T turns. This is ``ReflectRetryEnv`` with
``reflect=False, max_attempts=T, feedback="binary"``. Each iteration runs, in this order:

1. **collect**: ``--samples-per-item`` multi-turn episodes per training item with the current
   policy. Turn 1 of an item's episodes forms one group of samples (same history). Every
   later turn follows a failed one; self-distillation samples ``--best-of`` responses in
   total at that turn, from that exact history (the episode's own response counts as one).
2. **advantages**: each group's best response (a correct one if any) is the training
   target of its turn. Its advantage is its reward minus the mean reward of the group
   (``--weighting baseline``) or its plain reward (``--weighting official``, the official
   code's ``exp(reward / 0.4)`` with the default ``--beta``).
3. **weights**: ``min(exp(A / beta), max_weight)``; the loss is the weight times the mean NLL
   of the target's tokens given its history, rendered by the model's own chat template; the
   history tokens are masked out (label -100). The batch loss is the mean over targets, as in
   the official code.
4. **update, log, checkpoint**: AdamW with gradient clipping (full model or LoRA), metrics
   under ``charts/``, ``losses/`` and ``rollout/`` (tensorboard or wandb, and always
   ``metrics.jsonl``), and a resumable checkpoint (model, optimizer, iteration).

With ``--eval-n N`` (N > 0), before the first and after the last iteration, the policy is
evaluated greedily on N problems of a held-out split with :func:`agents.evaluate.evaluate`:
RISE's m1@t1 and p1@t{T}, and with ``--eval-reflect`` RRR's 1st-try and 2nd-try accuracy.
Model loading, rollouts and evaluation are the ``agents`` core that RRR-GRPO uses too, so the
two methods differ only in the method.

With no arguments (the CPU demo) it trains a LoRA adapter on Qwen2.5-Coder-1.5B for one
iteration on the shortcut-free preset ``rrr/Countdown3-NoFixedForms-v1`` (train split):
4 items, 2 episodes each of up to 2 turns, best of 4 at the second turn, 512-token answers,
then prints what the iteration trained. On a 2-core AMD EPYC with AVX-512 BF16 it took 8.2
minutes and 14.9 GB (10.9 GB with ``--dtype auto``), and trained one correct target in one
optimizer step. RISE trains only groups with a correct response, so a demo needs a model
that solves some of its problems: sampled at T = 1 with 512 tokens, this one solved 2 of 32
first attempts on the preset's train problems (2 of 8 problems at least once),
Qwen2.5-Coder-0.5B 1 of 128. The demo skips the held-out evaluation; ``--eval-n 100
--eval-split validation`` evaluates 100 of the preset's validation problems before and after
(the default split, ``test``, is one that every env has).

A run folder holds ``args.json``; ``metrics.jsonl`` (a row per iteration and per evaluation,
appended as they happen); ``targets.jsonl`` (every trained target with its history, reward,
advantage and weight); ``eval_iter<N>_{rise,rrr}.jsonl`` (evaluation episodes of the policy
after ``N`` iterations, appended chunk by chunk); tensorboard events; and ``checkpoint/``
(model or LoRA adapter, tokenizer, ``trainer_state.pt``); with ``--snapshot-minutes``,
``snapshots/<m>min/`` (the policy when training time first passed each mark). Every file
is written as the run goes, and a killed run continues with ``--resume`` (one whose
``--max-minutes`` were spent by its checkpoint trains no further).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

import rrr_env
from agents.backends import TransformersBackend, eos_token_ids, render_prompt
from agents.controls import CountingBackend
from agents.engines import make_backend
from agents.evaluate import append_lines, evaluate
from agents.items import distinct_indices
from agents.models import (
    generation_model,
    load_model_and_tokenizer,
    resolve_dtype,
)
from agents.rise_awr_config import (
    DEMO_ENV_ID,
    DEMO_MODEL,
    FULL_LEARNING_RATE,
    LORA_LEARNING_RATE,
    REPORT_TO,
    RISE_MODE_KEYS,
    WEIGHTINGS,
    Args,
)
from agents.rollout import Backend, Episode, PhaseSampling, SamplingParams, Tools, rollout
from agents.snapshots import SnapshotSchedule
from rrr_env.tasks.base import Message

logger = logging.getLogger(__name__)
gym.register_envs(rrr_env)

#: Label of tokens that carry no loss (PyTorch's ``cross_entropy`` default ``ignore_index``).
IGNORE_INDEX = -100
CHECKPOINT = "checkpoint"
TRAINER_STATE = "trainer_state.pt"

# The options (Args) live in agents/rise_awr_config.py, as RRR-GRPO's live in
# agents/grpo_reflect_config.py; their public names are re-exported here.


# -- 1. collect ----------------------------------------------------------------------------


@dataclass
class Group:
    """Responses sampled from one history: a turn's samples, the best of which is trained.

    Attributes:
        index: The item's index in the env's task.
        turn: The 1-based turn the responses answer.
        history: The conversation before the responses (ends with a user message).
        tools: The item's tool schemas, for tasks that have them.
        responses: The sampled responses.
        rewards: The env's reward for each response.
    """

    index: int
    turn: int
    history: list[Message]
    tools: Tools
    responses: list[str]
    rewards: list[float]

    @property
    def best(self) -> int:
        """Position of the target: the first response with the highest reward."""
        return int(np.argmax(self.rewards))


def _assistant_positions(messages: Sequence[Message]) -> list[int]:
    return [i for i, m in enumerate(messages) if m["role"] == "assistant"]


def _replay(env: gym.Env, index: int, actions: Sequence[str]) -> tuple[list[Message], dict]:
    """Reset ``env`` to item ``index`` and step ``actions``; return the observation and info."""
    obs, info = env.reset(options={"index": index})
    for action in actions:
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            raise RuntimeError(f"replaying item {index} ended early; the env is not deterministic")
    return obs, info


def collect(
    make_env: Callable[[], gym.Env],
    backend: Backend,
    indices: Sequence[int],
    *,
    samples_per_item: int,
    best_of: int,
    sampling: PhaseSampling,
    seed: int = 0,
    best_of_sampling: SamplingParams | None = None,
) -> tuple[list[Episode], list[Group]]:
    """Roll out the policy in RISE mode and build the groups of every turn.

    ``samples_per_item`` episodes per item give turn 1 its group. Each later turn of an
    episode follows a failed turn; its group is the episode's own response plus
    ``best_of - 1`` fresh samples from the same history, graded by replaying the episode in
    a fresh env (so rewards are exactly the env's).

    Args:
        make_env: Builds one env in RISE mode (``reflect=False``, binary feedback).
        backend: Generates responses with the current policy.
        indices: Training items.
        samples_per_item: Episodes per item.
        best_of: Responses per later turn, the episode's own included.
        sampling: Sampling parameters of the rollout.
        seed: Seed of the rollout.
        best_of_sampling: Sampling parameters of the fresh samples (default: the rollout's
            retry phase).

    Returns:
        The on-policy episodes and the groups (turn-1 groups first, in item order).
    """
    episodes = rollout(
        make_env, backend, indices, group_size=samples_per_item, sampling=sampling, seed=seed
    )
    env = make_env()
    tools = {i: _replay(env, i, [])[1].get("tools") for i in dict.fromkeys(indices)}
    groups: list[Group] = []
    for index in dict.fromkeys(indices):
        mine = [e for e in episodes if e.index == index]
        first = mine[0].messages[: _assistant_positions(mine[0].messages)[0]]
        groups.append(
            Group(
                index,
                1,
                first,
                tools[index],
                [e.graded[0].text for e in mine],
                [e.graded[0].reward for e in mine],
            )
        )
    later: list[tuple[Group, list[str]]] = []  # groups after a failed turn, and their actions
    for episode in episodes:
        positions = _assistant_positions(episode.messages)
        for turn, (position, step) in enumerate(zip(positions, episode.turns, strict=True), 1):
            if turn == 1:
                continue
            history = episode.messages[:position]
            group = Group(
                episode.index, turn, history, tools[episode.index], [step.text], [step.reward]
            )
            later.append((group, [t.text for t in episode.turns[: turn - 1]]))
    if best_of > 1 and later:
        conversations = [g.history for g, _ in later for _ in range(best_of - 1)]
        group_tools = [g.tools for g, _ in later for _ in range(best_of - 1)]
        params = best_of_sampling or sampling.retry
        generations = iter(backend.generate(conversations, params, group_tools))
        for group, previous in later:
            for _ in range(best_of - 1):
                text = next(generations).text
                obs, _ = _replay(env, group.index, previous)
                if obs != group.history:
                    raise RuntimeError(f"replaying item {group.index} gave another conversation")
                _, reward, *_ = env.step(text)
                group.responses.append(text)
                group.rewards.append(float(reward))
    env.close()
    groups.extend(g for g, _ in later)
    return episodes, groups


# -- 2. advantages and 3. weights ----------------------------------------------------------


@dataclass
class Target:
    """One training example: a response to train, given its history, with its weight.

    Attributes:
        index: The item's index.
        turn: The 1-based turn of the response.
        history: The conversation before the response.
        tools: The item's tool schemas, if any.
        response: The response (the best of its group).
        reward: Its reward.
        advantage: Its advantage.
        weight: ``min(exp(advantage / beta), max_weight)``.
        group_size: Responses in its group.
        group_mean: Mean reward of its group.
    """

    index: int
    turn: int
    history: list[Message]
    tools: Tools
    response: str
    reward: float
    advantage: float
    weight: float
    group_size: int
    group_mean: float


def advantage(rewards: Sequence[float], chosen: int, weighting: str) -> float:
    """The advantage of ``rewards[chosen]`` under ``weighting`` (see :data:`WEIGHTINGS`).

    >>> advantage([0.0, 1.0, 0.0, 0.0], 1, "baseline")
    0.75
    >>> advantage([0.0, 1.0, 0.0, 0.0], 1, "official")
    1.0
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    reward = float(rewards[chosen])
    return reward - float(np.mean(rewards)) if weighting == "baseline" else reward


def awr_weight(advantage: float, beta: float, max_weight: float) -> float:
    """``min(exp(advantage / beta), max_weight)``, safe from overflow.

    >>> round(awr_weight(1.0, 0.4, 20.0), 4)
    12.1825
    >>> awr_weight(1.0, 0.1, 20.0)
    20.0
    """
    return float(min(math.exp(min(advantage / beta, 700.0)), max_weight))


def make_targets(
    groups: Sequence[Group],
    *,
    weighting: str,
    beta: float,
    max_weight: float,
    train_on_failures: bool = True,
) -> list[Target]:
    """The best response of each group, with its advantage and weight.

    Args:
        groups: From :func:`collect`.
        weighting: See :data:`WEIGHTINGS`.
        beta: Temperature of the weights.
        max_weight: Clip of the weights.
        train_on_failures: Keep targets whose reward is not positive (no correct response).

    Returns:
        One target per kept group, in group order.
    """
    targets = []
    for group in groups:
        best = group.best
        if not train_on_failures and group.rewards[best] <= 0:
            continue
        adv = advantage(group.rewards, best, weighting)
        targets.append(
            Target(
                index=group.index,
                turn=group.turn,
                history=group.history,
                tools=group.tools,
                response=group.responses[best],
                reward=float(group.rewards[best]),
                advantage=adv,
                weight=awr_weight(adv, beta, max_weight),
                group_size=len(group.responses),
                group_mean=float(np.mean(group.rewards)),
            )
        )
    return targets


def tokenize_target(
    tokenizer: Any,
    history: list[Message],
    response: str,
    tools: Tools = None,
    eos_ids: set[int] | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids of ``history`` + ``response`` in the chat template, and their labels.

    Labels are ``IGNORE_INDEX`` on the history (the rendered prompt, including the
    assistant header) and the token ids of the response itself, up to and including its
    end-of-turn token; anything the template adds after that token is dropped.

    Raises:
        ValueError: The template renders the history differently when a reply follows, so
            the prompt is not a prefix of the full conversation.
    """
    prompt = render_prompt(tokenizer, history, tools)
    # Sanitized like the prompt: a response that writes <|im_end|> trains on plain text, not on
    # a forged end-of-turn token.
    ids = list(
        tokenizer.apply_chat_template(
            [*history, {"role": "assistant", "content": response}],
            tools=tools,
            tokenize=True,
            return_dict=False,
            sanitize_control_tokens=True,
        )
    )
    if ids[: len(prompt)] != prompt:
        raise ValueError(
            "the chat template renders the history differently once a reply follows, so the "
            "response tokens cannot be separated from the prompt"
        )
    reply = ids[len(prompt) :]
    if eos_ids:
        end = next((i for i, token in enumerate(reply) if token in eos_ids), None)
        if end is not None:
            reply = reply[: end + 1]
    return prompt + reply, [IGNORE_INDEX] * len(prompt) + reply


def weighted_examples(
    targets: Sequence[Target], tokenizer: Any, eos_ids: set[int], max_length: int
) -> tuple[list[tuple[list[int], list[int], float]], int]:
    """The ``(input_ids, labels, weight)`` examples of ``targets`` for :func:`update`.

    Returns:
        The examples, and how many targets were left out for being longer than
        ``max_length`` tokens.
    """
    examples, too_long = [], 0
    for target in targets:
        ids, labels = tokenize_target(
            tokenizer, target.history, target.response, target.tools, eos_ids
        )
        if len(ids) > max_length:
            too_long += 1
            continue
        examples.append((ids, labels, target.weight))
    return examples, too_long


# -- 4. update -----------------------------------------------------------------------------


def weighted_nll(
    model: Any, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean NLL of each row's labelled tokens (shape ``[batch]``).

    Rows are left-padded, so that each row's labelled tokens (its response) end the row. The
    model then computes logits only from the earliest position that predicts a labelled
    token on (``logits_to_keep``): with a 150k-token vocabulary, logits over the whole
    history would dominate memory and the output layer's compute.
    """
    labelled = labels != IGNORE_INDEX
    first = max(int(labelled.int().argmax(1).min()), 1)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    keep = input_ids.shape[1] - first + 1
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=keep,
    )
    logits = output.logits[:, -keep:-1]  # position p predicts token p + 1
    targets = labels[:, first:]
    per_token = F.cross_entropy(
        logits.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    mask = (targets != IGNORE_INDEX).float()
    return (per_token * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def left_pad(rows: Sequence[list[int]], value: int) -> torch.Tensor:
    """``rows`` as one tensor, padded with ``value`` on the left."""
    width = max(len(r) for r in rows)
    return torch.tensor([[value] * (width - len(r)) + r for r in rows], dtype=torch.long)


def update(
    model: Any,
    optimizer: torch.optim.Optimizer,
    examples: Sequence[tuple[list[int], list[int], float]],
    *,
    minibatch_size: int,
    micro_batch_size: int,
    epochs: int,
    max_grad_norm: float,
    pad_token_id: int,
    bf16: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Minimise ``mean_i weight_i * NLL_i`` over ``examples`` = ``(input_ids, labels, weight)``.

    Returns:
        Mean weighted loss, mean unweighted NLL, mean gradient norm (before clipping) and the
        number of optimizer steps.
    """
    model.train()
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    order = list(range(len(examples)))
    losses, nlls, norms = [], [], []
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), minibatch_size):
            batch = order[start : start + minibatch_size]
            # Similar lengths per forward pass: less padding.
            batch.sort(key=lambda i: len(examples[i][0]))
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for micro in range(0, len(batch), micro_batch_size):
                rows = [examples[i] for i in batch[micro : micro + micro_batch_size]]
                input_ids = left_pad([r[0] for r in rows], pad_token_id).to(device)
                labels = left_pad([r[1] for r in rows], IGNORE_INDEX).to(device)
                attention = left_pad([[1] * len(r[0]) for r in rows], 0).to(device)
                weights = torch.tensor([r[2] for r in rows], device=device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    nll = weighted_nll(model, input_ids, labels, attention)
                # Divide by the whole minibatch, so accumulated micro-batches give its mean.
                loss = (weights * nll).sum() / len(batch)
                loss.backward()
                total += loss.item()
                nlls.extend(nll.detach().tolist())
            norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            losses.append(total)
            norms.append(float(norm))
    model.eval()
    return {
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "nll": float(np.mean(nlls)) if nlls else float("nan"),
        "grad_norm": float(np.mean(norms)) if norms else float("nan"),
        "optimizer_steps": float(len(losses)),
    }


# -- model, checkpoints, logging -----------------------------------------------------------


def load_policy(args: Args) -> tuple[Any, Any]:
    """The trainable policy and its tokenizer, from ``--model`` or the ``--resume`` checkpoint."""
    checkpoint = Path(args.resume) if args.resume else None
    if checkpoint is not None and not args.use_peft:
        return load_model_and_tokenizer(str(checkpoint), dtype=args.dtype)
    model, tokenizer = load_model_and_tokenizer(args.model, dtype=args.dtype)
    if not args.use_peft:
        return model, tokenizer
    from peft import LoraConfig, PeftModel, get_peft_model

    if checkpoint is not None:
        return PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True), tokenizer
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config), tokenizer


def save_checkpoint(
    path: Path, policy: Any, tokenizer: Any, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """Write model (or adapter), tokenizer, optimizer and ``state``; then replace ``path``.

    The new checkpoint is written in full beside ``path`` (``.tmp``; its trainer state last,
    by a rename) before the old one is moved aside (``.old``) and the new one into place; a
    kill between the two renames leaves no ``path``, which :func:`finish_interrupted_save`
    restores.
    """
    tmp, old = _beside(path, ".tmp"), _beside(path, ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # Whole or absent, even if the kill comes while writing: its presence marks ``tmp`` done.
    part = tmp / (TRAINER_STATE + ".part")
    torch.save({**state, "optimizer": optimizer.state_dict()}, part)
    part.rename(tmp / TRAINER_STATE)
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def finish_interrupted_save(path: Path) -> None:
    """Complete a :func:`save_checkpoint` that a kill cut between its two renames.

    Where ``path`` is missing but the new checkpoint beside it (``.tmp``) was written in full,
    it is moved into place (the old one, ``.old``, is deleted); where only the old one is
    left, it is moved back. Anything else is left as it is.
    """
    tmp, old = _beside(path, ".tmp"), _beside(path, ".old")
    if path.exists():
        return
    for candidate in (tmp, old):
        if (candidate / TRAINER_STATE).is_file():
            logger.warning("%s was cut while being replaced: restored from %s", path, candidate)
            candidate.rename(path)
            shutil.rmtree(old, ignore_errors=True)
            return


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The iteration, run name, args and optimizer state saved with a checkpoint."""
    path = checkpoint / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a checkpoint of agents.rise_awr ({path})")
    return torch.load(path, weights_only=True)


class Logger:
    """Scalars to ``metrics.jsonl`` and to tensorboard / wandb (``--report-to``)."""

    def __init__(self, run_dir: Path, run_name: str, args: Args) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if args.report_to == "wandb":
            import wandb

            wandb.init(
                project=args.wandb_project,
                name=run_name,
                config=asdict(args),
                sync_tensorboard=True,
                resume="allow",
            )
        if args.report_to != "none":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir))
            self.writer.add_text("hyperparameters", json.dumps(asdict(args), indent=2))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"iteration": step, **scalars}) + "\n")
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def evaluated(self) -> set[int]:
        """Iterations whose evaluation is already logged (a resumed run does not repeat it)."""
        if not self.path.exists():
            return set()
        rows = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()]
        return {row["iteration"] for row in rows if "eval/m1@t1" in row}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def run_evaluation(args: Args, backend: Backend, run_dir: Path, iteration: int) -> dict[str, float]:
    """Greedy held-out evaluation; episodes go to ``eval_iter<N>_{rise,rrr}.jsonl``."""
    options = args.env_options(args.eval_split)
    # Distinct problems: a generator's small problem space repeats items.
    indices = distinct_indices(lambda: gym.make(args.env_id, **options), args.eval_n)
    _, rise = evaluate(
        lambda: gym.make(args.env_id, **options),
        backend,
        indices,
        sampling=args.eval_sampling(),
        seed=args.seed,
        episodes_path=run_dir / f"eval_iter{iteration}_rise.jsonl",
        progress=True,
    )
    t = args.max_attempts
    scores = {
        "eval/m1@t1": rise["rise"]["m1@t1"],
        f"eval/p1@t{t}": rise["rise"][f"p1@t{t}"],
        "eval/items": float(len(indices)),
    }
    for turn, accuracy in enumerate(rise["rise"]["accuracy_by_turn"], 1):
        scores[f"eval/accuracy_turn{turn}"] = accuracy
    if args.eval_reflect:
        reflect = args.env_options(args.eval_split, reflect=True)
        _, rrr = evaluate(
            lambda: gym.make(args.env_id, **reflect),
            backend,
            indices,
            sampling=args.eval_sampling(),
            seed=args.seed,
            episodes_path=run_dir / f"eval_iter{iteration}_rrr.jsonl",
            progress=True,
        )
        scores["eval/first_try"] = rrr["rrr"]["first_try"]
        scores["eval/second_try"] = rrr["rrr"]["second_try"]
    return scores


def train_indices(size: int, n: int, seed: int, iteration: int) -> list[int]:
    """Items of ``iteration`` (1-based): consecutive slices of a seeded permutation, cycled."""
    order = np.random.default_rng(seed).permutation(size)
    start = (iteration - 1) * n
    return [int(order[(start + k) % size]) for k in range(min(n, size))]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        policy: The trained model.
        tokenizer: Its tokenizer.
        run_dir: The run folder.
        iteration: The last completed iteration.
        evaluations: Evaluation scores keyed by the iteration of the evaluated policy.
        train_seconds: Wall time of collection and updates (evaluations excluded), summed
            over all iterations of the run, resumed ones included.
        engine: What generated this process's rollouts: ``--engine``, or ``torch`` where the
            engine could not start (after its warning).
    """

    policy: Any
    tokenizer: Any
    run_dir: Path
    iteration: int
    evaluations: dict[int, dict[str, float]]
    train_seconds: float = 0.0
    engine: str = "torch"


def train(args: Args) -> TrainResult:
    """Run RISE-AWR for ``args.iterations`` iterations (see the module docstring)."""
    # -- run folder, seeding, resumption ---------------------------------------------------
    start_iteration = 1
    trainer_state: dict[str, Any] | None = None
    if args.resume:
        checkpoint = Path(args.resume)
        finish_interrupted_save(checkpoint)
        trainer_state = load_trainer_state(checkpoint)
        run_name = trainer_state["run_name"]
        run_dir = checkpoint.parent
        start_iteration = int(trainer_state["iteration"]) + 1
        changed = {
            k: (v, getattr(args, k))
            for k, v in trainer_state["args"].items()
            if k not in ("resume", "iterations") and getattr(args, k, v) != v
        }
        if changed:
            logger.warning("resuming with changed options (saved, now): %s", changed)
    else:
        env_name = args.env_id.replace("/", "_")
        run_name = f"{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
        run_dir = Path(args.output_dir) / run_name
        run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2))
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed + start_iteration)

    policy, tokenizer = load_policy(args)
    gen_dtype = resolve_dtype(args.generation_dtype, next(policy.parameters()).device)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    if trainer_state is not None:
        optimizer.load_state_dict(trainer_state["optimizer"])
    eos_ids = eos_token_ids(policy, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)
    make_env = lambda: gym.make(args.env_id, **args.env_options(args.train_split))  # noqa: E731
    train_size = len(make_env().unwrapped.task)
    log = Logger(run_dir, run_name, args)
    evaluations: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    iteration = start_iteration - 1
    spent = float(trainer_state.get("train_seconds", 0.0)) if trainer_state else 0.0
    snapshots = SnapshotSchedule(args.snapshot_minutes, run_dir, spent)

    engine: Any = None  # one --engine backend for the run: it re-syncs after each update

    def generation_backend(seed: int | None = None) -> Any:
        nonlocal engine
        if args.engine == "torch":
            copy = generation_model(policy, gen_dtype)
            return TransformersBackend(copy, tokenizer, batch_size=args.batch_size, seed=seed)
        if engine is None:
            engine = make_backend(args.engine, policy, tokenizer, batch_size=args.batch_size)
        engine.seed = seed
        return engine

    if args.eval_n and start_iteration == 1 and 0 not in log.evaluated():
        backend = generation_backend()
        evaluations[0] = run_evaluation(args, backend, run_dir, 0)
        log.log(0, evaluations[0])
        logger.info("iteration 0 (base model): %s", evaluations[0])
        del backend  # free its copy of the model before the next one is made

    for iteration in range(start_iteration, args.iterations + 1):
        if args.max_minutes is not None and spent >= 60 * args.max_minutes:
            # A resumed run whose budget was spent (killed after its last checkpoint).
            logger.info("time budget (%.1f min) spent before: no more iterations", args.max_minutes)
            iteration -= 1
            break
        # -- 1. collect --------------------------------------------------------------------
        tick = time.perf_counter()
        backend = generation_backend(seed=args.seed * 1_000_003 + iteration)
        indices = train_indices(train_size, args.items_per_iteration, args.seed, iteration)
        backend = CountingBackend(backend)
        episodes, groups = collect(
            make_env,
            backend,
            indices,
            samples_per_item=args.samples_per_item,
            best_of=args.best_of,
            sampling=args.sampling(),
            seed=args.seed * 1_000_003 + iteration * 10_007,
            best_of_sampling=args.best_of_sampling(),
        )
        generated_tokens = backend.completion_tokens
        del backend
        collect_seconds = time.perf_counter() - tick

        # -- 2. advantages and 3. weights --------------------------------------------------
        targets = make_targets(
            groups,
            weighting=args.weighting,
            beta=args.beta,
            max_weight=args.max_weight,
            train_on_failures=args.train_on_failures,
        )
        append_lines(
            run_dir / "targets.jsonl", [{"iteration": iteration, **asdict(t)} for t in targets]
        )
        examples, too_long = weighted_examples(targets, tokenizer, eos_ids, args.max_length)

        # -- 4. update ---------------------------------------------------------------------
        if examples and hasattr(engine, "release"):
            # The engine's pipeline (~9 GB at 1.5B) would sit beside the update, which changes
            # the weights it serves anyway: the next collection loads the new ones. Both
            # together ran out of 24 GB at 1.5B (4 items x 4 samples, best of 4).
            engine.release()
        tick = time.perf_counter()
        stats = update(
            policy,
            optimizer,
            examples,
            minibatch_size=args.minibatch_size,
            micro_batch_size=args.micro_batch_size,
            epochs=args.update_epochs,
            max_grad_norm=args.max_grad_norm,
            pad_token_id=pad_id,
            bf16=args.bf16,
            seed=args.seed * 1_000_003 + iteration,
        )
        update_seconds = time.perf_counter() - tick

        # -- log ---------------------------------------------------------------------------
        graded = [e.graded for e in episodes]
        later = [g for g in groups if g.turn > 1]
        turns = [t for e in episodes for t in e.graded]
        weights = [t.weight for t in targets] or [float("nan")]
        scalars = {
            "rollout/accuracy_t1": float(np.mean([g[0].correct for g in graded])),
            f"rollout/p1@t{args.max_attempts}": float(
                np.mean([any(t.correct for t in g) for g in graded])
            ),
            "rollout/episodes": float(len(episodes)),
            "rollout/generated_tokens": float(generated_tokens),
            "rollout/groups_after_failure": float(len(later)),
            "rollout/best_of_solved": float(np.mean([max(g.rewards) > 0 for g in later]))
            if later
            else float("nan"),
            "rollout/response_tokens": float(np.mean([t.completion_tokens for t in turns])),
            "rollout/truncated": float(np.mean([not t.stopped for t in turns])),
            "rollout/targets": float(len(examples)),
            "rollout/correct_targets": float(sum(t.reward > 0 for t in targets)),
            "rollout/skipped_too_long": float(too_long),
            "losses/weighted_nll": stats["loss"],
            "losses/nll": stats["nll"],
            "losses/grad_norm": stats["grad_norm"],
            "losses/weight_mean": float(np.mean(weights)),
            "losses/weight_max": float(np.max(weights)),
            "losses/advantage_mean": float(np.mean([t.advantage for t in targets]))
            if targets
            else float("nan"),
            "losses/clipped": float(np.mean([t.weight >= args.max_weight for t in targets]))
            if targets
            else float("nan"),
            "charts/learning_rate": optimizer.param_groups[0]["lr"],
            "charts/optimizer_steps": stats["optimizer_steps"],
            "charts/collect_seconds": collect_seconds,
            "charts/update_seconds": update_seconds,
            # The budget's clock (collection and updates), carried over a resume.
            "charts/train_seconds": spent + collect_seconds + update_seconds,
            # This process's wall time: it restarts with a resumed run.
            "charts/elapsed_seconds": time.perf_counter() - started,
        }
        log.log(iteration, scalars)
        logger.info(
            "iteration %d: t1 accuracy %.3f, %d targets (%d correct), loss %.4f, %.0f s",
            iteration,
            scalars["rollout/accuracy_t1"],
            len(examples),
            scalars["rollout/correct_targets"],
            stats["loss"],
            collect_seconds + update_seconds,
        )

        # -- checkpoint --------------------------------------------------------------------
        spent += collect_seconds + update_seconds
        out_of_time = args.max_minutes is not None and spent >= 60 * args.max_minutes
        final = out_of_time or iteration == args.iterations
        # The snapshot before the checkpoint: a run killed between the two redoes this
        # iteration from the previous checkpoint and retakes the snapshot, which it would
        # count as taken if the checkpoint came first.
        snapshots.after(spent, final, policy, tokenizer, iteration=iteration)
        if iteration % args.save_every == 0 or iteration == args.iterations or out_of_time:
            state = {
                "iteration": iteration,
                "run_name": run_name,
                "args": asdict(args),
                "train_seconds": spent,
            }
            save_checkpoint(run_dir / CHECKPOINT, policy, tokenizer, optimizer, state)
        if out_of_time:
            logger.info(
                "time budget (%.1f min) spent after iteration %d", args.max_minutes, iteration
            )
            break

    # Evaluate the final policy once, also when a resumed run only lacks this evaluation.
    if args.eval_n and iteration > 0 and iteration not in log.evaluated():
        backend = generation_backend()
        evaluations[iteration] = run_evaluation(args, backend, run_dir, iteration)
        log.log(iteration, evaluations[iteration])
        logger.info("iteration %d (trained): %s", iteration, evaluations[iteration])
    log.close()
    # make_backend falls back to the torch backend (with a warning) where the engine failed.
    used = "torch" if engine is None or isinstance(engine, TransformersBackend) else args.engine
    return TrainResult(policy, tokenizer, run_dir, iteration, evaluations, spent, used)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``<run_dir>/metrics.jsonl``: one per iteration and one per evaluation."""
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def describe_iteration(row: dict[str, Any]) -> str:
    """One line on a training iteration's row of ``metrics.jsonl``: its signal and its update.

    >>> row = {"iteration": 1, "rollout/episodes": 8.0, "rollout/accuracy_t1": 0.125,
    ...        "rollout/targets": 2.0, "rollout/correct_targets": 2.0,
    ...        "charts/optimizer_steps": 1.0, "losses/weighted_nll": 2.5,
    ...        "charts/collect_seconds": 200.0, "charts/update_seconds": 40.0}
    >>> describe_iteration(row)
    'iteration 1: 8 episodes, 1st-turn accuracy 0.125; 2 targets (2 correct) trained in 1 optimizer step(s), weighted NLL 2.5000; 240 s'
    """  # noqa: E501
    head = (
        f"iteration {row['iteration']}: {row['rollout/episodes']:.0f} episodes, "
        f"1st-turn accuracy {row['rollout/accuracy_t1']:.3f}; "
    )
    seconds = row["charts/collect_seconds"] + row["charts/update_seconds"]
    if not row["rollout/targets"]:
        return head + f"no target (no group had a correct response): no update; {seconds:.0f} s"
    return head + (
        f"{row['rollout/targets']:.0f} targets ({row['rollout/correct_targets']:.0f} correct) "
        f"trained in {row['charts/optimizer_steps']:.0f} optimizer step(s), "
        f"weighted NLL {row['losses/weighted_nll']:.4f}; {seconds:.0f} s"
    )


def main(argv: Sequence[str] | None = None) -> TrainResult:
    """Command-line entry point."""
    from agents.cli import check_env, check_model, fail, parse_trl, preflight

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (args,) = parse_trl((Args,), argv)
    # Options, envs and --model are checked before the model loads or the run folder appears.
    splits = [args.train_split] + ([args.eval_split] if args.eval_n else [])
    for split in splits:
        options = args.env_options(split)
        preflight(lambda: check_env(args.env_id, options, env_flag="--env-id"))  # noqa: B023
    if args.resume:
        finish_interrupted_save(Path(args.resume))
    if args.resume and not (Path(args.resume) / TRAINER_STATE).is_file():
        fail(f"--resume: {args.resume} is not a checkpoint of agents.rise_awr (no {TRAINER_STATE})")
    if not args.resume:
        preflight(lambda: check_model(args.model))
    result = train(args)
    print(f"run folder: {result.run_dir} (iteration {result.iteration})")
    for row in read_metrics(result.run_dir):
        if "rollout/targets" in row:
            print(describe_iteration(row))
    for iteration, scores in sorted(result.evaluations.items()):
        shown = ", ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in scores.items())
        print(f"evaluation after iteration {iteration}: {shown}")
    return result


__all__ = [
    "CHECKPOINT",
    "DEMO_ENV_ID",
    "DEMO_MODEL",
    "FULL_LEARNING_RATE",
    "IGNORE_INDEX",
    "LORA_LEARNING_RATE",
    "REPORT_TO",
    "RISE_MODE_KEYS",
    "TRAINER_STATE",
    "WEIGHTINGS",
    "advantage",
    "Args",
    "awr_weight",
    "collect",
    "describe_iteration",
    "finish_interrupted_save",
    "Group",
    "left_pad",
    "load_policy",
    "load_trainer_state",
    "Logger",
    "main",
    "make_targets",
    "read_metrics",
    "run_evaluation",
    "save_checkpoint",
    "Target",
    "tokenize_target",
    "train",
    "train_indices",
    "TrainResult",
    "update",
    "weighted_examples",
    "weighted_nll",
]


if __name__ == "__main__":
    main()
