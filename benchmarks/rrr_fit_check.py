"""Does an RRR-GRPO update raise the success of reflections on the failures it trains on?

Measured (``results/rrr_fit_check/report.md``): 4 of 48 retries right before, 5 of 48 after
12 steps (34.5 min, ~3 min a step), p = 1: no measurable change.

    python -m benchmarks.rrr_fit_check --steps 12 # resumable; ~60 min on a 2-core AVX-512 BF16 CPU
    python -m benchmarks.rrr_fit_check --render   # only rewrite the report

An in-sample check of the trainer's direction, not a held-out result: GRPO should make the
reflections that led to a correct retry more likely on the very failures it was rewarded on.
If it cannot do that, no budget will show held-out learning; if it can, what stands between
it and held-out learning is the amount and the breadth of the signal. The setting is the one
with the largest measured share of groups with reward variance (``benchmarks.signal_search``):
rrr/Countdown-v1 with 2 numbers in 1..50, the retry starting afresh from the task and the
reflection (``retry_context="reflection"``), reflections sampled at T = 0.7, greedy retries.

Stages, each appended to ``<out>/stages.jsonl`` once done (a rerun resumes after the last):

1. ``collect``: ``--failures`` failures sampled on train items, as the search collects them.
2. ``screen``: ``--screen-size`` reflections per failure; the failures whose retries got
   different rewards are kept (only they give GRPO a gradient).
3. ``before``: ``--measure-size`` fresh reflections per kept failure (another seed than the
   screen, so that the kept failures' lucky screen draws do not inflate the baseline).
4. ``after``: RRR-GRPO (LoRA, the head-to-head's recipe) trains on the kept failures for
   ``--steps`` optimizer steps, one group of ``--group-size`` per step; then the same
   measurement as ``before`` (same seed) with the trained policy. A kill during training
   trains again.

The report compares retry success before and after, pooled over the kept failures, with a
two-sided Fisher exact test, and lists each failure.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, command_line, machine_line
from benchmarks.common import machine_info as _machine_info
from benchmarks.signal_search import (
    R50,
    Setting,
    collect_setting_failures,
    roll_out_groups,
    setting_config,
    token_limits,
)

MEASURED_CODE = [
    "agents/grpo_reflect.py",
    "agents/grpo_rollout.py",
    "agents/grpo_callbacks.py",
    "agents/reflection_rollout.py",
    "benchmarks/signal_search.py",
    "benchmarks/rrr_fit_check.py",
]
PACKAGES = ["torch", "transformers", "trl", "peft"]
OUT = RESULTS / "rrr_fit_check"

#: The measured setting with the largest share of groups with variance (3 of 12).
SETTING = Setting(
    "qwen2.5-coder-0.5b",
    "rrr/Countdown-v1",
    {**R50, "retry_context": "reflection"},
    "countdown-v1-n2-r50+retry-from-reflection",
    temperature=0.7,
    retry_temperature=0.0,
    reflection_max_tokens=128,
)
STAGES = ("collect", "screen", "before", "after")


def fisher_exact(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """Two-sided Fisher exact test of equal success rates (sum of as-likely or rarer tables)."""
    hits, total = hits_a + hits_b, n_a + n_b

    def probability(k: int) -> float:
        return math.comb(n_a, k) * math.comb(n_b, hits - k) / math.comb(total, hits)

    observed = probability(hits_a)
    tables = range(max(0, hits - n_b), min(n_a, hits) + 1)
    return min(1.0, sum(p for p in map(probability, tables) if p <= observed * (1 + 1e-9)))


def group_successes(rewards: Sequence[float], group_size: int) -> list[int]:
    """Correct retries per failure (groups are adjacent in ``rewards``)."""
    return [round(sum(rewards[k : k + group_size])) for k in range(0, len(rewards), group_size)]


def measure(
    model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], size: int, seed: int
) -> dict[str, Any]:
    """``size`` reflections (and greedy retries) per failure: successes and what they cost."""
    started = time.perf_counter()
    batch = roll_out_groups(SETTING, model, tokenizer, rows, group_size=size, seed=seed)
    return {
        "successes": group_successes(batch.rewards, size),
        "size": size,
        "reasons": _count(batch.reasons),
        "reflection_clipped": 1 - sum(batch.reflection_stopped) / max(len(batch.rewards), 1),
        "seconds": round(time.perf_counter() - started, 1),
        "example": {"reflection": batch.reflections[0], "retry": batch.retries[0]},
    }


def _count(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def train_on(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """RRR-GRPO on ``rows`` for ``--steps`` steps; the trained policy and the training log."""
    from trl import ModelConfig

    from agents.grpo_reflect import GRPOReflectConfig
    from agents.grpo_reflect import train as grpo_train

    config = setting_config(SETTING)
    run_dir = Path(tempfile.mkdtemp(prefix="rrr_fit_check_"))
    failures = run_dir / "failures.jsonl"
    failures.write_text("".join(json.dumps(row) + "\n" for row in rows))
    training = GRPOReflectConfig(
        output_dir=str(run_dir),
        model=SETTING.model,
        env_id=SETTING.env,
        env_kwargs=json.dumps(SETTING.env_kwargs),
        train_split="train",
        failures_path=str(failures),
        collect=False,
        seed=args.seed,
        max_steps=args.steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        num_generations=args.group_size,
        # One group per optimizer step, in passes of 2 sequences.
        per_device_train_batch_size=2,
        gradient_accumulation_steps=args.group_size // 2,
        temperature=SETTING.temperature,
        retry_temperature=SETTING.retry_temperature,
        attempt_max_tokens=config.attempt_max_tokens,
        max_completion_length=config.max_completion_length,
        retry_max_tokens=config.retry_max_tokens,
        eval_n=0,
        report_to="none",
        save_strategy="no",
        rollout_batch_size=32,
    )
    model_args = ModelConfig(dtype="float32", use_peft=True, lora_r=16, lora_alpha=32)
    result = grpo_train(training, model_args)
    history = [h for h in result["log_history"] if "rrr/retry_success" in h]
    return {
        "policy": result["model"],
        "tokenizer": result["tokenizer"],
        "train_seconds": round(result["train_seconds"], 1),
        "steps": result["steps"],
        "curve": [
            {
                "step": h["step"],
                "retry_success": h["rrr/retry_success"],
                "zero_variance": h.get("frac_reward_zero_std"),
            }
            for h in history
        ],
    }


def read_stages(path: Path) -> dict[str, dict[str, Any]]:
    """Finished stages by name (a torn last line from a kill is skipped)."""
    if not path.exists():
        return {}
    stages = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        stages[row["stage"]] = row
    return stages


def render(stages: dict[str, dict[str, Any]]) -> str:
    """The markdown report of the finished stages."""
    first = next(iter(stages.values()))
    lines = [
        "# Does RRR-GRPO raise its reflections' success on the failures it trains on?",
        "",
        f"Command: `{first['command']}`  ",
        f"Machine: {machine_line(first['machine'])}",
        "",
        f"Setting: {SETTING.label} {json.dumps(SETTING.env_kwargs)}; reflections sampled at "
        f"T = {SETTING.temperature:g}, greedy retries, token limits "
        f"{'/'.join(map(str, first['token_limits'].values()))} (attempt / reflection / retry). "
        "In-sample: the measured failures are the ones trained on; this shows the direction "
        "of the update, not held-out accuracy.",
        "",
    ]
    if "collect" in stages:
        collect = stages["collect"]
        lines.append(
            f"- collect: {len(collect['rows'])} failures from {collect['queries']} train items "
            f"({collect['first_attempt_successes']}/{collect['first_attempts']} sampled first "
            "attempts right)."
        )
    if "screen" in stages:
        screen = stages["screen"]
        lines.append(
            f"- screen: retries right per failure, {screen['size']} reflections each: "
            f"{screen['successes']}; kept (rewards differ): {len(screen['kept'])} failures."
        )
    if "before" not in stages:
        return "\n".join(lines) + "\n"
    before = stages["before"]
    size, kept = before["size"], len(before["successes"])
    n = size * kept
    lines.append(
        f"- before: {sum(before['successes'])}/{n} retries right ({size} fresh reflections per "
        f"kept failure: {before['successes']})."
    )
    if "after" in stages:
        after = stages["after"]
        p = fisher_exact(sum(after["successes"]), n, sum(before["successes"]), n)
        lines += [
            f"- after {after['steps']} RRR-GRPO steps ({after['train_seconds'] / 60:.1f} min of "
            f"training, learning rate {after['learning_rate']:g}, LoRA r 16): "
            f"{sum(after['successes'])}/{n} retries right ({after['successes']}); two-sided "
            f"Fisher exact p = {p:.3g}.",
            "",
            "| failure (train item) | before | after |",
            "|---|---|---|",
        ]
        for index, b, a in zip(
            before["indices"], before["successes"], after["successes"], strict=True
        ):
            lines.append(f"| {index} | {b}/{size} | {a}/{size} |")
        curve = ", ".join(f"{c['retry_success']:.2f}" for c in after["curve"])
        lines += ["", f"Retry success of each training step's group (sampled): {curve}."]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failures", type=int, default=12, help="failures to screen")
    parser.add_argument("--screen-size", type=int, default=8, help="reflections per failure")
    parser.add_argument("--measure-size", type=int, default=16, help="reflections per failure")
    parser.add_argument("--group-size", type=int, default=8, help="GRPO group size")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--samples-per-query", type=int, default=2, help="first attempts/item")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--render", action="store_true", help="only rewrite the report")
    args = parser.parse_args(argv)
    for name in ("failures", "screen_size", "measure_size", "steps", "samples_per_query"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.group_size < 2 or args.group_size % 2:
        parser.error(f"--group-size must be an even number >= 2, got {args.group_size}")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    from agents.models import generation_model, load_model_and_tokenizer, resolve_dtype

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    path = args.out_dir / "stages.jsonl"
    stages = read_stages(path)
    report = args.out_dir / "report.md"
    if args.render:
        if stages:
            report.write_text(render(stages))
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "command": command_line("benchmarks.rrr_fit_check", argv),
        "token_limits": token_limits(SETTING),
    }

    def finish(stage: str, fields: dict[str, Any]) -> None:
        row = {"stage": stage, **common, **fields}
        row["machine"] = _machine_info(MEASURED_CODE, PACKAGES)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        stages[stage] = row
        report.write_text(render(stages))
        print(f"== {stage} done", flush=True)

    # The CPU's fast dtype (bf16 with bf16 units, fp32 otherwise), before and after alike.
    dtype = resolve_dtype("auto")
    base, tokenizer = load_model_and_tokenizer(SETTING.model, dtype="auto")
    if "collect" not in stages:
        records, rows = collect_setting_failures(
            SETTING,
            base,
            tokenizer,
            target=args.failures,
            samples_per_query=args.samples_per_query,
            seed=args.seed,
        )
        finish(
            "collect",
            {
                "rows": rows,
                "queries": len(records),
                "first_attempts": sum(r["samples"] for r in records),
                "first_attempt_successes": sum(r["successes"] for r in records),
            },
        )
    rows = stages["collect"]["rows"]
    if "screen" not in stages:
        screen = measure(base, tokenizer, rows, args.screen_size, seed=args.seed + 1)
        kept = [k for k, s in enumerate(screen["successes"]) if 0 < s < args.screen_size]
        finish("screen", {**screen, "kept": kept})
    kept_rows = [rows[k] for k in stages["screen"]["kept"]]
    if not kept_rows:
        raise SystemExit("no screened failure had reward variance: nothing for GRPO to learn")
    indices = [row["index"] for row in kept_rows]
    if "before" not in stages:
        scores = measure(base, tokenizer, kept_rows, args.measure_size, seed=args.seed + 2)
        finish("before", {**scores, "indices": indices, "dtype": str(base.dtype)})
    del base
    if "after" not in stages:
        trained = train_on(kept_rows, args)
        policy = generation_model(trained.pop("policy"), dtype)
        trained.pop("tokenizer")
        scores = measure(policy, tokenizer, kept_rows, args.measure_size, seed=args.seed + 2)
        finish(
            "after",
            {**scores, **trained, "indices": indices, "learning_rate": args.learning_rate},
        )
    print(report.read_text())


if __name__ == "__main__":
    main()
