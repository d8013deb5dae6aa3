"""All performance figures in one table: runs the speed benchmarks, then renders PERFORMANCE.md.

    python -m benchmarks.performance                       # run every benchmark (hours), render
    python -m benchmarks.performance --only env_speed      # run a subset, render all figures
    python -m benchmarks.performance --render-only         # only rebuild PERFORMANCE.md
    OMP_NUM_THREADS=1 python -m benchmarks.performance --quick   # smoke runs, temp dir

Each benchmark runs in its own process (``python -m benchmarks.bench_...``), one after the
other, so that one crash, CPU pinning or a model in memory does not reach the others; a failed
benchmark is reported in the table with its error and the rest still run. The table is built
only from the JSONL rows the benchmarks write (``benchmarks/results/``, or ``QUICK_RESULTS``
with ``--quick``): each row shows our number, the baseline measured in the same run, their
ratio, the goal from the issues, and the machine and date of that measurement, with a link to
the benchmark's own report.
"""

from __future__ import annotations

import argparse
import codecs
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import QUICK_RESULTS, REPO, RESULTS, machine_line, read_rows

REPORT = "PERFORMANCE.md"
NOT_MEASURED = "not measured yet"
NONE = "—"

# Goals: issue 2 (Countdown verifier, env), issue 3 (rollout), grpo_step.md (GRPO step).
GOAL_VERIFY_US = 20.0
GOAL_VERIFY_RATIO = 25.0
GOAL_EPISODES_PER_CPU_S = 10_000
GOAL_ROLLOUT_RATIO = 3.0
GOAL_GRPO_STEP_RATIO = 1.15
GOAL_WORST_VERIFY_MS = 5.0  # issue 11: every verifier, any action the env accepts
ROLLOUT_DTYPES = ("bfloat16", "float32")  # bench_rollout's default --dtypes


@dataclass(frozen=True)
class Figure:
    """One row of the table: a number of ours, its baseline from the same run, and the goal.

    Attributes:
        what: What is measured.
        ours: Our number, with its unit.
        baseline: The baseline measured in the same run, with its unit.
        ratio: How the two compare, saying which way round.
        goal: The goal from the issues.
        met: ``met``, ``missed``, or a note when there is nothing to judge.
        machine: The ``machine`` dict of the JSONL row; None when nothing was measured.
        command: The command that produced the row.
    """

    what: str
    ours: str
    baseline: str = NONE
    ratio: str = NONE
    goal: str = NONE
    met: str = NONE
    machine: Mapping[str, Any] | None = None
    command: str | None = None


Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark script and how its JSONL rows become figures.

    Attributes:
        name: The stem of its result files (``<name>.jsonl``, ``<name>.md``); ``--only`` takes it.
        module: The module run as ``python -m <module>``.
        figures: Turns the JSONL rows into table rows; raises KeyError, ValueError or
            StopIteration on rows it cannot read (an interrupted run).
        placeholders: The table rows shown before anything is measured (``what`` only).
        env: Environment variables the benchmark is run with (its documented command).
    """

    name: str
    module: str
    figures: Callable[[Rows], list[Figure]]
    placeholders: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def command(self, recorded: str | None = None) -> str:
        """The command that regenerates the results: the recorded one, else the default."""
        prefix = "".join(f"{key}={value} " for key, value in self.env.items())
        return prefix + (recorded or f"python -m {self.module}")


def met(value: bool) -> str:
    return "met" if value else "missed"


def _us_range(rows: Rows, key: str) -> tuple[float, float]:
    medians = [row[key]["median"] for row in rows]
    return min(medians), max(medians)


# -- figures of each benchmark: the headline numbers its own report shows -------------------


def countdown_figures(rows: Rows) -> list[Figure]:
    """The pooled row (``kind == "all"``), as in the Goal line of countdown_verify.md."""
    pooled = next(row for row in rows if row["kind"] == "all")
    ours, sympy = pooled["ours_us"]["median"], pooled["sympy_us"]["median"]
    ratio = pooled["ratio_median"]
    common = {
        "ours": f"{ours:.1f} µs median",
        "baseline": f"{sympy:.1f} µs median (`sympy.parse_expr` check)",
        "ratio": f"sympy / ours {ratio:.1f}x",
        "machine": pooled["machine"],
        "command": pooled["command"],
    }
    answers = f"{pooled['answers']:,} answers"
    return [
        Figure(
            what=f"Countdown verify, time per check ({answers})",
            goal=f"<= {GOAL_VERIFY_US:g} µs",
            met=met(ours <= GOAL_VERIFY_US),
            **common,
        ),
        Figure(
            what=f"Countdown verify, speed-up over sympy ({answers})",
            goal=f">= {GOAL_VERIFY_RATIO:g}x vs sympy",
            met=met(ratio >= GOAL_VERIFY_RATIO),
            **common,
        ),
    ]


def function_call_figures(rows: Rows) -> list[Figure]:
    """Ranges of the per-category medians, the cells of function_call_verify.md's table."""
    meta = next(row["meta"] for row in rows if "meta" in row)
    measured = [row for row in rows if "category" in row]
    if not measured:
        raise ValueError("no measured category")
    timed = meta["bfcl_checker"] is not None
    figures = []
    for what, key, ratio_key in [
        ("Function-call verify (parse text + judge)", "ours_verify_us", "ratio_bfcl_over_verify"),
        ("Function-call judge (parsed calls)", "ours_judge_us", "ratio_bfcl_over_judge"),
    ]:
        low, high = _us_range(measured, key)
        baseline, ratio = f"BFCL checker not timed: {meta['bfcl_import']}", NONE
        if timed:
            bfcl_low, bfcl_high = _us_range(measured, "bfcl_checker_us")
            ratios = [row[ratio_key] for row in measured]
            baseline = f"{bfcl_low:.1f}-{bfcl_high:.1f} µs (BFCL `ast_checker` on parsed calls)"
            ratio = f"BFCL / ours {min(ratios):.2f}-{max(ratios):.2f}"
        figures.append(
            Figure(
                what=f"{what}, per response; range of medians over "
                f"{len(measured)} BFCL category x kind rows",
                ours=f"{low:.1f}-{high:.1f} µs",
                baseline=baseline,
                ratio=ratio,
                goal="none: report ours vs BFCL's checker",
                met=NONE,
                machine=meta["machine"],
                command=meta["command"],
            )
        )
    return figures


def env_figures(rows: Rows) -> list[Figure]:
    """The 3-step episodes through ``gym.make``: the first row of env_speed.md's table."""
    row = next(
        r
        for r in rows
        if r["measurement"] == "episodes"
        and r["variant"] == "gym.make"
        and r["policy"] == "wrong_reflect_right"
    )
    rate = row["episodes_per_cpu_s_median"]
    return [
        Figure(
            what=f"Countdown env, {row['steps_per_episode']}-step episodes (wrong, reflect, "
            "right) through `gym.make`",
            ours=f"{rate:,.0f} episodes / CPU s",
            baseline="none (absolute goal)",
            goal=f">= {GOAL_EPISODES_PER_CPU_S:,} episodes / CPU s",
            met=met(rate >= GOAL_EPISODES_PER_CPU_S),
            machine=row["machine"],
            command=row["command"],
        )
    ]


def _rollout_what(dtype: str, row: Mapping[str, Any] | None = None) -> str:
    if row is None:
        return f"Rollout tokens/s, lockstep batched vs batch-1 ({dtype})"
    return (
        f"Rollout tokens/s, lockstep batched vs batch-1 ({row['model']}, {dtype}, "
        f"{row['episodes']} episodes, <= {row['max_new_tokens']} tokens per response)"
    )


def rollout_figures(rows: Rows) -> list[Figure]:
    """One row per dtype, as in rollout_speed.md; dtypes not in the file yet are placeholders."""
    figures = []
    by_dtype = {row["dtype"]: row for row in rows}
    for dtype in [*ROLLOUT_DTYPES, *(d for d in by_dtype if d not in ROLLOUT_DTYPES)]:
        row = by_dtype.get(dtype)
        if row is None:
            figures.append(Figure(what=_rollout_what(dtype), ours=NOT_MEASURED))
            continue
        figures.append(
            Figure(
                what=_rollout_what(dtype, row),
                ours=f"{row['batched']['tokens_per_second']} tok/s batched",
                baseline=f"{row['single']['tokens_per_second']} tok/s batch-1",
                ratio=f"batched / batch-1 {row['ratio']:.1f}x",
                goal=f">= {GOAL_ROLLOUT_RATIO:g}x",
                met=met(row["ratio"] >= GOAL_ROLLOUT_RATIO),
                machine=row["machine"],
                command=row["command"],
            )
        )
    return figures


GRPO_KINDS = {
    "reflection+retry": "credit=reflection+retry (same trained tokens as TRL)",
    "reflection": "credit=reflection (half the trained tokens)",
}


def grpo_figures(rows: Rows) -> list[Figure]:
    """Median CPU seconds per step over all measured steps, as in grpo_step.md's table."""

    def median_cpu(kind: str) -> float:
        return statistics.median(row["cpu_s"] for row in rows if row["kind"] == kind)

    trl = median_cpu("trl")
    figures = []
    for kind, label in GRPO_KINDS.items():
        if not any(row["kind"] == kind for row in rows):
            continue
        cpu = median_cpu(kind)
        figures.append(
            Figure(
                what=f"RRR-GRPO step / TRL GRPO step, CPU time, {label}",
                ours=f"{cpu:.2f} CPU s / step",
                baseline=f"{trl:.2f} CPU s / step (plain TRL GRPO)",
                ratio=f"ours / TRL {cpu / trl:.3f}",
                goal=f"<= {GOAL_GRPO_STEP_RATIO:g}",
                met=met(cpu / trl <= GOAL_GRPO_STEP_RATIO),
                machine=rows[0]["machine"],
                command=rows[0]["command"],
            )
        )
    if not figures:
        raise ValueError("no RRR-GRPO steps")
    return figures


def worst_case_figures(rows: Rows) -> list[Figure]:
    """One row per verifier: its worst case beside its typical median, as verify_worst_case.md.

    The baseline is the same measurement on the code before issue 11 (``--before``), when the
    JSONL carries it.
    """
    meta = next(row["meta"] for row in rows if "meta" in row and not row.get("before"))
    before = {row["verifier"]: row for row in rows if row.get("summary") and row.get("before")}
    old_meta = next((row["meta"] for row in rows if "meta" in row and row.get("before")), None)
    figures = []
    for row in rows:
        if not row.get("summary") or row.get("before"):
            continue
        old = before.get(row["verifier"])
        worst = row["worst_median_us"]
        figures.append(
            Figure(
                what=f"{row['verifier']} verifier, worst case over {meta['cases']} hostile "
                f"responses of up to {meta['max_chars']:,} characters (CPU time)",
                ours=f"{worst:,.0f} µs worst ({row['worst_case']}); "
                f"{row['typical_median_us']:.1f} µs median on a typical response",
                baseline=NONE
                if old is None
                else f"{old['worst_median_us']:,.0f} µs worst ({old['worst_case']}) on "
                f"{old_meta['label'] if old_meta else 'the older code'}",
                ratio=NONE
                if old is None
                else f"before / after {old['worst_median_us'] / worst:,.0f}x",
                goal=f"< {GOAL_WORST_VERIFY_MS:g} ms on any action",
                met=met(worst < GOAL_WORST_VERIFY_MS * 1_000),
                machine=row["machine"],
                command=row["command"],
            )
        )
    if not figures:
        raise ValueError("no verifier summary")
    return figures


BENCHMARKS = (
    Benchmark(
        "countdown_verify",
        "benchmarks.bench_countdown_verify",
        countdown_figures,
        ("Countdown verify, time per check", "Countdown verify, speed-up over sympy"),
    ),
    Benchmark(
        "function_call_verify",
        "benchmarks.bench_function_call",
        function_call_figures,
        ("Function-call verify (parse text + judge)", "Function-call judge (parsed calls)"),
    ),
    Benchmark(
        "env_speed",
        "benchmarks.bench_env",
        env_figures,
        ("Countdown env, 3-step episodes through `gym.make`",),
    ),
    Benchmark(
        "rollout_speed",
        "benchmarks.bench_rollout",
        rollout_figures,
        tuple(_rollout_what(dtype) for dtype in ROLLOUT_DTYPES),
    ),
    Benchmark(
        "grpo_step",
        "benchmarks.bench_grpo_step",
        grpo_figures,
        tuple(f"RRR-GRPO step / TRL GRPO step, CPU time, {v}" for v in GRPO_KINDS.values()),
        env={"OMP_NUM_THREADS": "1"},
    ),
    Benchmark(
        "verify_worst_case",
        "benchmarks.bench_verify_worst_case",
        worst_case_figures,
        ("Verifiers, worst case on hostile input beside the typical median",),
        env={"OMP_NUM_THREADS": "1"},
    ),
)
NAMES = tuple(bench.name for bench in BENCHMARKS)


# -- rendering --------------------------------------------------------------------------------


def machine_cell(machine: Mapping[str, Any] | None) -> str:
    """``machine_line`` of a row's machine, also for rows older than ``benchmarks.common``."""
    if machine is None:
        return NONE
    # function_call_verify.jsonl predates common.machine_info: no affinity, no package dict.
    filled = {
        "cpu_affinity": "not recorded",
        "packages": {"bfcl-eval": machine["bfcl_eval"]} if "bfcl_eval" in machine else {},
        "git_dirty": bool(machine.get("git_dirty_files")),
        **machine,
    }
    try:
        return machine_line(filled)
    except KeyError as error:
        return f"not recorded ({error} missing)"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def benchmark_figures(bench: Benchmark, results_dir: Path, failure: str | None) -> list[Figure]:
    """The table rows of one benchmark: its figures, or placeholders saying why there are none."""
    if failure is not None:
        return [Figure(what, f"**failed in this run**: {failure}") for what in bench.placeholders]
    jsonl = results_dir / f"{bench.name}.jsonl"
    if not jsonl.exists():
        return [Figure(what, NOT_MEASURED) for what in bench.placeholders]
    try:
        rows = read_rows(jsonl)
        if not rows:
            return [Figure(what, NOT_MEASURED) for what in bench.placeholders]
        return bench.figures(rows)
    except (KeyError, ValueError, StopIteration, TypeError, ZeroDivisionError) as error:
        reason = f"could not read {jsonl.name} ({type(error).__name__}: {error})"
        return [Figure(what, reason) for what in bench.placeholders]


def render_report(results_dir: Path, failures: Mapping[str, str] | None = None) -> str:
    """The markdown of PERFORMANCE.md, from the JSONL files in ``results_dir``.

    Args:
        results_dir: Where the benchmarks wrote ``<name>.jsonl`` and ``<name>.md``.
        failures: Benchmark name -> error, for benchmarks that failed in this run; their rows
            say so instead of showing what an interrupted run left in the JSONL.

    Returns:
        The markdown text.
    """
    failures = failures or {}
    lines = [
        "# Performance",
        "",
        "Every figure comes from the JSONL of one benchmark run in this directory; *ours* and "
        "*baseline* were measured in the same run, on the machine and date given. The linked "
        "report has the method and the full results.",
        "",
        "- Measure everything again and rebuild this file: `python -m benchmarks.performance` "
        "(`--only NAME ...` for a subset).",
        "- Rebuild this file from the JSONL only: "
        "`python -m benchmarks.performance --render-only`.",
        "",
        "| what is measured | ours | baseline (same run) | ratio | goal | goal met | measured "
        "| machine | report | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for bench in BENCHMARKS:
        report = f"{bench.name}.md"
        link = f"[{report}]({report})"
        if not (results_dir / report).exists():
            link += " (not written yet)"
        for figure in benchmark_figures(bench, results_dir, failures.get(bench.name)):
            date = NONE if figure.machine is None else figure.machine.get("date", NONE)
            cells = [
                figure.what,
                figure.ours,
                figure.baseline,
                figure.ratio,
                figure.goal,
                f"**{figure.met}**" if figure.met in ("met", "missed") else figure.met,
                date,
                machine_cell(figure.machine),
                link,
                f"`{bench.command(figure.command)}`",
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += [
        "",
        "Goals: issue 2 (Countdown verify, env speed), issue 3 (rollout), the goal stated in "
        "grpo_step.md (GRPO step), issue 11 (every verifier's worst case); the function-call "
        "verifier's typical speed has no target, only the comparison with BFCL's checker. The "
        "worst-case rows compare with the code before issue 11, measured in another run. "
        "Ratios are printed the way round their report prints them.",
        "",
    ]
    return "\n".join(lines)


def write_report(results_dir: Path, failures: Mapping[str, str] | None = None) -> Path:
    """Write ``results_dir/PERFORMANCE.md`` (see ``render_report``) and return its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / REPORT
    path.write_text(render_report(results_dir, failures), encoding="utf-8")
    return path


# -- running ----------------------------------------------------------------------------------


def run_benchmark(bench: Benchmark, quick: bool) -> str | None:
    """Run one benchmark in its own process, its output passed through as it comes.

    Returns:
        None on success, else the error: the exit code and the last line on stderr.
    """
    command = [sys.executable, "-m", bench.module, *(["--quick"] if quick else [])]
    print(f"\n== {bench.command()}{' --quick' if quick else ''}", flush=True)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    try:
        # stderr is read in chunks, not lines, so that progress bars (\r) still show live.
        with subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **bench.env}, stderr=subprocess.PIPE
        ) as process:
            while chunk := process.stderr.read1(65536):
                text = decoder.decode(chunk)
                sys.stderr.write(text)
                sys.stderr.flush()
                tail = (tail + text)[-4096:]
    except OSError as error:
        return f"could not start: {error}"
    if process.returncode == 0:
        return None
    last = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return f"exit code {process.returncode}" + (f": {last[-1]}" if last else "")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=NAMES,
        default=list(NAMES),
        metavar="NAME",
        help=f"run only these benchmarks (all figures are still rendered): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="run nothing, rebuild PERFORMANCE.md"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"pass --quick to each benchmark; results and the report go to {QUICK_RESULTS}",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results_dir = QUICK_RESULTS if args.quick else RESULTS
    failures = {}
    if not args.render_only:
        for bench in BENCHMARKS:
            if bench.name in args.only:
                error = run_benchmark(bench, args.quick)
                if error is not None:
                    failures[bench.name] = error
                    print(f"!! {bench.name} failed: {error}", flush=True)
    path = write_report(results_dir, failures)
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path}")
    if failures:
        raise SystemExit(f"failed: {', '.join(failures)}")


if __name__ == "__main__":
    main()
