"""Head-to-head: RRR-GRPO vs RISE-AWR at equal wall-clock budget, with controls.

    python -m benchmarks.rrr_vs_rise --env rrr/Countdown-v0 --model qwen2.5-coder-0.5b \\
        --budget-minutes 10 --seeds 3
    python -m benchmarks.rrr_vs_rise --quick        # a smoke run of every arm, under /tmp

From the same base model, for each seed, both methods train on the env's train split for the
same wall-clock budget (collection included, evaluation excluded), with the same LoRA choice
and learning rate and a constant learning rate. Every arm is then evaluated greedily on the
same first ``--eval-n`` items of the held-out split, through one model path (LoRA merged, the
weights cast to bf16 or fp32 as ``--eval-dtype`` says), so that differences are the method's.
Rows record ``eval_dtype``, and a run refuses to add rows to a ``results.jsonl`` evaluated in
another dtype (greedy text differs between them). Training runs under bf16 autocast where the
device multiplies bf16 in hardware (CUDA GPUs that support it, CPUs with AMX or AVX-512 BF16)
and in fp32 elsewhere, for both methods.

Arms (``arm`` in the JSONL):

- ``vanilla``: the base model; attempt, its own reflection, retry. Its 1st try is the
  vanilla model, its 2nd try the untrained self-reflection.
- ``retry``: the base model retries after "The answer is incorrect. Please try again."
  with no reflection (RISE's protocol).
- ``fixed_reflection``: the base model retries after a fixed, generic reflection.
- ``best_of_2``: two independent sampled first attempts (``--sample-temperature``); solved if
  either is right (an oracle picks, as the verifier does for a retry). Matched compute: two
  answers per item.
- ``rrr``: RRR-GRPO's policy (seed ``s``), evaluated like ``vanilla``.
- ``rise``: RISE-AWR's policy (seed ``s``), evaluated like ``retry``.

Results: ``<out-dir>/results.jsonl`` (one row per arm and seed, appended when the arm is done;
a rerun skips finished arms, and each evaluation resumes from its episode file), ``report.md``
and ``accuracy.png``. Training checkpoints go under ``--runs-dir``.

Learning curves: each trainer also saves its policy when its training time first passes
``--curve-points`` evenly spaced marks inside the budget (15 and 30 minutes of 45 by
default); after the end point, each snapshot is evaluated with the same protocol, and the
points go to the row's ``held_out_curve``. A seed's row is written once all its evaluations
are done; a seed killed before that is trained again from the start (its stale episode files
are removed first).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import rrr_env
from agents.cli import check_env, check_model, json_object, one_line_errors, preflight
from agents.controls import FixedReflectionBackend
from agents.evaluate import append_lines, evaluate
from agents.items import distinct_indices
from agents.models import resolve_dtype
from agents.rollout import Episode, PhaseSampling, SamplingParams
from benchmarks.common import (
    QUICK_RESULTS,
    RESULTS,
    command_line,
    cpu_name,
    machine_info,
    machine_line,
)

gym.register_envs(rrr_env)

CONTROL_ARMS = ("vanilla", "retry", "fixed_reflection", "best_of_2")
TRAINED_ARMS = ("rrr", "rise")
ARMS = CONTROL_ARMS + TRAINED_ARMS
EASY_COUNTDOWN = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'
MEASURED_CODE = (
    "agents",
    "rrr_env",
    "benchmarks/common.py",
    "benchmarks/rrr_vs_rise.py",
)
PACKAGES = ("torch", "transformers", "trl", "peft", "gymnasium")
#: The papers' figures, for the report (both measured on GPUs with larger models).
PAPER_FIGURES = (
    "RRR (Bensal et al., 2025, arXiv 2505.24726; abstract): up to 34.7% improvement at math "
    "equation writing (Countdown) and 18.1% at function calling, with fine-tuned models of "
    "1.5B to 7B parameters outperforming models of the same family 10 times larger. RISE "
    "(Qu et al., 2024, arXiv 2407.18219; abstract): Llama2, Llama3 and Mistral models improve "
    "with more turns on math reasoning, beating single-turn strategies at equal inference "
    "compute, with larger benefits for more capable models. Neither paper trains models as "
    "small as ours on a CPU."
)


# -- options -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="rrr/Countdown-v0")
    parser.add_argument("--env-kwargs", default=EASY_COUNTDOWN, help="task options as JSON")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument(
        "--curve-points",
        type=int,
        default=2,
        help="policies saved at evenly spaced training times inside the budget and "
        "evaluated afterwards, for the learning curve (0: end points only)",
    )
    parser.add_argument(
        "--retry-context",
        default="conversation",
        choices=("conversation", "reflection"),
        help="what a retry after a reflection sees (the env's retry_context): the whole "
        "conversation (the paper), or the task and the reflection without the failed attempt; "
        "for RRR's training and the arms evaluated with a reflection",
    )
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="test")
    parser.add_argument("--eval-n", type=int, default=200)
    parser.add_argument("--attempt-max-tokens", type=int, default=256)
    parser.add_argument("--reflection-max-tokens", type=int, default=128)
    parser.add_argument("--sample-temperature", type=float, default=1.0, help="best-of-2")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="both methods (LoRA)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument(
        "--eval-dtype",
        choices=("auto", "bfloat16", "float32"),
        help="every arm (default bfloat16; with --quick, auto: bfloat16 where the device "
        "multiplies it in hardware, float32 elsewhere)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per generate")
    parser.add_argument("--rrr-collect-n", type=int, default=32, help="queries for failures")
    parser.add_argument(
        "--rrr-samples-per-query", type=int, default=1, help="first attempts sampled per query"
    )
    parser.add_argument(
        "--rrr-min-successes",
        type=int,
        default=0,
        help="keep failures of queries solved at least this often (0: every failed query)",
    )
    parser.add_argument("--rrr-num-generations", type=int, default=8, help="GRPO group size")
    parser.add_argument(
        "--rrr-groups-per-step",
        type=int,
        default=1,
        help="GRPO groups per optimizer step, generated in one batch (more groups per "
        "generate call use the CPU better)",
    )
    parser.add_argument(
        "--rrr-beta",
        type=float,
        default=None,
        help="KL coefficient (default: GRPOReflectConfig's, the paper's 0.001; 0 skips the "
        "reference-model pass)",
    )
    parser.add_argument(
        "--rrr-resample-groups",
        type=int,
        default=0,
        help="redraw a group without reward variance up to this many times (DAPO; 0: off)",
    )
    parser.add_argument(
        "--rrr-temperature", type=float, default=1.0, help="reflections (and collection)"
    )
    parser.add_argument(
        "--rrr-retry-temperature",
        type=float,
        default=None,
        help="training retries (default: --rrr-temperature; 0: greedy)",
    )
    parser.add_argument("--rise-items", type=int, default=4, help="items per RISE iteration")
    parser.add_argument("--rise-samples-per-item", type=int, default=4)
    parser.add_argument("--rise-best-of", type=int, default=4)
    parser.add_argument("--rise-temperature", type=float, default=1.0, help="RISE rollouts")
    parser.add_argument(
        "--rise-best-of-temperature",
        type=float,
        default=None,
        help="RISE best-of-N samples (default: --rise-temperature)",
    )
    parser.add_argument(
        "--rise-update-epochs",
        type=int,
        default=1,
        help="passes over each RISE iteration's targets",
    )
    parser.add_argument(
        "--rise-train-on-failures",
        action="store_true",
        help="also train on groups with no correct response (the official code's default)",
    )
    parser.add_argument(
        "--name", default=None, help="results folder name (default: from env, kwargs and model)"
    )
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/rrr_vs_rise"))
    parser.add_argument("--quick", action="store_true", help="tiny budget and eval, under /tmp")
    one_line_errors(parser)
    args = parser.parse_args(argv)
    positive = (
        "seeds",
        "eval_n",
        "batch_size",
        "rrr_collect_n",
        "rise_items",
        "rise_update_epochs",
        "lora_r",
    )
    positive += ("rrr_samples_per_query", "rrr_num_generations", "rrr_groups_per_step")
    positive += ("rise_samples_per_item", "rise_best_of")
    for name in positive:
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be an integer >= 1, got {getattr(args, name)}")
    if args.curve_points < 0:
        parser.error(f"--curve-points must be an integer >= 0, got {args.curve_points}")
    if args.budget_minutes <= 0:
        parser.error(f"--budget-minutes must be > 0, got {args.budget_minutes}")
    if args.attempt_max_tokens < 1 or args.reflection_max_tokens < 1:
        parser.error("--attempt-max-tokens and --reflection-max-tokens must be >= 1")
    try:
        json_object(args.env_kwargs, "--env-kwargs")
    except ValueError as error:
        parser.error(str(error))
    if args.quick:
        args.model = "smollm2-135m" if args.model == "qwen2.5-coder-0.5b" else args.model
        args.budget_minutes, args.seeds, args.eval_n = 0.05, 1, 2
        args.attempt_max_tokens, args.reflection_max_tokens = 16, 8
        args.rrr_collect_n, args.rise_items = 4, 1
        args.runs_dir = QUICK_RESULTS / "rrr_vs_rise_runs"
    for name in ("rrr_temperature", "rrr_retry_temperature", "rise_temperature", "rrr_beta"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if args.eval_dtype is None:
        args.eval_dtype = "auto" if args.quick else "bfloat16"
    if args.eval_dtype == "auto":
        args.eval_dtype = str(resolve_dtype("auto")).removeprefix("torch.")
    if args.out_dir is None:
        base = QUICK_RESULTS if args.quick else RESULTS
        args.out_dir = base / "rrr_vs_rise" / setting_name(args)
    return args


def check_arms(args: argparse.Namespace) -> None:
    """Build the train and eval envs and check ``--model``, before any model loads.

    Raises:
        ValueError: An unknown env id, a bad env option or split, or an unknown model.
    """
    kwargs = json.loads(args.env_kwargs)
    check_env(args.env, {**kwargs, "split": args.eval_split})
    if any(protocol(arm)["env"]["reflect"] for arm in args.arms):
        check_env(args.env, {**kwargs, **reflect_options(args), "split": args.eval_split})
    if set(args.arms) & set(TRAINED_ARMS):
        check_env(args.env, {**kwargs, "split": args.train_split})
    check_model(args.model)


def check_resume(args: argparse.Namespace) -> None:
    """Check that the rows this run would join were evaluated like its own.

    Greedy text differs between bf16 and fp32 weights, so one report must not mix them.
    Rows written before ``eval_dtype`` was recorded were evaluated in bf16 (the default).

    Raises:
        ValueError: ``results.jsonl`` in ``--out-dir`` holds rows of another ``--eval-dtype``.
    """
    stored = {r.get("eval_dtype", "bfloat16") for r in read_rows(args.out_dir / "results.jsonl")}
    if stored - {args.eval_dtype}:
        raise ValueError(
            f"{args.out_dir / 'results.jsonl'} holds rows evaluated in {', '.join(sorted(stored))}"
            f"; rerun with --eval-dtype {min(stored)} or choose another --out-dir"
        )


def setting_name(args: argparse.Namespace) -> str:
    """``--name``, or ``<env>__<model>``, plus ``-easy`` for the default easy Countdown setting."""
    if args.name:
        return args.name
    env = args.env.removeprefix("rrr/").removesuffix("-v0").lower()
    if json.loads(args.env_kwargs) == json.loads(EASY_COUNTDOWN):
        env += "-n2-easy"
    elif json.loads(args.env_kwargs):
        env += "-custom"
    return f"{env}__{Path(args.model).name}"


# -- evaluation ----------------------------------------------------------------------------


def curve_marks(args: argparse.Namespace) -> list[float] | None:
    """Training times (minutes) of the learning curve's inner points, or ``None``."""
    n = args.curve_points
    return [args.budget_minutes * k / (n + 1) for k in range(1, n + 1)] or None


def reflect_options(args: argparse.Namespace) -> dict[str, Any]:
    """Env options of episodes with a reflection: ``retry_context`` unless it is the default."""
    return {} if args.retry_context == "conversation" else {"retry_context": args.retry_context}


def protocol(arm: str) -> dict[str, Any]:
    """Episode options and sampling of ``arm``'s evaluation."""
    if arm in ("vanilla", "fixed_reflection", "rrr"):
        return {"env": {"max_attempts": 2, "reflect": True, "feedback": "binary"}, "samples": 1}
    if arm in ("retry", "rise"):
        return {"env": {"max_attempts": 2, "reflect": False, "feedback": "binary"}, "samples": 1}
    if arm == "best_of_2":
        return {"env": {"max_attempts": 1, "reflect": False, "feedback": "binary"}, "samples": 2}
    raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}")


def arm_scores(arm: str, episodes: Sequence[Episode]) -> dict[str, Any]:
    """1st-try and 2nd-try accuracy of an arm, and which items it solved.

    ``second_try`` is solved by the first or second answer: after a reflection (``vanilla``,
    ``fixed_reflection``, ``rrr``), after "try again" (``retry``, ``rise``), or by either of
    two independent samples (``best_of_2``). For ``best_of_2``, ``first_try`` is the mean over
    both samples.
    """
    by_item: dict[int, list[Episode]] = {}
    for episode in episodes:
        by_item.setdefault(episode.index, []).append(episode)
    first, second, tokens = {}, {}, 0
    for index, group in sorted(by_item.items()):
        graded = [e.graded for e in group]
        tokens += sum(t.completion_tokens for e in group for t in e.turns)
        if arm == "best_of_2":
            first[index] = sum(bool(g and g[0].correct) for g in graded) / len(graded)
            second[index] = any(g and g[0].correct for g in graded)
        else:
            (turns,) = graded
            first[index] = float(bool(turns[0].correct))
            second[index] = any(t.correct for t in turns[:2])
    items = len(by_item)
    return {
        "items": items,
        "first_try": sum(first.values()) / items,
        "second_try": sum(second.values()) / items,
        "solved_second": sorted(i for i, ok in second.items() if ok),
        "eval_generated_tokens": tokens,
    }


def run_eval(
    arm: str, model: Any, tokenizer: Any, args: argparse.Namespace, path: Path, seed: int
) -> dict[str, Any]:
    """Evaluate ``model`` under ``arm``'s protocol; episodes go to (and resume from) ``path``."""
    from agents.backends import TransformersBackend

    spec = protocol(arm)
    options = {"split": args.eval_split, **json.loads(args.env_kwargs), **spec["env"]}
    if spec["env"]["reflect"]:
        options.update(reflect_options(args))
    # Distinct problems: a generator's small problem space repeats items.
    indices = distinct_indices(lambda: gym.make(args.env, **options), args.eval_n)
    env = gym.make(args.env, **options)
    temperature = args.sample_temperature if arm == "best_of_2" else 0.0
    answer = SamplingParams(args.attempt_max_tokens, temperature)
    sampling = PhaseSampling(
        attempt=answer,
        reflection=SamplingParams(args.reflection_max_tokens, temperature),
        retry=answer,
    )
    backend: Any = TransformersBackend(model, tokenizer, batch_size=args.batch_size, seed=seed)
    if arm == "fixed_reflection":
        backend = FixedReflectionBackend(backend, env.unwrapped.task.reflection_request)
    started = time.perf_counter()
    episodes, _ = evaluate(
        lambda: gym.make(args.env, **options),
        backend,
        indices,
        samples=spec["samples"],
        sampling=sampling,
        seed=seed,
        episodes_path=path,
        chunk_items=max(1, args.batch_size // spec["samples"]),
        progress=True,
    )
    return {**arm_scores(arm, episodes), "eval_seconds": time.perf_counter() - started}


def held_out_curve(
    arm: str, seed: int, run_dir: Path, args: argparse.Namespace, episodes_dir: Path
) -> list[dict[str, Any]]:
    """Scores of each policy snapshot in ``run_dir``, in order of training time."""
    from agents.snapshots import list_snapshots, load_snapshot

    points = []
    for path, info in list_snapshots(run_dir):
        policy, tokenizer = load_snapshot(path, args.model)
        model = eval_model(policy, args)
        del policy
        episodes = episodes_dir / f"{arm}__seed{seed}__{info['minutes']:g}min.jsonl"
        scores = run_eval(arm, model, tokenizer, args, episodes, seed)
        del model
        gc.collect()
        position = {k: info[k] for k in ("iteration", "step") if k in info}
        points.append({"minutes": info["train_seconds"] / 60, **position, **scores})
    return points


def eval_model(policy: Any, args: argparse.Namespace) -> Any:
    """The evaluation copy of ``policy``: LoRA merged, cast to ``--eval-dtype``."""
    from agents.models import generation_model

    return generation_model(policy, getattr(torch, args.eval_dtype))


# -- training ------------------------------------------------------------------------------


def rrr_config(args: argparse.Namespace, seed: int) -> Any:
    """The ``GRPOReflectConfig`` of RRR-GRPO's arm for ``seed``."""
    from agents.grpo_reflect import GRPOReflectConfig

    pass_size = 2 if args.rrr_num_generations % 2 == 0 else 1
    return GRPOReflectConfig(
        output_dir=str(args.runs_dir / setting_name(args) / f"rrr_seed{seed}"),
        model=args.model,
        env_id=args.env,
        env_kwargs=json.dumps({**json.loads(args.env_kwargs), **reflect_options(args)}),
        train_split=args.train_split,
        seed=seed,
        max_steps=100_000,  # the budget stops it
        max_minutes=args.budget_minutes,
        snapshot_minutes=curve_marks(args),
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        collect=True,
        collect_n=args.rrr_collect_n,
        samples_per_query=args.rrr_samples_per_query,
        min_successes=args.rrr_min_successes,
        num_generations=args.rrr_num_generations,
        # --rrr-groups-per-step groups per optimizer step, in passes of 2 sequences (1 for odd
        # group sizes).
        per_device_train_batch_size=pass_size,
        gradient_accumulation_steps=args.rrr_groups_per_step
        * args.rrr_num_generations
        // pass_size,
        resample_groups=args.rrr_resample_groups,
        temperature=args.rrr_temperature,
        retry_temperature=args.rrr_retry_temperature,
        attempt_max_tokens=args.attempt_max_tokens,
        max_completion_length=args.reflection_max_tokens,
        retry_max_tokens=args.attempt_max_tokens,
        eval_n=0,
        report_to="none",
        save_strategy="no",
        rollout_batch_size=args.batch_size,
        # The config's own default (the paper's) unless --rrr-beta is given.
        **({} if args.rrr_beta is None else {"beta": args.rrr_beta}),
    )


def train_rrr(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """RRR-GRPO for the budget; returns the trained policy and what the run cost."""
    from trl import ModelConfig

    from agents.grpo_reflect import train as grpo_train

    config = rrr_config(args, seed)
    model_args = ModelConfig(
        dtype="float32", use_peft=True, lora_r=args.lora_r, lora_alpha=args.lora_alpha
    )
    run_dir = Path(config.output_dir)
    shutil.rmtree(run_dir / "snapshots", ignore_errors=True)  # of a killed earlier run
    result = grpo_train(config, model_args)
    per_step = config.generation_batch_size
    history = [h for h in result["log_history"] if "rrr/retry_success" in h]
    tokens = sum(
        per_step * (h.get("rrr/reflection_tokens", 0) + h.get("rrr/retry_tokens", 0))
        for h in history
    )
    return {
        "policy": result["model"],
        "tokenizer": result["tokenizer"],
        "train_seconds": result["train_seconds"],
        "updates": result["steps"],
        "train_generated_tokens": round(tokens),
        "curve": [
            {
                "step": h["step"],
                "retry_success": h["rrr/retry_success"],
                # TRL's fraction of groups whose rewards are all equal (no gradient).
                "zero_variance": h.get("frac_reward_zero_std"),
                # Groups drawn per trained group, and the share of all drawn groups without
                # variance (equal to zero_variance without --rrr-resample-groups).
                "group_draws": h.get("rrr/group_draws"),
                "drawn_zero_variance": h.get("rrr/drawn_zero_variance"),
            }
            for h in history
        ],
        "failures": result["failures"],
        "run_dir": str(run_dir),
    }


def train_rise(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """RISE-AWR for the budget; returns the trained policy and what the run cost."""
    from agents.rise_awr import Args as RiseArgs
    from agents.rise_awr import train as rise_train

    config = RiseArgs(
        exp_name="rise",
        seed=seed,
        output_dir=str(args.runs_dir / setting_name(args)),
        report_to="none",
        env_id=args.env,
        env_kwargs=args.env_kwargs,
        train_split=args.train_split,
        max_attempts=2,
        model=args.model,
        # Autocast where the device multiplies bf16 in hardware (as RRR-GRPO's trainer picks):
        # on an AVX2-only CPU bf16 is 3.5x slower than fp32.
        bf16=resolve_dtype("auto") == torch.bfloat16,
        use_peft=True,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        iterations=100_000,  # the budget stops it
        max_minutes=args.budget_minutes,
        snapshot_minutes=curve_marks(args),
        items_per_iteration=args.rise_items,
        samples_per_item=args.rise_samples_per_item,
        best_of=args.rise_best_of,
        temperature=args.rise_temperature,
        best_of_temperature=args.rise_best_of_temperature,
        train_on_failures=args.rise_train_on_failures,
        max_new_tokens=args.attempt_max_tokens,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        update_epochs=args.rise_update_epochs,
        minibatch_size=8,
        micro_batch_size=4,
        eval_n=0,
    )
    result = rise_train(config)
    rows = [
        json.loads(line)
        for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    tokens = sum(r.get("rollout/generated_tokens", 0) for r in rows)
    return {
        "policy": result.policy,
        "tokenizer": result.tokenizer,
        "train_seconds": result.train_seconds,
        "updates": int(sum(r.get("charts/optimizer_steps", 0) for r in rows)),
        "iterations": result.iteration,
        "train_bf16": config.bf16,
        "train_generated_tokens": round(tokens),
        "run_dir": str(result.run_dir),
    }


# -- report --------------------------------------------------------------------------------


def sign_test(gained: int, lost: int) -> float:
    """Two-sided exact sign test p-value of ``gained`` vs ``lost`` discordant items."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _mean_sd(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.3f} ± {sd:.3f}"


#: The untrained control each trained arm starts from (same evaluation protocol).
CURVE_START = {"rrr": "vanilla", "rise": "retry"}
LABELS = {
    "vanilla": "vanilla (own reflection, untrained)",
    "retry": 'retry without reflection ("try again")',
    "fixed_reflection": "fixed generic reflection",
    "best_of_2": "best-of-2 samples (no feedback)",
    "rrr": "RRR-GRPO (trained reflection)",
    "rise": "RISE-AWR (trained retry)",
}


def curve_points(
    row: dict[str, Any], start: dict[str, Any] | None
) -> list[tuple[float, dict[str, Any]]]:
    """(training minutes, scores) of a trained row: its control at 0, snapshots, end point."""
    points = [(0.0, start)] if start else []
    points += [(p["minutes"], p) for p in row.get("held_out_curve", [])]
    return [*points, (row["train_seconds"] / 60, row)]


def other_cpus(rows: list[dict[str, Any]]) -> list[str]:
    """Report lines naming the rows run on another CPU than the first row's.

    Budgets are wall-clock minutes, so a CPU without bf16 units buys fewer updates in one.
    """
    first = cpu_name(rows[0]["machine"])
    cpus = [(r, cpu_name(r["machine"])) for r in rows]
    others = [f"{r['arm']} seed {r['seed']}: {cpu}" for r, cpu in cpus if cpu != first]
    if not others:
        return []
    return [
        "",
        f"Rows on another CPU than {first} (a wall-clock budget buys a different amount of "
        f"training there): {'; '.join(others)}.",
    ]


def render(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """The markdown report."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_arm.setdefault(row["arm"], []).append(row)
    machine = rows[0]["machine"]
    lines = [
        f"# RRR vs RISE: {args.model} on {args.env} {args.env_kwargs}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_line(machine)}",
        *other_cpus(rows),
        "",
        f"Budget per method and seed: {args.budget_minutes:g} wall-clock minutes of training "
        "(collection included, evaluation excluded), LoRA r "
        f"{args.lora_r} / alpha {args.lora_alpha}, learning rate {args.learning_rate:g} "
        "(constant) for both. Evaluation: greedy, the first "
        f"{args.eval_n} distinct problems of the `{args.eval_split}` split, "
        f"{args.attempt_max_tokens} tokens "
        f"per answer, {args.reflection_max_tokens} per reflection, every model merged and cast "
        f"to {args.eval_dtype}."
        + (
            " A retry after a reflection sees the task and the reflection, not the failed "
            "attempt (`--retry-context reflection`), in RRR's training and evaluation."
            if reflect_options(args)
            else ""
        ),
        "",
        "| arm | seeds | 1st try | 2nd try | train min | updates | train tokens | "
        "eval tokens / item |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        group = by_arm.get(arm)
        if not group:
            continue
        train_min = [r["train_seconds"] / 60 for r in group if "train_seconds" in r]
        updates = [r["updates"] for r in group if "updates" in r]
        tokens = [r["train_generated_tokens"] for r in group if "train_generated_tokens" in r]
        lines.append(
            f"| {LABELS[arm]} | {len(group)} | {_mean_sd([r['first_try'] for r in group])} | "
            f"{_mean_sd([r['second_try'] for r in group])} | "
            f"{_mean_sd(train_min) if train_min else '-'} | "
            f"{'/'.join(map(str, updates)) if updates else '-'} | "
            f"{'/'.join(map(str, tokens)) if tokens else '-'} | "
            f"{sum(r['eval_generated_tokens'] for r in group) / sum(r['items'] for r in group):.0f}"
            " |"
        )
    lines += [
        "",
        "Paired comparisons on the 2nd try (items solved; exact two-sided sign test):",
        "",
    ]
    lines += ["| comparison | seed | gained | lost | p |", "|---|---|---|---|---|"]
    pairs = [("rrr", "vanilla"), ("rise", "retry"), ("rrr", "rise"), ("vanilla", "retry")]
    pairs += [("vanilla", "fixed_reflection"), ("vanilla", "best_of_2")]
    for a, b in pairs:
        pooled = [0, 0, 0]  # gained, lost, seeds
        for row in by_arm.get(a, []):
            others = [r for r in by_arm.get(b, []) if r["seed"] in (row["seed"], 0)]
            if not others:
                continue
            mine, theirs = set(row["solved_second"]), set(others[0]["solved_second"])
            gained, lost = len(mine - theirs), len(theirs - mine)
            pooled = [pooled[0] + gained, pooled[1] + lost, pooled[2] + 1]
            lines.append(
                f"| {a} vs {b} | {row['seed'] or '-'} | {gained} | {lost} | "
                f"{sign_test(gained, lost):.2g} |"
            )
        if pooled[2] > 1:
            lines.append(
                f"| {a} vs {b} | pooled ({pooled[2]} seeds) | {pooled[0]} | {pooled[1]} | "
                f"{sign_test(pooled[0], pooled[1]):.2g} |"
            )
    traced = [r for arm in TRAINED_ARMS for r in by_arm.get(arm, []) if r.get("held_out_curve")]
    if traced:
        lines += [
            "",
            "Held-out accuracy during training (1st / 2nd try; policy snapshots evaluated with "
            "the same protocol; the first point is the arm's untrained control):",
            "",
        ]
        for row in traced:
            start = (by_arm.get(CURVE_START[row["arm"]]) or [None])[0]
            shown = ", ".join(
                f"{m:.1f} min {p['first_try']:.3f} / {p['second_try']:.3f}"
                for m, p in curve_points(row, start)
            )
            lines.append(f"- {row['arm']} seed {row['seed']}: {shown}")
    curves = [r for r in by_arm.get("rrr", []) if r.get("curve")]
    if curves:
        lines += ["", "RRR retry success of the sampled groups by step:", ""]
        for row in curves:
            points = ", ".join(f"{p['step']}: {p['retry_success']:.2f}" for p in row["curve"])
            lines.append(f"- seed {row['seed']}: {points}")
            flat = [p["zero_variance"] for p in row["curve"] if p.get("zero_variance") is not None]
            if flat:
                lines.append(
                    f"  (groups with no reward variance, hence no gradient: "
                    f"{sum(flat) / len(flat):.0%} over {len(flat)} steps)"
                )
            drawn = [p for p in row["curve"] if p.get("group_draws") is not None]
            if drawn and any(p["group_draws"] > 1 for p in drawn):
                draws = sum(p["group_draws"] for p in drawn) / len(drawn)
                share = sum(p["drawn_zero_variance"] for p in drawn) / len(drawn)
                lines.append(
                    f"  (dynamic sampling: {draws:.1f} groups drawn per trained group, "
                    f"{share:.0%} of drawn groups without reward variance)"
                )
    lines += [
        "",
        "![accuracy vs training wall time](accuracy.png)",
        "",
        "The papers, for scale: " + PAPER_FIGURES,
        "",
    ]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy vs training wall time: each method from the base model to its trained policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = {r["arm"]: r for r in rows if r["seed"] == 0}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, title in zip(
        axes, ("first_try", "second_try"), ("1st try", "2nd try"), strict=True
    ):
        for arm, color in (("rrr", "C0"), ("rise", "C1")):
            start = base.get(CURVE_START[arm])
            for row in (r for r in rows if r["arm"] == arm):
                points = curve_points(row, start)
                xs, ys = [m for m, _ in points], [p[key] for _, p in points]
                ax.plot(xs, ys, "o-", color=color, label=f"{arm} seed {row['seed']}")
        for arm, style in (("fixed_reflection", ":"), ("best_of_2", "--")):
            if arm in base:
                ax.axhline(base[arm][key], color="grey", linestyle=style, label=LABELS[arm])
        ax.set_title(title)
        ax.set_xlabel("training wall time (min)")
    axes[0].set_ylabel("accuracy (held-out)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of ``results.jsonl`` (a torn last line from a kill is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every arm not yet in ``results.jsonl``, then write the report and plot."""
    from agents.models import load_model_and_tokenizer

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    preflight(lambda: (check_arms(args), check_resume(args)))
    command = command_line("benchmarks.rrr_vs_rise", argv)
    out = args.out_dir
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    rows = read_rows(results)
    done = {(r["arm"], r["seed"]) for r in rows}
    common = {
        "env": args.env,
        "env_kwargs": args.env_kwargs,
        "model": args.model,
        "budget_minutes": args.budget_minutes,
        "eval_n": args.eval_n,
        "eval_dtype": args.eval_dtype,
        "command": command,
        **reflect_options(args),
    }

    def episodes(arm: str, seed: int) -> Path:
        return out / "episodes" / f"{arm}__seed{seed}.jsonl"

    def finish(arm: str, seed: int, fields: dict[str, Any]) -> None:
        row = {"arm": arm, "seed": seed, **common, **fields}
        row["machine"] = machine_info(MEASURED_CODE, PACKAGES)
        row["python"] = platform.python_version()
        append_lines(results, [row])
        rows.append(row)
        print(f"{arm} seed {seed}: 1st {row['first_try']:.3f} 2nd {row['second_try']:.3f}")

    controls = [a for a in CONTROL_ARMS if a in args.arms and (a, 0) not in done]
    if controls:
        base, tokenizer = load_model_and_tokenizer(args.model, dtype="float32")
        model = eval_model(base, args)
        del base
        for arm in controls:
            finish(arm, 0, run_eval(arm, model, tokenizer, args, episodes(arm, 0), 0))
        del model
    for seed in range(1, args.seeds + 1):
        for arm, trainer in (("rrr", train_rrr), ("rise", train_rise)):
            if arm not in args.arms or (arm, seed) in done:
                continue
            # Episodes of a seed killed before its row was written came from a model that
            # is gone: this seed trains again from the start.
            stale = [episodes(arm, seed), *(out / "episodes").glob(f"{arm}__seed{seed}__*")]
            for path in stale:
                path.unlink(missing_ok=True)
            trained = trainer(args, seed)
            policy, tokenizer = trained.pop("policy"), trained.pop("tokenizer")
            model = eval_model(policy, args)
            del policy
            gc.collect()  # the trainer's reference cycles hold gigabytes until collected
            scores = run_eval(arm, model, tokenizer, args, episodes(arm, seed), seed)
            del model
            gc.collect()
            curve = held_out_curve(arm, seed, Path(trained["run_dir"]), args, out / "episodes")
            finish(arm, seed, {**trained, **scores, "held_out_curve": curve})
    if rows:
        (out / "report.md").write_text(render(rows, args, command))
        plot(rows, out / "accuracy.png")
        print((out / "report.md").read_text())
    return rows


if __name__ == "__main__":
    main()
