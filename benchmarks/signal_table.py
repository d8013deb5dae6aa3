"""Learning signal of RRR-GRPO on the shortcut-free preset: which model, retry and group size.

    python -m benchmarks.signal_table                        # every row; resumes after a kill
    python -m benchmarks.signal_table --models qwen2.5-coder-0.5b --failures 4
    python -m benchmarks.signal_table --render               # only rewrite the report
    python -m benchmarks.signal_table --models qwen2.5-coder-1.5b --contexts reflection \
        --retry-temperatures 0                               # greedy retries: more rows

GRPO learns only from groups whose rewards differ: some sampled reflections lead to a correct
retry and some do not. For each model this script, on ``rrr/Countdown3-NoFixedForms-v1``'s
validation split (settings are chosen on validation; the test split is for final numbers):

1. collects ``--failures`` failures as the trainer does: first attempts sampled at
   temperature 1 (``--attempt-tokens``), the first failure of each query kept;
2. for each retry context (the retry sees the whole conversation, or only the task and the
   reflection: the env's ``retry_context``), samples ``--group-size`` (16) reflections
   (``--reflection-tokens``) and one retry each (``--retry-tokens``) per failure with the
   trainer's rollout code (:func:`agents.reflection_rollout.reflect_and_retry`, reflections
   at temperature 1, retries at each of ``--retry-temperatures``: 1 samples them as the
   trainer does by default, 0 is greedy as in evaluation and makes the reward a function of
   the reflection alone), and the env grades the retries.

The same failures serve both retry contexts (a paired comparison), and each group of 16 also
counts as two groups of 8 (its halves), so that one rollout answers both group sizes. The
signal rate is groups with reward variance per CPU-minute of group rollouts, the cost that
recurs at every training step (``time.process_time``: every thread of the process, the
engine's included). One JSON line per chunk of failures goes to
``benchmarks/results/signal_table/rows.jsonl`` (a rerun skips finished chunks), the report to
``signal_table/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import rrr_env
from agents.backends import eos_token_ids
from agents.collect_failures import collect_query_records
from agents.engines import ENGINES, EngineGenerator, check_engine, make_backend, make_engine
from agents.grpo_reflect_config import TRUNCATED_REFLECTIONS, TRUNCATION_PENALTY
from agents.reflection_rollout import (
    EPISODE_OPTIONS,
    EpisodeReplayer,
    HFGenerator,
    groups_without_gradient,
    reflect_and_retry,
    trained_rewards,
    with_sampling,
)
from agents.rollout import SamplingParams
from benchmarks.common import RESULTS, command_line, machine_line, write_row
from benchmarks.common import machine_info as _machine_info
from benchmarks.common import read_rows as _read_rows

gym.register_envs(rrr_env)

OUT = RESULTS / "signal_table"
ENV_ID = "rrr/Countdown3-NoFixedForms-v1"
MODELS = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")
CONTEXTS = ("reflection", "conversation")
MEASURED_CODE = ["agents/reflection_rollout.py", "agents/engines", "benchmarks/signal_table.py"]
PACKAGES = ["torch", "transformers", "openvino-genai", "gymnasium"]


#: What reading the episodes showed (rendered under the table; update with the rows).
NOTES = [
    "Read: the 16 example episodes of the 1.5B rows (`examples` in rows.jsonl) and the eight "
    'failed attempts. Reflections are mostly generic ("pay close attention", "break it '
    'down"); a few restart the solution inside the reflection. Half of the retries reason '
    "until the 512-token limit (`no_answer`), most of the rest use numbers not given "
    "(`wrong_numbers`).",
    "The 1.5B signal sits in 2 of the 8 failures (items 1 and 8), in both retry contexts: with "
    "8 failures, 4 against 3 correct retries does not separate the contexts. What does is the "
    "cost: a retry from the reflection sees a shorter prompt (13.7 against 17.7 CPU-s per "
    "rollout).",
    "Qwen2.5-Coder-0.5B has no signal here: 0 of 8 sampled first attempts and 0 of 256 "
    "retries correct.",
    "At 0.10 signal groups per CPU-minute (1.5 CPU-s per wall second here: ~0.15 per wall "
    "minute), a 120-minute run trains on at most ~18 groups with reward variance (fewer: "
    "scoring and backward passes take time too).",
    "Greedy retries (retry T = 0; the same failures and, seed for seed, the same sampled "
    "reflections, checked by their lengths and texts): 9 of 128 retries correct against 4 of "
    "128 at T = 1, 5 of 16 groups of 8 with signal against 3, 0.17 signal groups per "
    "CPU-minute against 0.10. Item 1: the two reflections whose sampled retry was right are "
    "right greedily too, and two more; item 8: four others are (not its two sampled "
    "successes); item 2 gains one. Greedy retries also match the evaluation, which retries "
    "greedily, and make the reward a function of the reflection alone, so the RRR runs retry "
    "greedily (`--rrr-retry-temperature 0`). Eight failures rank the two settings; they do "
    "not measure the gap.",
    "Cut reflections (second table), 1.5B, retry from the reflection, groups of 8: retries "
    "after a cut reflection succeed no less often (2 of 41) than after a complete one (2 of "
    "87). `mask` would drop 2 of the 4 correct retries from the update; `penalize` gives 14 "
    "of 16 groups a gradient, 11 of them from the length penalty alone, so most of its update "
    "would teach shorter reflections, not correct retries. The RRR runs therefore keep the "
    "default `keep`. This compares what each rule leaves to train on, not trained models.",
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; every value is checked before a model loads."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.signal_table", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--contexts", nargs="+", default=list(CONTEXTS), choices=CONTEXTS)
    parser.add_argument("--failures", type=int, default=8, help="Failures per model.")
    parser.add_argument("--group-size", type=int, default=16, help="Even: halves count too.")
    parser.add_argument("--attempt-tokens", type=int, default=512)
    parser.add_argument("--reflection-tokens", type=int, default=256)
    parser.add_argument("--retry-tokens", type=int, default=512)
    parser.add_argument(
        "--retry-temperatures",
        nargs="+",
        type=float,
        default=[1.0],
        help="Retry sampling temperatures, each its own rows (0: greedy).",
    )
    parser.add_argument("--chunk", type=int, default=4, help="Failures per rollout call.")
    parser.add_argument("--engine", default="openvino", help=f"One of {', '.join(ENGINES)}.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--render", action="store_true", help="Only rewrite the report.")
    args = parser.parse_args(argv)
    try:
        check_engine(args.engine)
    except ValueError as error:
        parser.error(str(error))
    from agents.models import BUNDLED_MODELS

    for model in args.models:
        if model not in BUNDLED_MODELS:
            parser.error(f"--models: unknown bundled model {model!r}")
    for name in ("failures", "attempt_tokens", "reflection_tokens", "retry_tokens", "chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(not t >= 0 for t in args.retry_temperatures):
        parser.error("--retry-temperatures must be >= 0")
    if args.group_size < 2 or args.group_size % 2:
        parser.error("--group-size must be an even number of at least 2")
    return args


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSONL file's rows; none where it does not exist yet."""
    return _read_rows(path) if path.exists() else []


def retry_temperature(row: dict[str, Any]) -> float:
    """The row's retry temperature (rows from before the option sampled at 1)."""
    return float(row.get("retry_temperature", 1.0))


def make_env_factory(context: str) -> Any:
    """Validation-split envs with the trainer's episode options and the retry context."""
    options = {**EPISODE_OPTIONS, "split": "validation", "retry_context": context}
    return lambda: gym.make(ENV_ID, **options)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What identifies a measurement: a rerun with other values starts other rows."""
    return {
        "env": ENV_ID,
        "split": "validation",
        "group_size": args.group_size,
        "attempt_tokens": args.attempt_tokens,
        "reflection_tokens": args.reflection_tokens,
        "retry_tokens": args.retry_tokens,
        "engine": args.engine,
        "seed": args.seed,
    }


def collect(
    model_name: str, backend: Any, args: argparse.Namespace, path: Path
) -> list[dict[str, Any]]:
    """The model's failures (one per failed query, in index order), saved once and reused."""
    if path.exists():
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    make_env = make_env_factory("conversation")
    size = len(make_env().unwrapped.task)
    attempt = SamplingParams(args.attempt_tokens, temperature=1.0)
    records: list[dict[str, Any]] = []
    next_index, started = 0, time.process_time()
    while sum(bool(r["failures"]) for r in records) < args.failures and next_index < size:
        chunk = list(range(next_index, min(size, next_index + args.failures)))
        next_index = chunk[-1] + 1
        records += collect_query_records(
            make_env,
            backend,
            chunk,
            samples_per_query=1,
            failures_per_query=1,
            round_size=1,
            sampling=attempt,
            seed=args.seed + chunk[0],
        )
        found = sum(bool(r["failures"]) for r in records)
        print(f"   {model_name}: {found} failures from {len(records)} queries", flush=True)
    cpu = time.process_time() - started
    failed = [r for r in records if r["failures"]][: args.failures]
    rows = [
        {
            "index": r["index"],
            "prompt": r["failures"][0]["prompt"],
            "attempt": r["failures"][0]["attempt"],
            "reason": r["failures"][0]["reason"],
            # Shared by the file's rows: the collection's totals.
            "queries": len(records),
            "successes": sum(x["successes"] for x in records),
            "collect_cpu_s": round(cpu, 1),
        }
        for r in failed
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def roll_out(
    failures: Sequence[dict[str, Any]],
    context: str,
    generate: Any,
    tokenizer: Any,
    eos: set[int],
    args: argparse.Namespace,
    retry_generate: Any = None,
) -> list[dict[str, Any]]:
    """One group per failure; one result row per failure, CPU time split evenly.

    ``retry_generate`` samples the retries (default: ``generate``, as the trainer does).
    """
    replayer = EpisodeReplayer(make_env_factory(context), failures)
    prompts = [row["prompt"] for row in failures for _ in range(args.group_size)]
    cpu, wall = time.process_time(), time.perf_counter()
    batch = reflect_and_retry(
        prompts,
        replayer,
        generate,
        tokenizer,
        eos,
        reflection_max_tokens=args.reflection_tokens,
        retry_max_tokens=args.retry_tokens,
        group_size=args.group_size,
        retry_generate=retry_generate,
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rows = []
    for g, failure in enumerate(failures):
        part = slice(g * args.group_size, (g + 1) * args.group_size)
        rows.append(
            {
                "index": failure["index"],
                "rewards": batch.rewards[part],
                "reasons": batch.reasons[part],
                "reflection_stopped": batch.reflection_stopped[part],
                "reflection_tokens": [len(ids) for ids in batch.reflection_ids[part]],
                "retry_tokens": [len(ids) for ids in batch.retry_ids[part]],
                "cpu_s": round(cpu / len(failures), 1),
                "wall_s": round(wall / len(failures), 1),
                # Two episodes per group to read: the first, and the first rewarded one.
                "examples": [
                    {
                        "reflection": batch.reflections[k],
                        "retry": batch.retries[k],
                        "reward": batch.rewards[k],
                    }
                    for k in sorted(
                        {part.start}
                        | {k for k in range(part.start, part.stop) if batch.rewards[k] > 0}
                    )[:2]
                ],
            }
        )
    return rows


def measure(args: argparse.Namespace, command: str) -> None:
    """Every (model, retry context) row not yet in the results, chunk by chunk."""
    from agents.models import load_model_and_tokenizer

    results = args.out_dir / "rows.jsonl"
    settings = settings_of(args)
    done = {
        (r["model"], r["context"], retry_temperature(r), r["index"])
        for r in read_rows(results)
        if r["settings"] == settings
    }
    cells = [(c, t) for c in args.contexts for t in args.retry_temperatures]
    machine = _machine_info(MEASURED_CODE, PACKAGES)
    for model_name in args.models:
        failures_path = args.out_dir / f"failures-{model_name}-seed{args.seed}.jsonl"
        if failures_path.exists():
            failures = collect(model_name, None, args, failures_path)
            if all((model_name, c, t, f["index"]) in done for c, t in cells for f in failures):
                continue
        print(f"== {model_name}", flush=True)
        torch.manual_seed(args.seed)
        model, tokenizer = load_model_and_tokenizer(model_name, dtype="auto")
        model.eval()
        eos = eos_token_ids(model, tokenizer)
        engine = None if args.engine == "torch" else make_engine(args.engine, model, tokenizer)
        if engine is None:
            backend = make_backend("torch", model, tokenizer, batch_size=32, seed=args.seed)
            generate: Any = HFGenerator(model, sorted(eos), tokenizer.pad_token_id)
        else:
            from agents.engines import EngineBackend

            backend = EngineBackend(engine, tokenizer, seed=args.seed)
            generate = EngineGenerator(engine, seed=args.seed + 1)
        failures = collect(model_name, backend, args, failures_path)
        with results.open("a") as handle:
            for context, temperature in cells:
                key = (model_name, context, temperature)
                todo = [f for f in failures if (*key, f["index"]) not in done]
                retry = None if temperature == 1.0 else with_sampling(generate, temperature, 1.0)
                for start in range(0, len(todo), args.chunk):
                    chunk = todo[start : start + args.chunk]
                    print(
                        f"   {model_name} / retry from the {context} at T = {temperature:g}: "
                        f"failures {start + 1}-{start + len(chunk)} of {len(todo)}",
                        flush=True,
                    )
                    for row in roll_out(chunk, context, generate, tokenizer, eos, args, retry):
                        write_row(
                            handle,
                            {
                                "model": model_name,
                                "context": context,
                                "retry_temperature": temperature,
                                "settings": settings,
                                "command": command,
                                **row,
                                "dtype": str(model.dtype).removeprefix("torch."),
                                "machine": machine,
                            },
                        )
        del model, engine, backend, generate


def _has_variance(rewards: Sequence[float]) -> bool:
    return len(set(rewards)) > 1


def summarize(rows: Sequence[dict[str, Any]], failures: Sequence[dict[str, Any]]) -> dict:
    """One (model, context) cell of the table."""
    n = len(rows[0]["rewards"])
    halves = [r["rewards"][: n // 2] for r in rows] + [r["rewards"][n // 2 :] for r in rows]
    cpu = sum(r["cpu_s"] for r in rows)
    rollouts = len(rows) * n
    per_rollout = cpu / rollouts
    full = sum(_has_variance(r["rewards"]) for r in rows)
    half = sum(map(_has_variance, halves))
    reasons = [x for r in rows for x in r["reasons"]]
    stopped = [x for r in rows for x in r["reflection_stopped"]]
    return {
        "failures": len(rows),
        "first_try": (failures[0]["successes"], failures[0]["queries"]) if failures else None,
        "group_size": n,
        "full": full,
        "half": half,
        "halves": len(halves),
        "retry_success": sum(sum(r["rewards"]) for r in rows) / rollouts,
        "reflection_cut": 1 - sum(stopped) / len(stopped),
        "retry_no_answer": sum(x == "no_answer" for x in reasons) / len(reasons),
        "cpu_per_rollout": per_rollout,
        "wall_per_rollout": sum(r["wall_s"] for r in rows) / rollouts,
        # Signal groups per CPU-minute: a group of k costs k rollouts.
        "rate_full": 60 * full / (len(rows) * n * per_rollout),
        "rate_half": 60 * half / (len(halves) * (n // 2) * per_rollout),
        "fixable": sum(any(r["rewards"]) for r in rows),
        "median_reflection_tokens": statistics.median(
            x for r in rows for x in r["reflection_tokens"]
        ),
    }


def truncation_rules(rows: Sequence[dict[str, Any]], group_size: int) -> dict[str, Any]:
    """What each rule for cut reflections (the trainer's ``--truncated_reflections``) leaves.

    Over the groups of ``group_size`` in ``rows`` (each row's rollouts split in order), per
    rule: groups with a gradient (:func:`agents.reflection_rollout.groups_without_gradient`),
    those among them with no correct retry (a gradient from the length penalty alone), and the
    correct retries that the update reinforces (above their group's mean trained reward, and
    carrying loss: under ``mask`` a cut reflection carries none). Also the retry success
    after complete and after cut reflections.
    """
    rewards = [x for r in rows for x in r["rewards"]]
    stopped = [x for r in rows for x in r["reflection_stopped"]]
    groups = len(rewards) // group_size
    pairs = list(zip(rewards, stopped, strict=True))
    out: dict[str, Any] = {
        "groups": groups,
        "after_complete": (sum(r for r, s in pairs if s), sum(stopped)),
        "after_cut": (sum(r for r, s in pairs if not s), stopped.count(False)),
    }
    for rule in TRUNCATED_REFLECTIONS:
        trained = trained_rewards(rewards, stopped, rule, TRUNCATION_PENALTY)
        without = set(
            groups_without_gradient(rewards, stopped, group_size, rule, TRUNCATION_PENALTY)
        )
        with_gradient = [g for g in range(groups) if g not in without]
        reinforced = 0
        for g in with_gradient:
            span = range(g * group_size, (g + 1) * group_size)
            mean = sum(trained[k] for k in span) / group_size
            reinforced += sum(
                rewards[k] > 0 and trained[k] > mean and (rule != "mask" or stopped[k])
                for k in span
            )
        out[rule] = {
            "with_gradient": len(with_gradient),
            "penalty_only": sum(
                not any(rewards[g * group_size : (g + 1) * group_size]) for g in with_gradient
            ),
            "reinforced": reinforced,
        }
    return out


def truncation_lines(
    cells: dict[tuple[str, str, float], list[dict[str, Any]]], group_size: int
) -> list[str]:
    """The report's table of what each rule for cut reflections leaves to train on."""
    lines = [
        "## Cut reflections: what each rule leaves to train on",
        "",
        "The trainer's `--truncated_reflections`: `keep` trains a cut reflection as any other, "
        "`mask` takes its tokens out of the loss, `penalize` lowers its reward by "
        f"{TRUNCATION_PENALTY:g}. Counted on the rollouts above, with the trainer's own rules "
        "(`agents.reflection_rollout.groups_without_gradient`): groups with a gradient, of "
        "them those with no correct retry (a gradient from the length penalty alone), and the "
        "correct retries the update reinforces (above their group's mean trained reward, with "
        "their tokens in the loss).",
        "",
        "| model | retry from | retry T | group | retry success after complete / cut reflections | "
        "groups with gradient: keep / mask / penalize | of them penalty only (penalize) | "
        "correct retries reinforced: keep / mask / penalize |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (model, context, temperature), cell in cells.items():
        for size in (group_size // 2, group_size):
            t = truncation_rules(cell, size)
            done, cut = t["after_complete"], t["after_cut"]
            gradient = " / ".join(f"{t[r]['with_gradient']}" for r in TRUNCATED_REFLECTIONS)
            reinforced = " / ".join(f"{t[r]['reinforced']}" for r in TRUNCATED_REFLECTIONS)
            lines.append(
                f"| {model} | {context} | {temperature:g} | {size} | "
                f"{done[0]:g}/{done[1]} / {cut[0]:g}/{cut[1]} | "
                f"{gradient} (of {t['groups']}) | {t['penalize']['penalty_only']} | "
                f"{reinforced} |"
            )
    return lines


def render(out_dir: Path) -> str:
    """The report: one row per (model, retry context, group size), best rate first."""
    rows = read_rows(out_dir / "rows.jsonl")
    if not rows:
        return "# RRR-GRPO signal on the shortcut-free preset\n\nNo rows yet.\n"
    settings = rows[-1]["settings"]
    rows = [r for r in rows if r["settings"] == settings]
    cells: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["model"], row["context"], retry_temperature(row)), []).append(row)
    lines = [
        "# RRR-GRPO signal on the shortcut-free preset",
        "",
        f"Command: `{rows[-1].get('command', 'python -m benchmarks.signal_table')}`  ",
        f"Machine: {machine_line(rows[-1]['machine'])}  ",
        f"Settings: {json.dumps(settings)}",
        "",
        f"Each failure (a first attempt sampled at T = 1 on `{settings['env']}`'s "
        f"{settings['split']} split, {settings['attempt_tokens']}-token answers) gets "
        f"{settings['group_size']} reflections ({settings['reflection_tokens']} tokens, sampled "
        f"at T = 1) and one retry each ({settings['retry_tokens']} tokens, at the row's retry "
        "T: 1 as the trainer samples by default, 0 greedy as in evaluation); the env grades "
        "the retries. A group has signal when its rewards differ: only those give GRPO a "
        f"gradient. Groups of {settings['group_size'] // 2} are the halves of each group. "
        "Retry from the *reflection*: the retry sees the task and the reflection only "
        '(`retry_context="reflection"`); from the *conversation*: the whole episode. '
        "CPU time is the process's (every thread, the generation engine's included), "
        f"engine `{settings['engine']}`.",
        "",
        "| model | retry from | retry T | group | groups with signal | signal groups / CPU-min | "
        "retry success | failures fixed by >= 1 retry | reflections cut | retries without "
        "answer | CPU-s / rollout | wall-s / rollout | 1st try (sampled) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    table = []
    for (model, context, temperature), cell in cells.items():
        path = out_dir / f"failures-{model}-seed{settings['seed']}.jsonl"
        failures = read_rows(path) if path.exists() else []
        s = summarize(cell, failures)
        first = f"{s['first_try'][0]}/{s['first_try'][1]}" if s["first_try"] else "-"
        common = (
            f"{s['retry_success']:.3f} | {s['fixable']}/{s['failures']} | "
            f"{s['reflection_cut']:.0%} | {s['retry_no_answer']:.0%} | "
            f"{s['cpu_per_rollout']:.1f} | {s['wall_per_rollout']:.1f} | {first}"
        )
        table.append(
            (
                s["rate_full"],
                f"| {model} | {context} | {temperature:g} | {s['group_size']} | "
                f"{s['full']}/{s['failures']} | {s['rate_full']:.2f} | {common} |",
            )
        )
        table.append(
            (
                s["rate_half"],
                f"| {model} | {context} | {temperature:g} | {s['group_size'] // 2} | "
                f"{s['half']}/{s['halves']} | {s['rate_half']:.2f} | {common} |",
            )
        )
    ranked = sorted(table, key=lambda t: -t[0])
    lines += [line for _, line in ranked]
    best = ranked[0][1].split("|")
    lines += [
        "",
        f"Most signal per CPU-minute: **{best[1].strip()}**, retry from the {best[2].strip()} "
        f"at T = {best[3].strip()}, groups of {best[4].strip()}: {best[5].strip()} groups with "
        f"reward variance, {best[6].strip()} signal groups per CPU-minute of rollouts.",
    ]
    lines += ["", *truncation_lines(cells, settings["group_size"])]
    total = sum(r["cpu_s"] for r in rows)
    lines += ["", f"Rollout CPU time in all: {total / 60:.1f} min.", ""]
    lines += [f"- {note}" for note in NOTES] + [""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure what is missing (unless ``--render``), then write the report."""
    args = parse_args(argv)
    if not args.render:
        typed = sys.argv[1:] if argv is None else argv
        measure(args, command_line("benchmarks.signal_table", typed))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = render(args.out_dir)
    (args.out_dir / "README.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
