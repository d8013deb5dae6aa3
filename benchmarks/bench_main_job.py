"""Wall time and peak memory of the main job, ``python -m agents.grpo_reflect``.

    python -m benchmarks.bench_main_job                    # the no-argument run (CPU recipe)
    python -m benchmarks.bench_main_job --baseline         # also the paper's full fine-tune
    python -m benchmarks.bench_main_job --render           # only rewrite the markdown

Each run is its own process, started exactly as a user types it (plus ``--output_dir`` into a
fresh temporary folder, so that no earlier run's failures or evaluations are reused). Wall time
is measured around the process; peak memory is its peak resident set size
(``ru_maxrss`` of that child, from ``os.wait4``). The baseline is the same
command with ``--cpu_recipe false``: the paper's full fine-tune at learning rate 5e-7, with
its AdamW state and reference-model copy. One JSON line per run goes to
``benchmarks/results/main_job.jsonl`` (appended, so a killed run keeps the finished rows),
the table to ``main_job.md``, with what each optimizer step of the latest run changed (from
the run's ``result.json``). Goal (issues 13 and 25): at most 6 minutes and 8 GB on a 2-core CPU,
and every optimizer step a real update (not skipped, learning rate and gradient norm above 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine_line, read_rows, write_row
from benchmarks.common import machine_info as _machine_info

MEASURED_CODE = [
    "agents/grpo_reflect.py",
    "agents/grpo_rollout.py",
    "agents/grpo_callbacks.py",
    "agents/grpo_reflect_config.py",
    "agents/screen_failures.py",
    "agents/data/screened",
    "agents/reflection_rollout.py",
    "agents/evaluate.py",
    "agents/backends.py",
    "agents/models.py",
    "agents/sampling.py",
]
PACKAGES = ["torch", "transformers", "trl", "peft"]
GOAL_MINUTES, GOAL_GB = 6.0, 8.0
RUNS = {"default": [], "paper recipe (--cpu_recipe false)": ["--cpu_recipe", "false"]}


def measure(extra: Sequence[str]) -> dict[str, Any]:
    """Run the main job once with ``extra`` options; its wall time, peak RSS and output."""
    with tempfile.TemporaryDirectory(prefix="main_job_") as tmp:
        argv = [sys.executable, "-m", "agents.grpo_reflect", *extra, "--output_dir", tmp]
        out, err = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
        started = time.perf_counter()
        with out.open("w") as stdout, err.open("w") as stderr:
            child = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
            # wait4: this child's own peak RSS (RUSAGE_CHILDREN would be the max over all).
            _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        code = child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4
        printed, errors = out.read_text(), err.read_text()
        result = Path(tmp) / "result.json"
        summary = json.loads(result.read_text()) if result.exists() else {}
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{errors[-3000:]}")
    peak_kib = usage.ru_maxrss
    table = printed[printed.find("| model |") :].strip()
    return {
        "options": list(extra),
        "wall_seconds": round(seconds, 1),
        "peak_rss_gb": round(peak_kib * 1024 / 1e9, 2),
        "steps": summary.get("steps"),
        "train_seconds": summary.get("train_seconds"),
        "collect_seconds": summary.get("collect_seconds"),
        "eval_seconds": [(summary.get(name) or {}).get("seconds") for name in ("before", "after")],
        "failures_source": summary.get("failures_source"),
        "step_changes": summary.get("step_changes"),
        "table": table,
    }


def updated(row: dict[str, Any]) -> str:
    """Whether every optimizer step of a run moved the weights: ``yes``, ``no`` or ``-``.

    A step updated when it was not skipped, its learning rate and gradient norm were above 0
    and the trainable weights changed. Rows measured before the trainer reported its steps
    (``step_changes``) say ``-``.
    """
    steps = row.get("step_changes")
    if not steps:
        return "-"
    real = [
        not s["skipped"]
        and (s["learning_rate"] or 0) > 0
        and (s["grad_norm"] or 0) > 0
        and (s["weight_change"] is None or s["weight_change"] > 0)
        for s in steps
    ]
    return f"{'yes' if all(real) else 'no'} ({sum(real)}/{len(real)})"


def step_lines(row: dict[str, Any]) -> list[str]:
    """One line per optimizer step of a run: groups with variance, loss, grad norm, lr."""
    lines = []
    for s in row.get("step_changes") or []:
        change = "-" if s["weight_change"] is None else f"{s['weight_change']:.2e}"
        lines.append(
            f"| {s['step']} | {s['groups_with_variance']}/{s['groups']} | "
            f"{_num(s['loss'])} | {_num(s['grad_norm'])} | {_num(s['learning_rate'])} | "
            f"{change} | {'yes' if s['skipped'] else 'no'} | {_num(s.get('seconds'))} |"
        )
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def render(rows: list[dict[str, Any]]) -> str:
    """The markdown report: one line per run, the goal, and the latest run's output."""
    lines = [
        "# The main job: `python -m agents.grpo_reflect`",
        "",
        "Command: `python -m benchmarks.bench_main_job` (`--baseline` adds the paper's recipe)",
        "",
        f"Goal (issues 13 and 25): at most {GOAL_MINUTES:g} minutes and {GOAL_GB:g} GB peak RSS "
        "on a 2-core CPU, and every optimizer step a real update. Wall time covers the whole "
        "process (model load, collection or the bundled screened failures, evaluation before "
        "and after, training).",
        "",
        "Every step updated: no step skipped, and each had a learning rate and a gradient norm "
        "above 0 and moved the trainable weights (rows before that was reported: -).",
        "",
        "| run | wall time | peak RSS | steps | every step updated | failures | collect s | "
        "train s (incl. collect) | eval s (before, after) | goal met | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = next((k for k, v in RUNS.items() if v == row["options"]), " ".join(row["options"]))
        minutes = row["wall_seconds"] / 60
        every = updated(row)
        met = minutes <= GOAL_MINUTES and row["peak_rss_gb"] <= GOAL_GB
        met = met and not every.startswith("no")
        evals = ", ".join("-" if s is None else f"{s:.0f}" for s in row["eval_seconds"])
        lines.append(
            f"| {name} | {minutes:.1f} min | {row['peak_rss_gb']:.1f} GB | {row['steps']} | "
            f"{every} | {_source(row)} | "
            f"{row['collect_seconds'] or 0:.0f} | {row['train_seconds'] or 0:.0f} | {evals} | "
            f"{'yes' if met else 'no'} | {machine_line(row['machine'])} |"
        )
    if rows:
        latest = rows[-1]
        if latest.get("step_changes"):
            lines += [
                "",
                "What each optimizer step of the latest run changed (weight change: "
                "||W_after - W_before|| / ||W_before|| over the trainable weights):",
                "",
                "| step | groups with reward variance | loss | grad norm | learning rate | "
                "weight change | skipped | step s |",
                "|---|---|---|---|---|---|---|---|",
                *step_lines(latest),
            ]
        lines += ["", "Output of the latest run:", "", latest["table"]]
    return "\n".join(lines) + "\n"


def _source(row: dict[str, Any]) -> str:
    """Where a run's failures came from: the bundled screened file's name, or collected."""
    source = row.get("failures_source")
    if source is None:
        return "collected" if (row.get("collect_seconds") or 0) > 1 else "-"
    return source


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the runs asked for (or only render), append rows, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", action="store_true", help="also --cpu_recipe false")
    parser.add_argument("--render", action="store_true", help="only rewrite the markdown")
    parser.add_argument("--output", type=Path, default=RESULTS / "main_job.jsonl")
    args = parser.parse_args(argv)
    if not args.render:
        names = ["default", *(["paper recipe (--cpu_recipe false)"] if args.baseline else [])]
        for name in names:
            print(f"running the main job: {name} ...", flush=True)
            row = {**measure(RUNS[name]), "machine": _machine_info(MEASURED_CODE, PACKAGES)}
            row["torch_threads_env"] = os.environ.get("OMP_NUM_THREADS")
            with args.output.open("a") as handle:
                write_row(handle, row)
            print(f"  {row['wall_seconds'] / 60:.1f} min, {row['peak_rss_gb']:.1f} GB", flush=True)
    rows = read_rows(args.output) if args.output.exists() else []
    report = args.output.with_suffix(".md")
    report.write_text(render(rows))
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
