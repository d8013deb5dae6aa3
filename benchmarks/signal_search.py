"""Where is the RRR-GRPO learning signal? Groups with reward variance per CPU-second.

    OMP_NUM_THREADS=1 python -m benchmarks.signal_search            # every setting, resumable
    OMP_NUM_THREADS=1 python -m benchmarks.signal_search --only smollm2-135m/countdown-n2-easy
    python -m benchmarks.signal_search --render                     # only rewrite the table

GRPO learns only from groups whose rewards differ: some sampled reflections lead to a correct
retry and some do not. For each setting (model x task x difficulty / format), this script:

1. collects failures as the trainer does: first attempts sampled at temperature 1 on the train
   split (``--samples-per-query`` per item, the first failure kept) until ``--failures`` are
   found;
2. runs, for each failure, a group of ``--group-size`` (8) reflections and retries with the
   trainer's own rollout code (:func:`agents.grpo_reflect.reflect_and_retry`: both phases
   sampled at temperature 1, retries graded by the env) at the trainer's default token
   limits;
3. records the groups' rewards and the CPU time (``time.process_time``, all threads) of both
   steps.

The signal rate is groups with reward variance per CPU-minute of group rollouts (the cost that
recurs at every training step); collection cost per failure is reported separately (paid once
per dataset). One JSON line per finished setting goes to
``benchmarks/results/signal_search.jsonl`` (a rerun skips finished settings) and the table to
``signal_search.md``. Run with ``OMP_NUM_THREADS=1`` on a shared machine: with two OpenMP
threads competing for busy cores, generation burned 6x the CPU time for the same tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import rrr_env
from agents.backends import eos_token_ids
from agents.collect_failures import collect_query_records
from agents.grpo_reflect import (
    EPISODE_OPTIONS,
    EpisodeReplayer,
    GRPOReflectConfig,
    HFGenerator,
    reflect_and_retry,
)
from agents.models import load_model_and_tokenizer
from agents.rollout import SamplingParams
from benchmarks.bench_countdown_verify import command_line, machine_info, machine_line

gym.register_envs(rrr_env)
RESULTS = Path(__file__).resolve().parent / "results"

EASY = {"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}


@dataclass(frozen=True)
class Setting:
    """One point of the search."""

    model: str
    env: str
    env_kwargs: dict[str, Any]
    name: str
    failures: int | None = None  # overrides --failures (slow models)

    @property
    def label(self) -> str:
        return f"{self.model}/{self.name}"


def _bfcl(category: str, fmt: str) -> dict[str, Any]:
    return {"category": category, "format": fmt}


N3_EASY = {"num_count": 3, "number_range": [1, 20], "target_range": [1, 60]}

# Most informative first, so that a run cut short still answers the question.
SETTINGS = [
    Setting("smollm2-135m", "rrr/Countdown-v0", EASY, "countdown-n2-easy"),
    Setting("qwen2.5-coder-0.5b", "rrr/Countdown-v0", EASY, "countdown-n2-easy", failures=4),
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/BFCL-v0",
        _bfcl("simple_python", "strict"),
        "bfcl-simple-strict",
        failures=4,
    ),
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/BFCL-v0",
        _bfcl("simple_python", "lenient"),
        "bfcl-simple-lenient",
        failures=4,
    ),
    Setting("smollm2-135m", "rrr/Countdown-v0", {}, "countdown-tinyzero"),
    Setting(
        "smollm2-135m", "rrr/BFCL-v0", _bfcl("simple_python", "lenient"), "bfcl-simple-lenient"
    ),
    Setting("smollm2-135m", "rrr/Countdown-v0", N3_EASY, "countdown-n3-easy"),
    Setting("qwen2.5-coder-0.5b", "rrr/Countdown-v0", N3_EASY, "countdown-n3-easy", failures=4),
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/BFCL-v0",
        _bfcl("multiple", "lenient"),
        "bfcl-multiple-lenient",
        failures=4,
    ),
    # Qwen2.5-Coder-1.5B costs ~10x SmolLM2 per token: two failures on one setting.
    Setting(
        "qwen2.5-coder-1.5b",
        "rrr/BFCL-v0",
        _bfcl("simple_python", "strict"),
        "bfcl-simple-strict",
        failures=2,
    ),
]


def defaults() -> GRPOReflectConfig:
    """The trainer's defaults, so that the search measures the configuration it selects."""
    return GRPOReflectConfig(output_dir="/tmp/signal_search", report_to="none")


def run_setting(setting: Setting, args: argparse.Namespace) -> dict[str, Any]:
    """Collect failures and roll out one group per failure; return the record."""
    config = defaults()
    options = {**setting.env_kwargs, **EPISODE_OPTIONS, "split": "train"}
    make_env = lambda: gym.make(setting.env, **options)  # noqa: E731
    model, tokenizer = load_model_and_tokenizer(setting.model, dtype="bfloat16")
    eos = eos_token_ids(model, tokenizer)
    target = setting.failures or args.failures
    from agents.backends import TransformersBackend

    backend = TransformersBackend(model, tokenizer, batch_size=64, seed=args.seed)
    attempt = SamplingParams(config.attempt_max_tokens, temperature=1.0)

    started = time.process_time()
    records: list[dict[str, Any]] = []
    next_index = 0
    size = len(make_env().unwrapped.task)
    while sum(len(r["failures"]) > 0 for r in records) < target and next_index < size:
        missing = target - sum(len(r["failures"]) > 0 for r in records)
        chunk = list(range(next_index, min(size, next_index + max(4, 2 * missing))))
        next_index = chunk[-1] + 1
        records += collect_query_records(
            make_env,
            backend,
            chunk,
            samples_per_query=args.samples_per_query,
            failures_per_query=1,
            round_size=args.samples_per_query,
            sampling=attempt,
            seed=args.seed + chunk[0],
        )
    collect_cpu = time.process_time() - started
    failed = [r for r in records if r["failures"]][:target]
    samples = sum(r["samples"] for r in records)
    successes = sum(r["successes"] for r in records)

    rows = [{"prompt": r["failures"][0]["prompt"], "index": r["index"]} for r in failed]
    replayer = EpisodeReplayer(make_env, rows)
    generate = HFGenerator(model, sorted(eos), tokenizer.pad_token_id, temperature=1.0)
    prompts = [row["prompt"] for row in rows for _ in range(args.group_size)]
    torch.manual_seed(args.seed)
    started = time.process_time()
    batch = reflect_and_retry(
        prompts,
        replayer,
        generate,
        tokenizer,
        eos,
        reflection_max_tokens=config.max_completion_length,
        retry_max_tokens=config.retry_max_tokens,
        group_size=args.group_size,
    )
    group_cpu = time.process_time() - started
    groups = [
        batch.rewards[g * args.group_size : (g + 1) * args.group_size] for g in range(len(rows))
    ]
    with_variance = sum(0 < sum(g) < len(g) for g in groups)
    generated = sum(map(len, batch.reflection_ids)) + sum(map(len, batch.retry_ids))
    return {
        "setting": setting.label,
        "model": setting.model,
        "env": setting.env,
        "env_kwargs": setting.env_kwargs,
        "first_attempts": samples,
        "first_attempt_successes": successes,
        "queries": len(records),
        "failures": len(rows),
        "group_size": args.group_size,
        "group_rewards": groups,
        "groups_with_variance": with_variance,
        "retry_success": sum(batch.rewards) / max(len(batch.rewards), 1),
        "retry_reasons": _count(batch.reasons),
        "collect_cpu_s": round(collect_cpu, 1),
        "group_cpu_s": round(group_cpu, 1),
        "generated_tokens": generated,
        "reflection_clipped": 1 - sum(batch.reflection_stopped) / max(len(prompts), 1),
        "token_limits": {
            "attempt": config.attempt_max_tokens,
            "reflection": config.max_completion_length,
            "retry": config.retry_max_tokens,
        },
        "example": {
            "reflection": batch.reflections[0] if prompts else None,
            "retry": batch.retries[0] if prompts else None,
        },
        "torch_threads": torch.get_num_threads(),
    }


def _count(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def signal_per_cpu_minute(row: dict[str, Any]) -> float:
    """Groups with reward variance per CPU-minute of group rollouts."""
    return 60 * row["groups_with_variance"] / max(row["group_cpu_s"], 1e-9)


def render(rows: list[dict[str, Any]], header: str) -> str:
    """The markdown table, best signal first."""
    lines = [
        "# Where the RRR-GRPO learning signal is",
        "",
        header,
        "",
        "A group = 8 sampled reflections (temperature 1) on one failure, each followed by a "
        "sampled retry graded by the env. Signal = the group's rewards differ (some retries "
        "right, some wrong); only such groups give GRPO a gradient. Token limits are the "
        "trainer's defaults (attempt / reflection / retry).",
        "",
        "| setting | 1st-try pass (sampled) | failures | groups with variance | retry success | "
        "signal groups / CPU-min | rollout CPU-s / group | collect CPU-s / failure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (-signal_per_cpu_minute(r), r["setting"])):
        failures = max(row["failures"], 1)
        lines.append(
            f"| {row['setting']} {json.dumps(row['env_kwargs'])} | "
            f"{row['first_attempt_successes']}/{row['first_attempts']} | {row['failures']} | "
            f"{row['groups_with_variance']}/{row['failures']} | {row['retry_success']:.3f} | "
            f"{signal_per_cpu_minute(row):.2f} | {row['group_cpu_s'] / failures:.1f} | "
            f"{row['collect_cpu_s'] / failures:.1f} |"
        )
    total = sum(r["collect_cpu_s"] + r["group_cpu_s"] for r in rows)
    lines += ["", f"Total CPU time: {total / 60:.1f} min.", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failures", type=int, default=6, help="Failures (groups) per setting.")
    parser.add_argument("--group-size", type=int, default=8, help="Reflections per failure.")
    parser.add_argument("--samples-per-query", type=int, default=2, help="First attempts/item.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", help="Run only these setting labels.")
    parser.add_argument("--output", type=Path, default=RESULTS / "signal_search.jsonl")
    parser.add_argument("--render", action="store_true", help="Only rewrite the markdown.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.output.exists():
        done = {r["setting"]: r for r in map(json.loads, args.output.read_text().splitlines())}
    if not args.render:
        for setting in SETTINGS:
            if setting.label in done or (args.only and setting.label not in args.only):
                continue
            print(f"== {setting.label}", flush=True)
            row = run_setting(setting, args)
            row["command"] = command_line("benchmarks.signal_search", argv)
            row["machine"] = machine_info()
            with args.output.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            done[row["setting"]] = row
            print(
                f"   {row['groups_with_variance']}/{row['failures']} groups with variance, "
                f"retry success {row['retry_success']:.3f}, collect {row['collect_cpu_s']} "
                f"CPU-s, groups {row['group_cpu_s']} CPU-s",
                flush=True,
            )
    rows = list(done.values())
    if not rows:
        return
    header = (
        f"Command: `OMP_NUM_THREADS=1 {rows[0]['command']}`  \n"
        f"Machine: {machine_line(rows[0]['machine'])}"
    )
    markdown = args.output.with_suffix(".md")
    markdown.write_text(render(rows, header))
    print(markdown.read_text())


if __name__ == "__main__":
    main()
