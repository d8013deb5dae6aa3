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
   trainer's own rollout code (:func:`agents.reflection_rollout.reflect_and_retry`: both phases
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
from agents.grpo_reflect import GRPOReflectConfig
from agents.models import load_model_and_tokenizer
from agents.reflection_rollout import (
    EPISODE_OPTIONS,
    EpisodeReplayer,
    HFGenerator,
    reflect_and_retry,
    with_sampling,
)
from agents.rollout import SamplingParams
from benchmarks.common import RESULTS, command_line, cpu_name, machine_line
from benchmarks.common import machine_info as _machine_info

gym.register_envs(rrr_env)
MEASURED_CODE = [
    "agents/grpo_reflect.py",
    "agents/reflection_rollout.py",
    "benchmarks/signal_search.py",
]
PACKAGES = ["torch", "transformers", "trl", "gymnasium"]


def machine_info() -> dict[str, Any]:
    return _machine_info(MEASURED_CODE, PACKAGES)


EASY = {"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}
#: The pooled setting that ``python -m agents.grpo_reflect`` runs by default.
DEFAULT = "qwen2.5-coder-0.5b/countdown-n2-easy"


@dataclass(frozen=True)
class Setting:
    """One point of the search."""

    model: str
    env: str
    env_kwargs: dict[str, Any]
    name: str
    failures: int | None = None  # overrides --failures (slow models)
    temperature: float = 1.0  # of every phase, as TRL's --temperature sets it in training
    replicate: int = 0  # > 0: more failures (other items, other seed) for the same setting
    retry_temperature: float | None = None  # the trainer's --retry_temperature (None: same)
    solvable_only: bool = False  # failures only of queries solved by >= 1 sampled attempt
    samples_per_query: int | None = None  # overrides --samples-per-query
    reflection_max_tokens: int | None = None  # the trainer's --max_completion_length (None: 64)

    @property
    def label(self) -> str:
        suffix = "" if self.temperature == 1.0 else f"@T{self.temperature}"
        if self.retry_temperature is not None:
            suffix += f"+retryT{self.retry_temperature:g}"
        if self.solvable_only:
            suffix += f"+solvable{self.samples_per_query or ''}"
        if self.reflection_max_tokens is not None:
            suffix += f"+reflection{self.reflection_max_tokens}"
        replicate = f"#{self.replicate}" if self.replicate else ""
        return f"{self.model}/{self.name}{suffix}{replicate}"

    @property
    def pooled_label(self) -> str:
        return self.label.split("#")[0]


def _bfcl(category: str, fmt: str) -> dict[str, Any]:
    return {"category": category, "format": fmt}


#: rrr/Countdown-v1's held-out setting of the head-to-head: ~7,200 distinct train problems.
WIDE = {"num_count": 2, "number_range": [1, 99], "target_range": [1, 100]}

#: The setting where RISE-AWR learned on validation (issue 13): the base model solves 30%.
R50 = {"num_count": 2, "number_range": [1, 50], "target_range": [1, 100]}

# Most informative first, so that a run cut short still answers the question.
SETTINGS = [
    # The next setting's reflections ran into the 64-token limit in 87 of 96 groups' samples:
    # does twice the room make more of them change the retry's outcome?
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/Countdown-v1",
        {**R50, "retry_context": "reflection"},
        "countdown-v1-n2-r50+retry-from-reflection",
        12,
        temperature=0.7,
        retry_temperature=0.0,
        reflection_max_tokens=128,
    ),
    # 45 of 48 greedy retries copied the failed attempt (next setting): a retry that sees the
    # task and the reflection but not the attempt (the env's retry_context="reflection")
    # cannot copy it, so the reflection is all it learns from the failure.
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/Countdown-v1",
        {**R50, "retry_context": "reflection"},
        "countdown-v1-n2-r50+retry-from-reflection",
        12,
        temperature=0.7,
        retry_temperature=0.0,
    ),
    # Where RISE-AWR learned the answer's form: does a cooler reflection (T = 0.7) make the
    # greedy retry depend on it, despite the copying (109 of 140 greedy retries)?
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/Countdown-v1",
        R50,
        "countdown-v1-n2-r50",
        6,
        temperature=0.7,
        retry_temperature=0.0,
    ),
    # Lever (c) of issue 13: the bundled 1.5B model, which follows a reflection more often,
    # with greedy retries (reward = a function of the reflection) and sampled ones (T = 0.7).
    Setting(
        "qwen2.5-coder-1.5b",
        "rrr/Countdown-v1",
        WIDE,
        "countdown-v1-n2",
        6,
        retry_temperature=0.0,
    ),
    Setting(
        "qwen2.5-coder-1.5b",
        "rrr/Countdown-v1",
        WIDE,
        "countdown-v1-n2",
        6,
        retry_temperature=0.7,
    ),
    # Issue 13's levers: a greedy retry makes the reward a function of the reflection alone,
    # and failures of queries the model sometimes solves (sampled at T = 1, as in the paper's
    # dataset of up to 64 samples per query) are the ones a better reflection can fix.
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/Countdown-v0",
        EASY,
        "countdown-n2-easy",
        8,
        retry_temperature=0.0,
        solvable_only=True,
        samples_per_query=8,
    ),
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/Countdown-v0",
        EASY,
        "countdown-n2-easy",
        8,
        retry_temperature=0.0,
    ),
    # Reflections at T = 1 ramble (65% cut at the 128-token limit above): cooler ones.
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/Countdown-v0",
        EASY,
        "countdown-n2-easy",
        8,
        temperature=0.6,
        retry_temperature=0.0,
    ),
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
    # Lower temperature: more coherent reflections and retries from a small model.
    Setting(
        "qwen2.5-coder-0.5b", "rrr/Countdown-v0", EASY, "countdown-n2-easy", 4, temperature=0.7
    ),
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/BFCL-v0",
        _bfcl("simple_python", "strict"),
        "bfcl-simple-strict",
        4,
        temperature=0.7,
    ),
    # SmolLM2 cannot format a tool call (0/100 BFCL greedy): a couple of groups to confirm.
    Setting(
        "smollm2-135m",
        "rrr/BFCL-v0",
        _bfcl("simple_python", "lenient"),
        "bfcl-simple-lenient",
        failures=2,
    ),
    # More failures for the two settings that showed any signal.
    Setting("qwen2.5-coder-0.5b", "rrr/Countdown-v0", EASY, "countdown-n2-easy", 6, replicate=1),
    Setting(
        "qwen2.5-coder-0.5b",
        "rrr/BFCL-v0",
        _bfcl("simple_python", "strict"),
        "bfcl-simple-strict",
        6,
        replicate=1,
    ),
    # Qwen2.5-Coder-1.5B costs ~10x SmolLM2 per token: one group.
    Setting(
        "qwen2.5-coder-1.5b",
        "rrr/BFCL-v0",
        _bfcl("simple_python", "strict"),
        "bfcl-simple-strict",
        failures=1,
    ),
]


#: Settings the search skips, and why (rendered under the table).
NOT_MEASURED = [
    "SmolLM2-135M on harder Countdown (3 numbers, TinyZero's 3-4 numbers in 1..99): it solved "
    "0 of 24 sampled first attempts and 0 of 48 retries on the easiest setting (2 numbers in "
    "1..20), and greedy 0 of 50 first and second tries (agents.evaluate), so harder settings "
    "cannot have more signal.",
    "Qwen2.5-Coder-0.5B on 3-number Countdown and on BFCL `multiple`: skipped for time (the "
    "search took 48 CPU-minutes against a 20-minute budget); its easier settings had at most "
    "2 groups in 10 with variance.",
    "Qwen2.5-Coder-1.5B: one group only (140 CPU-s per group, 2.5x the 0.5B model).",
    "Qwen2.5-Coder-1.5B on countdown-v1-n2 with retries at T = 0.7: stopped for time once the "
    "greedy-retry setting had shown what limits this model on CPU budgets: 44 of 48 "
    "reflections ran into the 128-token limit and 47 of 48 retries into the 256-token limit "
    "without an answer (186 CPU-s per group).",
]


def defaults() -> GRPOReflectConfig:
    """The trainer's defaults, so that the search measures the configuration it selects."""
    return GRPOReflectConfig(output_dir="/tmp/signal_search", report_to="none")


def setting_config(setting: Setting) -> GRPOReflectConfig:
    """The trainer's defaults with the setting's token limits."""
    config = defaults()
    if setting.reflection_max_tokens is not None:
        config.max_completion_length = setting.reflection_max_tokens
    return config


def token_limits(setting: Setting) -> dict[str, int]:
    """The setting's token limits per phase (attempt, reflection, retry), as rows record them."""
    config = setting_config(setting)
    return {
        "attempt": config.attempt_max_tokens,
        "reflection": config.max_completion_length,
        "retry": config.retry_max_tokens,
    }


def make_env_factory(setting: Setting) -> Any:
    """Builds train-split envs with the trainer's episode options, as the trainer does."""
    options = {**setting.env_kwargs, **EPISODE_OPTIONS, "split": "train"}
    return lambda: gym.make(setting.env, **options)


def collect_setting_failures(
    setting: Setting,
    model: Any,
    tokenizer: Any,
    *,
    target: int,
    samples_per_query: int,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sample first attempts on train items until ``target`` usable failures are found.

    Returns:
        Every query's record (``agents.collect_failures``) and the failure rows (``prompt``,
        ``index``) of the first ``target`` usable queries.
    """
    from agents.backends import TransformersBackend

    config = setting_config(setting)
    make_env = make_env_factory(setting)
    backend = TransformersBackend(model, tokenizer, batch_size=64, seed=seed)
    attempt = SamplingParams(config.attempt_max_tokens, temperature=setting.temperature)
    records: list[dict[str, Any]] = []
    size = len(make_env().unwrapped.task)
    next_index = (1000 * setting.replicate) % size  # a replicate starts at other items

    def usable(record: dict[str, Any]) -> bool:
        return bool(record["failures"]) and (record["successes"] > 0 or not setting.solvable_only)

    while sum(map(usable, records)) < target and next_index < size:
        missing = target - sum(map(usable, records))
        width = max(4, 2 * missing) * (4 if setting.solvable_only else 1)
        chunk = list(range(next_index, min(size, next_index + width)))
        next_index = chunk[-1] + 1
        records += collect_query_records(
            make_env,
            backend,
            chunk,
            samples_per_query=samples_per_query,
            # Keep sampling after the first failure when successes are needed too.
            failures_per_query=samples_per_query if setting.solvable_only else 1,
            round_size=samples_per_query,
            sampling=attempt,
            seed=seed + chunk[0],
        )
        print(
            f"   collecting: {min(sum(map(usable, records)), target)}/{target} failures "
            f"from {len(records)} items",
            flush=True,
        )
    failed = [r for r in records if usable(r)][:target]
    rows = [{"prompt": r["failures"][0]["prompt"], "index": r["index"]} for r in failed]
    return records, rows


def roll_out_groups(
    setting: Setting,
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    *,
    group_size: int,
    seed: int,
) -> Any:
    """One group of ``group_size`` reflections and retries per failure row, as in training.

    Reflections are sampled at the setting's temperature, retries at its retry temperature;
    the env grades the retries. Returns the ``RolloutBatch`` (rows in order, groups adjacent).
    """
    config = setting_config(setting)
    eos = eos_token_ids(model, tokenizer)
    replayer = EpisodeReplayer(make_env_factory(setting), rows)
    generate = HFGenerator(
        model, sorted(eos), tokenizer.pad_token_id, temperature=setting.temperature
    )
    retry_generate = with_sampling(generate, setting.retry_temperature)
    prompts = [row["prompt"] for row in rows for _ in range(group_size)]
    torch.manual_seed(seed)
    print(f"   rolling out {len(rows)} groups of {group_size}", flush=True)
    return reflect_and_retry(
        prompts,
        replayer,
        generate,
        tokenizer,
        eos,
        reflection_max_tokens=config.max_completion_length,
        retry_max_tokens=config.retry_max_tokens,
        group_size=group_size,
        retry_generate=retry_generate,
    )


def run_setting(setting: Setting, args: argparse.Namespace) -> dict[str, Any]:
    """Collect failures and roll out one group per failure; return the record."""
    # bf16 where the CPU multiplies it in hardware, fp32 elsewhere (3.5x faster than bf16 on
    # an AVX2-only CPU: benchmarks/results/cpu_avx2/generation_speed.md).
    model, tokenizer = load_model_and_tokenizer(setting.model, dtype="auto")
    seed = args.seed + 7919 * setting.replicate
    samples_per_query = setting.samples_per_query or args.samples_per_query
    started = time.process_time()
    records, rows = collect_setting_failures(
        setting,
        model,
        tokenizer,
        target=setting.failures or args.failures,
        samples_per_query=samples_per_query,
        seed=seed,
    )
    collect_cpu = time.process_time() - started
    samples = sum(r["samples"] for r in records)
    successes = sum(r["successes"] for r in records)
    prompts = [row["prompt"] for row in rows for _ in range(args.group_size)]
    started = time.process_time()
    batch = roll_out_groups(setting, model, tokenizer, rows, group_size=args.group_size, seed=seed)
    group_cpu = time.process_time() - started
    groups = [
        batch.rewards[g * args.group_size : (g + 1) * args.group_size] for g in range(len(rows))
    ]
    with_variance = sum(0 < sum(g) < len(g) for g in groups)
    generated = sum(map(len, batch.reflection_ids)) + sum(map(len, batch.retry_ids))
    return {
        "setting": setting.label,
        "pooled_setting": setting.pooled_label,
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
        "token_limits": token_limits(setting),
        "example": {
            "reflection": batch.reflections[0] if prompts else None,
            "retry": batch.retries[0] if prompts else None,
        },
        "temperature": setting.temperature,
        "retry_temperature": setting.retry_temperature,
        "solvable_only": setting.solvable_only,
        "samples_per_query": samples_per_query,
        # Retries that repeat the failed attempt word for word (the 0.5B model's habit).
        "retry_copies_attempt": sum(
            retry.strip() == prompt[-2]["content"].strip()
            for prompt, retry in zip(prompts, batch.retries, strict=True)
        ),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(model.dtype).removeprefix("torch."),
    }


def _count(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _copies(row: dict[str, Any]) -> str:
    if "retry_copies_attempt" not in row:
        return "-"  # not recorded by earlier runs
    return f"{row['retry_copies_attempt']}/{row['failures'] * row['group_size']}"


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
        "A group = 8 sampled reflections (temperature 1 unless the setting says @T) on one "
        "failure, each followed by a "
        "sampled retry graded by the env. Signal = the group's rewards differ (some retries "
        "right, some wrong); only such groups give GRPO a gradient. Token limits (attempt / "
        "reflection / retry) are the trainer's defaults when the row was measured, unless the "
        "setting says +reflectionN.",
        "",
        "| setting | 1st-try pass (sampled) | failures | groups with variance | retry success | "
        "signal groups / CPU-min | rollout CPU-s / group | collect CPU-s / failure | "
        "retries copying the attempt | token limits | CPU, dtype |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (-signal_per_cpu_minute(r), r["setting"])):
        failures = max(row["failures"], 1)
        lines.append(
            f"| {row['setting']} {json.dumps(row['env_kwargs'])} | "
            f"{row['first_attempt_successes']}/{row['first_attempts']} | {row['failures']} | "
            f"{row['groups_with_variance']}/{row['failures']} | {row['retry_success']:.3f} | "
            f"{signal_per_cpu_minute(row):.2f} | {row['group_cpu_s'] / failures:.1f} | "
            f"{row['collect_cpu_s'] / failures:.1f} | "
            f"{_copies(row)} | {'/'.join(map(str, row['token_limits'].values()))} | "
            f"{cpu_name(row['machine'])}, {row.get('dtype', 'bfloat16')} |"
        )
    pooled: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row.get("pooled_setting", row["setting"].split("#")[0])
        entry = pooled.setdefault(key, {"groups": 0, "variance": 0, "cpu": 0.0, "wins": 0.0})
        entry["groups"] += row["failures"]
        entry["variance"] += row["groups_with_variance"]
        entry["cpu"] += row["group_cpu_s"]
        entry["wins"] += row["retry_success"] * row["failures"] * row["group_size"]
    lines += [
        "",
        "Replicates pooled (same setting, other items and seeds):",
        "",
        "| setting | groups with variance | retries correct | signal groups / CPU-min |",
        "|---|---|---|---|",
    ]
    for key, entry in sorted(pooled.items(), key=lambda kv: -kv[1]["variance"] / kv[1]["cpu"]):
        retries = entry["groups"] * rows[0]["group_size"]
        lines.append(
            f"| {key} | {entry['variance']}/{entry['groups']} | {round(entry['wins'])}/{retries} "
            f"| {60 * entry['variance'] / entry['cpu']:.2f} |"
        )
    best_key, best = max(pooled.items(), key=lambda kv: kv[1]["variance"] / kv[1]["cpu"])
    retries = best["groups"] * rows[0]["group_size"]
    lines += [
        "",
        f"Most signal per CPU-second: **{best_key}**: {best['variance']} of {best['groups']} "
        f"groups with reward variance, {round(best['wins'])} of {retries} retries correct, "
        f"{60 * best['variance'] / best['cpu']:.2f} signal groups per CPU-minute of rollouts"
        + (" (the default of `python -m agents.grpo_reflect`)." if best_key == DEFAULT else ".")
        + f" Even there {best['groups'] - best['variance']} of {best['groups']} groups give "
        "GRPO no gradient; settings with 0 groups have no usable signal at all.",
    ]
    top = max(entry["variance"] / entry["groups"] for entry in pooled.values())
    shares = [(k, e) for k, e in pooled.items() if e["variance"] / e["groups"] == top]
    if best_key not in dict(shares):
        named = "; ".join(
            f"**{key}**, {entry['variance']} of {entry['groups']}" for key, entry in shares
        )
        lines += [
            "",
            f"Largest share of groups with variance: {named}. The share does not depend on "
            "the CPU; CPU-seconds do (the "
            "CPU column: without bf16 units the model generates in fp32, ~6x slower than in "
            "bf16 on a CPU with AVX-512 BF16).",
        ]
    total = sum(r["collect_cpu_s"] + r["group_cpu_s"] for r in rows)
    lines += ["", f"Total CPU time: {total / 60:.1f} min.", "", "Not measured:", ""]
    lines += [f"- {note}" for note in NOT_MEASURED]
    lines.append("")
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
