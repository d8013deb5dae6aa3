"""Learning sanity check: do RRR-GRPO and RISE-AWR learn what they are rewarded for?

    python -m benchmarks.sanity_check                  # both methods (about 15 min on 2 cores)
    python -m benchmarks.sanity_check --method rrr     # or --method rise
    python -m benchmarks.sanity_check --render-only    # rewrite the report from the JSONL

A controlled setting where the answer is known: the reward is a function of one word.

- **RRR-GRPO**: a scripted retry policy (:class:`agents.scripted.MarkerRetry`) answers a
  Countdown problem right exactly when the reflection before it contains the marker word, and
  the env's verifier grades that answer. Training goes through the real trainer:
  ``agents.grpo_reflect.build_trainer`` (TRL's ``GRPOTrainer``, our ``rollout_func``,
  reflection-only credit, :func:`~agents.grpo_reflect.retry_success`) with the scripted retry
  passed as its ``retry_generator``; the reflections are the model's (SmolLM2-135M, LoRA).
- **RISE-AWR**: the env's task is Countdown with a verifier that accepts exactly the responses
  that contain the marker (:class:`agents.scripted.MarkerTask`); each iteration is RISE-AWR's
  own ``collect`` -> ``make_targets`` -> ``weighted_examples`` -> ``update``.

The measure is the marker rate (RRR: the retry success graded by the env) on held-out items
(the test split, never trained on), sampled at temperature 1 with the same seed at every point
of the curve. The unit of the significance test is the item: an exact two-sided sign test on
the per-item change of the rate from before training to after. A trainer that learns must
raise the rate within minutes; a flat curve here means the credit path is broken, and a flat
curve on a real task then is the task's fault, not the trainer's.

Results go to ``benchmarks/results/sanity_check/``: ``results.jsonl`` (a row per measure and
per training step), ``episodes.jsonl`` (every measured and trained reflection / response),
``report.md`` and ``curve.png``. A killed run resumes: measures already written are kept and
training continues from the method's last checkpoint (in ``runs/sanity_check/``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import rrr_env
from agents.reflection_rollout import EPISODE_OPTIONS
from benchmarks.common import RESULTS, command_line, machine_info, machine_line

gym.register_envs(rrr_env)

OUT = RESULTS / "sanity_check"
RUNS = Path("runs") / "sanity_check"
METHODS = ("rrr", "rise")
MODEL = "smollm2-135m"
ENV_ID = "rrr/Countdown-v0"
ENV_KWARGS = {"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}
#: The marker words. RRR: SmolLM2-135M writes "wrong" in about 1 of 10 sampled reflections of
#: 24 tokens; it is in the reflection request ("... got the wrong answer. Reflect on what went
#: wrong ..."), not in the task that the retry request poses again. RISE: "addition" is in
#: about 1 of 8 sampled first answers of 24 tokens.
MARKERS = {"rrr": "wrong", "rise": "addition"}
#: The scripted wrong first attempt of every failure (the prompts are the env's own).
WRONG_ATTEMPT = "I do not know."
MEASURED_CODE = (
    "benchmarks/sanity_check.py",
    "agents/scripted.py",
    "agents/grpo_reflect.py",
    "agents/grpo_reflect_config.py",
    "agents/grpo_rollout.py",
    "agents/grpo_callbacks.py",
    "agents/reflection_rollout.py",
    "agents/rise_awr.py",
    "agents/rise_awr_config.py",
)
PACKAGES = ("torch", "transformers", "trl", "peft")


# -- data ------------------------------------------------------------------------------------


def failure_rows(
    split: str, count: int, env_kwargs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """``count`` failures on distinct problems of ``split``: the env's reflection prompts.

    Each row is ``{"prompt", "index"}`` as ``agents.grpo_reflect`` reads a dataset of
    failures; the failed attempt is :data:`WRONG_ATTEMPT`.
    """
    from agents.items import distinct_indices

    options = {**(env_kwargs or ENV_KWARGS), **EPISODE_OPTIONS, "split": split}
    indices = distinct_indices(lambda: gym.make(ENV_ID, **options), count)
    env = gym.make(ENV_ID, **options)
    rows = []
    for index in indices:
        env.reset(options={"index": index})
        prompt, _, _, _, info = env.step(WRONG_ATTEMPT)
        if info["phase"] != "reflection":
            raise RuntimeError(f"item {index}: the scripted wrong attempt was judged right")
        rows.append({"prompt": prompt, "index": int(index)})
    return rows


def check_marker_free(rows: Sequence[dict[str, Any]], marker: str) -> None:
    """Raise if the marker is in a failure's task or attempt (the retry request repeats the task).

    :class:`~agents.scripted.MarkerRetry` looks for the marker after the reflection request;
    only the reflection may put it there.
    """
    from agents.scripted import has_marker

    for row in rows:
        if any(has_marker(m["content"], marker) for m in row["prompt"][:-1]):
            raise ValueError(f"item {row['index']}: the marker {marker!r} is in the task itself")


def marker_env(split: str, marker: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """A one-turn Countdown env whose verifier accepts exactly the responses with ``marker``."""
    from agents.scripted import MarkerTask
    from rrr_env.tasks import make_task

    task = MarkerTask(make_task("countdown", split=split, **(env_kwargs or ENV_KWARGS)), marker)
    return rrr_env.ReflectRetryEnv(task, max_attempts=1, reflect=False, feedback="binary")


def sign_test(up: int, down: int) -> float:
    """Exact two-sided sign test: ``up`` items rose, ``down`` fell (ties left out)."""
    n = up + down
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(up, down) + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-item change of the rate between two measures of the same items, and its sign test."""
    rate = {row["index"]: row["hits"] / row["samples"] for row in before}
    diffs = [row["hits"] / row["samples"] - rate[row["index"]] for row in after]
    up, down = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {"up": up, "down": down, "tied": len(diffs) - up - down, "p": sign_test(up, down)}


# -- measuring -------------------------------------------------------------------------------


@contextlib.contextmanager
def seeded(seed: int):
    """Torch's global RNG seeded with ``seed`` inside, restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def sampling_copy(model: Any, bf16: bool) -> Any:
    """The policy for sampling: a merged copy (LoRA folded in) in the measuring dtype."""
    from agents.models import generation_model

    return generation_model(model, torch.bfloat16 if bf16 else torch.float32)


def measure_rrr(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    marker: str,
    *,
    samples: int,
    reflection_tokens: int,
    seed: int,
    bf16: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sample ``samples`` reflections per failure; the scripted retry and the env grade them.

    Returns:
        Per item ``{"index", "hits", "samples"}`` (hits: retries the env accepted), and the
        episodes (reflection, retry, reward, whether the reflection had the marker).
    """
    from agents.backends import eos_token_ids
    from agents.reflection_rollout import EpisodeReplayer, HFGenerator, reflect_and_retry
    from agents.scripted import MarkerRetry, has_marker

    check_marker_free(rows, marker)
    policy = sampling_copy(model, bf16)
    eos = eos_token_ids(policy, tokenizer)
    options = {**ENV_KWARGS, **EPISODE_OPTIONS, "split": "test"}
    replayer = EpisodeReplayer(lambda: gym.make(ENV_ID, **options), rows)
    generate = HFGenerator(policy, eos_ids=sorted(eos), pad_id=tokenizer.pad_token_id)
    retry = MarkerRetry(tokenizer, marker, rows[0]["prompt"][-1]["content"], min(eos))
    prompts = [row["prompt"] for row in rows for _ in range(samples)]
    with seeded(seed):
        batch = reflect_and_retry(
            prompts,
            replayer,
            generate,
            tokenizer,
            eos,
            reflection_max_tokens=reflection_tokens,
            retry_max_tokens=32,
            group_size=samples,
            retry_generate=retry,
        )
    items, episodes = [], []
    for k, row in enumerate(rows):
        span = range(k * samples, (k + 1) * samples)
        items.append(
            {
                "index": row["index"],
                "hits": int(sum(batch.rewards[j] for j in span)),
                "samples": samples,
            }
        )
        for j in span:
            episodes.append(
                {
                    "index": row["index"],
                    "reflection": batch.reflections[j],
                    "retry": batch.retries[j],
                    "reward": batch.rewards[j],
                    "marker": has_marker(batch.reflections[j], marker),
                }
            )
    return items, episodes


def measure_rise(
    model: Any,
    tokenizer: Any,
    indices: Sequence[int],
    marker: str,
    *,
    samples: int,
    response_tokens: int,
    seed: int,
    bf16: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sample ``samples`` first responses per held-out item; the marker task grades them."""
    from agents.backends import TransformersBackend
    from agents.rollout import PhaseSampling, SamplingParams, rollout

    backend = TransformersBackend(sampling_copy(model, bf16), tokenizer, batch_size=64, seed=seed)
    episodes = rollout(
        lambda: marker_env("test", marker),
        backend,
        indices,
        group_size=samples,
        sampling=PhaseSampling.same(SamplingParams(response_tokens, temperature=1.0)),
        seed=seed,
    )
    items, rows = [], []
    for k, index in enumerate(indices):
        mine = episodes[k * samples : (k + 1) * samples]
        items.append(
            {
                "index": int(index),
                "hits": int(sum(e.turns[0].reward for e in mine)),
                "samples": samples,
            }
        )
        rows += [
            {"index": int(index), "response": e.turns[0].text, "reward": e.turns[0].reward}
            for e in mine
        ]
    return items, rows


# -- training --------------------------------------------------------------------------------


def rrr_config(output_dir: Path, **overrides: Any) -> Any:
    """The ``GRPOReflectConfig`` of the check: one generation batch of ``groups`` GRPO groups.

    The failures are read from ``<output_dir>/failures.jsonl`` (:func:`write_failures`).
    ``overrides`` are ``GRPOReflectConfig`` fields.
    """
    from agents.grpo_reflect import GRPOReflectConfig

    options = {
        "output_dir": str(output_dir),
        "failures_path": str(output_dir / "failures.jsonl"),
        "env_kwargs": json.dumps(ENV_KWARGS),
        "num_generations": 4,
        "per_device_train_batch_size": 16,  # 4 groups of 4 reflections per optimizer step
        "gradient_accumulation_steps": 1,
        "max_completion_length": 24,
        "retry_max_tokens": 32,
        "beta": 0.0,  # no reference pass: the check is about the credit path, not the KL term
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "max_steps": 20,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "eval_n": 0,
        "seed": 0,
        "disable_tqdm": True,
    }
    return GRPOReflectConfig(**{**options, **overrides})


def write_failures(config: Any, rows: Sequence[dict[str, Any]]) -> Any:
    """Write ``rows`` where ``config`` reads its failures; the dataset ``load_failures`` reads."""
    from agents.grpo_reflect import load_failures

    path = Path(config.failures_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return load_failures(path)


def rrr_trainer(
    config: Any,
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    marker: str,
    *,
    peft_config: Any = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """``agents.grpo_reflect.build_trainer`` with the scripted :class:`MarkerRetry` retry."""
    from agents.backends import eos_token_ids
    from agents.grpo_reflect import build_trainer
    from agents.scripted import MarkerRetry

    check_marker_free(rows, marker)
    dataset = write_failures(config, rows)
    retry = MarkerRetry(
        tokenizer,
        marker,
        rows[0]["prompt"][-1]["content"],
        min(eos_token_ids(model, tokenizer)),
    )
    return build_trainer(
        config,
        model,
        tokenizer,
        dataset,
        peft_config=peft_config,
        callbacks=list(callbacks),
        retry_generator=retry,
    )


def rise_iteration(
    policy: Any,
    optimizer: torch.optim.Optimizer,
    tokenizer: Any,
    indices: Sequence[int],
    marker: str,
    *,
    samples: int = 4,
    response_tokens: int = 24,
    weighting: str = "baseline",
    beta: float = 0.4,
    max_weight: float = 20.0,
    minibatch_size: int = 4,
    micro_batch_size: int = 4,
    seed: int = 0,
    bf16: bool = False,
) -> tuple[dict[str, float], list[Any], list[Any]]:
    """One RISE-AWR iteration on the marker task: collect, targets, weights, update.

    The same functions in the same order as ``agents.rise_awr.train``.

    Returns:
        The update's statistics (with the rollout's marker rate), the targets and the episodes.
    """
    from agents.backends import TransformersBackend, eos_token_ids
    from agents.rise_awr import collect, make_targets, update, weighted_examples
    from agents.rollout import PhaseSampling, SamplingParams

    eos = eos_token_ids(policy, tokenizer)
    backend = TransformersBackend(sampling_copy(policy, bf16), tokenizer, batch_size=64, seed=seed)
    episodes, groups = collect(
        lambda: marker_env("train", marker),
        backend,
        indices,
        samples_per_item=samples,
        best_of=1,
        sampling=PhaseSampling.same(SamplingParams(response_tokens, temperature=1.0)),
        seed=seed,
    )
    del backend
    targets = make_targets(groups, weighting=weighting, beta=beta, max_weight=max_weight)
    examples, _ = weighted_examples(targets, tokenizer, eos, max_length=4096)
    policy.train()
    stats = update(
        policy,
        optimizer,
        examples,
        minibatch_size=minibatch_size,
        micro_batch_size=micro_batch_size,
        epochs=1,
        max_grad_norm=1.0,
        pad_token_id=tokenizer.pad_token_id,
        bf16=bf16,
        seed=seed,
    )
    rewards = [t.reward for e in episodes for t in e.turns]
    stats["reward"] = sum(rewards) / len(rewards)
    return stats, targets, episodes


# -- the benchmark ---------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON rows of ``path`` (none if it does not exist)."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Recorder:
    """Appends rows to ``results.jsonl`` / ``episodes.jsonl`` as they are measured."""

    def __init__(self, out_dir: Path, method: str, common: dict[str, Any]) -> None:
        self.out_dir, self.method, self.common = out_dir, method, common
        rows = [r for r in read_rows(out_dir / "results.jsonl") if r["method"] == method]
        self.measured = {r["step"]: r for r in rows if r["kind"] == "measure"}
        self.trained = {r["step"] for r in rows if r["kind"] == "train"}
        self.started = time.perf_counter()

    def write(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        with (self.out_dir / name).open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({"method": self.method, **row}) + "\n")

    def measure(self, step: int, items: list[dict[str, Any]], episodes: list[dict[str, Any]]):
        hits, samples = sum(i["hits"] for i in items), sum(i["samples"] for i in items)
        row = {"kind": "measure", "step": step, "rate": hits / samples, "items": items}
        row.update(self.common, machine=machine_info(MEASURED_CODE, PACKAGES))
        self.write("episodes.jsonl", [{"step": step, **e} for e in episodes])
        self.write("results.jsonl", [row])
        self.measured[step] = row
        print(f"[{self.method}] step {step}: held-out rate {row['rate']:.3f}", flush=True)

    def train(self, step: int, fields: dict[str, Any], episodes: list[dict[str, Any]]):
        self.write("episodes.jsonl", [{"step": step, "training": True, **e} for e in episodes])
        self.write("results.jsonl", [{"kind": "train", "step": step, **fields}])
        self.trained.add(step)
        print(f"[{self.method}] step {step}: {json.dumps(fields)}", flush=True)


def run_rrr(args: argparse.Namespace, recorder: Recorder) -> None:
    """Train RRR-GRPO on the marker setting, measuring every ``--measure-every`` steps."""
    from transformers import TrainerCallback
    from trl import ModelConfig, get_peft_config

    from agents.grpo_callbacks import last_complete_checkpoint
    from agents.grpo_reflect import apply_cpu_recipe
    from agents.models import load_model_and_tokenizer

    run_dir, marker = args.runs / "rrr", args.rrr_marker
    config = rrr_config(
        run_dir,
        learning_rate=args.rrr_learning_rate,
        max_steps=args.steps,
        save_strategy="steps",
        save_steps=args.measure_every,
        seed=args.seed,
    )
    model, tokenizer = load_model_and_tokenizer(MODEL, dtype="float32")
    held_out = failure_rows("test", args.items)

    def measure(policy: Any, step: int) -> None:
        items, episodes = measure_rrr(
            policy,
            tokenizer,
            held_out,
            marker,
            samples=args.samples,
            reflection_tokens=config.max_completion_length,
            seed=args.seed + 1,
            bf16=config.bf16,
        )
        recorder.measure(step, items, episodes)

    if 0 not in recorder.measured:
        measure(model, 0)

    class Trace(TrainerCallback):
        def on_log(self, args_, state, control, logs=None, **kwargs):
            step = state.global_step
            if logs and "reward" in logs and step not in recorder.trained:
                batch = trainer.rollout_func.last_batch
                episodes = [
                    {"reflection": r, "retry": a, "reward": w}
                    for r, a, w in zip(batch.reflections, batch.retries, batch.rewards, strict=True)
                ]
                keep = ("reward", "frac_reward_zero_std", "grad_norm", "entropy", "step_time")
                fields = {k: logs[k] for k in keep if k in logs}
                recorder.train(step, {**fields, "seconds": time.perf_counter() - started}, episodes)

        def on_step_end(self, args_, state, control, model=None, **kwargs):
            step = state.global_step
            if (step % args.measure_every == 0 or step == state.max_steps) and (
                step not in recorder.measured
            ):
                was_training = model.training
                measure(model, step)
                model.train(was_training)

    peft_config = get_peft_config(apply_cpu_recipe(config, ModelConfig()))
    train_rows = failure_rows("train", args.train_items)
    trainer = rrr_trainer(
        config,
        model,
        tokenizer,
        train_rows,
        marker,
        peft_config=peft_config,
        callbacks=[Trace()],
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(run_dir))


def run_rise(args: argparse.Namespace, recorder: Recorder) -> None:
    """Train RISE-AWR on the marker task, measuring every ``--measure-every`` iterations."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from agents.items import distinct_indices
    from agents.models import load_model_and_tokenizer, resolve_dtype
    from agents.rise_awr import load_trainer_state, save_checkpoint

    checkpoint, marker = args.runs / "rise" / "checkpoint", args.rise_marker
    bf16 = resolve_dtype("auto", "cpu") == torch.bfloat16
    model, tokenizer = load_model_and_tokenizer(MODEL, dtype="float32")
    start = 1
    if checkpoint.is_dir():
        state = load_trainer_state(checkpoint)
        policy = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
        start = int(state["iteration"]) + 1
    else:
        state = None
        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM")
        policy = get_peft_model(model, lora)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.rise_learning_rate, weight_decay=0.0)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    held_out = distinct_indices(lambda: marker_env("test", marker), args.items)
    train_size = len(marker_env("train", marker).task)

    def measure(step: int) -> None:
        items, episodes = measure_rise(
            policy,
            tokenizer,
            held_out,
            marker,
            samples=args.samples,
            response_tokens=args.response_tokens,
            seed=args.seed + 1,
            bf16=bf16,
        )
        recorder.measure(step, items, episodes)

    if 0 not in recorder.measured:
        measure(0)
    started = time.perf_counter()
    for iteration in range(start, args.steps + 1):
        rng = random.Random(args.seed * 1_000_003 + iteration)
        indices = rng.sample(range(train_size), args.rise_items)
        stats, targets, episodes = rise_iteration(
            policy,
            optimizer,
            tokenizer,
            indices,
            marker,
            samples=4,
            response_tokens=args.response_tokens,
            seed=args.seed * 1_000_003 + iteration,
            bf16=bf16,
        )
        trained = [
            {"response": t.response, "reward": t.reward, "weight": t.weight} for t in targets
        ]
        fields = {k: stats[k] for k in ("reward", "loss", "nll", "grad_norm")}
        recorder.train(iteration, {**fields, "seconds": time.perf_counter() - started}, trained)
        save_checkpoint(checkpoint, policy, tokenizer, optimizer, {"iteration": iteration})
        due = iteration % args.measure_every == 0 or iteration == args.steps
        if due and iteration not in recorder.measured:
            measure(iteration)


# -- report ----------------------------------------------------------------------------------

LABELS = {
    "rrr": "RRR-GRPO (retry success: '{marker}' in the reflection)",
    "rise": "RISE-AWR ('{marker}' in the answer)",
}


def most_common_share(texts: Sequence[str]) -> tuple[str, float]:
    """The most common text of ``texts`` (first 40 characters) and its share."""
    from collections import Counter

    if not texts:
        return "", 0.0
    text, count = Counter(t[:40] for t in texts).most_common(1)[0]
    return text, count / len(texts)


def render(rows: Sequence[dict[str, Any]], episodes: Sequence[dict[str, Any]] = ()) -> str:
    """The markdown report of ``results.jsonl``'s rows (and what ``episodes.jsonl`` shows)."""
    lines = [
        "# Learning sanity check: the reward is one word, does the trainer learn it?",
        "",
        f"Model: {MODEL} with a LoRA adapter (r 16, alpha 32). Measured on held-out items "
        "(the test split; training uses the train split), sampled at temperature 1 with the "
        "same seed at every step. The item is the unit of the sign "
        "test (per-item rate after vs before, ties left out). See the module docstring of "
        "`benchmarks/sanity_check.py` for the setting.",
        "",
    ]
    for method in METHODS:
        measures = sorted(
            (r for r in rows if r["method"] == method and r["kind"] == "measure"),
            key=lambda r: r["step"],
        )
        if not measures:
            continue
        trained = {r["step"]: r for r in rows if r["method"] == method and r["kind"] == "train"}
        first, last = measures[0], measures[-1]
        unit = "step" if method == "rrr" else "iteration"
        lines += [
            f"## {LABELS[method].format(marker=first['marker'])}",
            "",
            f"Command: `{first['command']}`",
            "",
            f"Machine: {machine_line(first['machine'])}",
            "",
            f"{first['setting']} Marker word: `{first['marker']}`.",
            "",
            f"| {unit} | minutes (measures included) | held-out rate | items with a hit | "
            "training batch reward |",
            "|---|---|---|---|---|",
        ]
        for m in measures:
            t = trained.get(m["step"])
            minutes = f"{t['seconds'] / 60:.1f}" if t else "0"
            reward = f"{t['reward']:.2f}" if t else "-"
            with_hit = sum(i["hits"] > 0 for i in m["items"])
            lines.append(
                f"| {m['step']} | {minutes} | {m['rate']:.3f} | {with_hit}/{len(m['items'])} "
                f"| {reward} |"
            )
        if last["step"] > 0:
            test = compare(first["items"], last["items"])
            lines += [
                "",
                f"Before -> after ({unit} {last['step']}): held-out rate {first['rate']:.3f} -> "
                f"{last['rate']:.3f}; per item {test['up']} up, {test['down']} down, "
                f"{test['tied']} tied; sign test p = {test['p']:.2g}.",
            ]
            key = "reflection" if method == "rrr" else "response"
            texts = [
                e[key]
                for e in episodes
                if e["method"] == method and e["step"] == last["step"] and not e.get("training")
            ]
            text, share = most_common_share(texts)
            if texts:
                lines += [
                    "",
                    f"What was learned (`episodes.jsonl`, {unit} {last['step']}): "
                    f"{share:.0%} of the held-out {key}s begin with `{text!r}`. The trainer "
                    "learned the word it was rewarded for, by the shortest route, not the task.",
                ]
        lines.append("")
    lines += ["![curve](curve.png)", ""]
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """The held-out rate against training minutes, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        trained = {r["step"]: r for r in rows if r["method"] == method and r["kind"] == "train"}
        measures = [r for r in rows if r["method"] == method and r["kind"] == "measure"]
        points = sorted(
            (trained[r["step"]]["seconds"] / 60 if r["step"] in trained else 0.0, r["rate"])
            for r in measures
        )
        if points:
            label = LABELS[method].format(marker=measures[0]["marker"])
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xlabel("minutes since training started (held-out measures included)")
    ax.set_ylabel("held-out rate of the marker word")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Learning sanity check")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out_dir: Path) -> str:
    """Rewrite ``report.md`` and ``curve.png`` from ``results.jsonl``."""
    rows = read_rows(out_dir / "results.jsonl")
    text = render(rows, read_rows(out_dir / "episodes.jsonl"))
    (out_dir / "report.md").write_text(text, encoding="utf-8")
    if rows:
        plot(rows, out_dir / "curve.png")
    return text


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=[*METHODS, "both"], default="both")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps / iterations")
    parser.add_argument("--measure-every", type=int, default=4, help="steps between measures")
    parser.add_argument("--items", type=int, default=32, help="held-out items")
    parser.add_argument("--samples", type=int, default=4, help="samples per held-out item")
    parser.add_argument("--train-items", type=int, default=64, help="RRR training failures")
    parser.add_argument("--rise-items", type=int, default=32, help="RISE items per iteration")
    parser.add_argument("--response-tokens", type=int, default=24, help="RISE response limit")
    parser.add_argument("--rrr-learning-rate", type=float, default=5e-4)
    parser.add_argument("--rise-learning-rate", type=float, default=1e-3)
    parser.add_argument("--rrr-marker", default=MARKERS["rrr"], help="RRR's marker word")
    parser.add_argument("--rise-marker", default=MARKERS["rise"], help="RISE's marker word")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--runs", type=Path, default=RUNS, help="checkpoints (for resuming)")
    parser.add_argument("--render-only", action="store_true", help="only rewrite the report")
    args = parser.parse_args(argv)
    for name in ("steps", "measure_every", "items", "samples", "train_items", "rise_items"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("rrr_learning_rate", "rise_learning_rate"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    if args.train_items < 4:
        parser.error("--train-items must be >= 4 (one generation batch of 4 groups)")
    for method in METHODS:
        marker = getattr(args, f"{method}_marker")
        if not marker.replace("'", "").isalpha():
            parser.error(f"--{method}-marker must be one word, got {marker!r}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        command = command_line("benchmarks.sanity_check", argv)
        methods = METHODS if args.method == "both" else (args.method,)
        for method in methods:
            setting = (
                f"Setting: {args.steps} {'steps' if method == 'rrr' else 'iterations'}, "
                f"learning rate {getattr(args, f'{method}_learning_rate')}, "
                f"{args.items} held-out items x {args.samples} samples, seed {args.seed}."
            )
            marker = getattr(args, f"{method}_marker")
            common = {"command": command, "setting": setting, "marker": marker}
            recorder = Recorder(args.out_dir, method, common)
            done = args.steps in recorder.measured
            if done:
                print(f"[{method}] already measured after step {args.steps}; skipping")
                continue
            (run_rrr if method == "rrr" else run_rise)(args, recorder)
            write_report(args.out_dir)
    print(write_report(args.out_dir))


if __name__ == "__main__":
    main()
