r"""Countdown verifier speed, against a ``sympy.parse_expr`` baseline in the same run.

Answers come from the real TinyZero Countdown test set. For every item: a correct answer (the
exact solver's expression in a short reasoning text ending in ``\boxed{...}``) and three wrong
ones (missed target, wrong numbers, invalid expression). Each answer is judged many times by
``rrr_env.verifiers.countdown.verify`` and by a reasoning-gym style check written here (extract
the boxed text, ``sympy.parse_expr`` it, compare the value to the target and the numbers found
by a regex to the given ones). The baseline only ever parses the answers generated here.

    python -m benchmarks.bench_countdown_verify          # full run, writes benchmarks/results/
    python -m benchmarks.bench_countdown_verify --quick  # 100 items, few repeats, to a temp dir
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from sympy.parsing.sympy_parser import parse_expr

from benchmarks.common import (
    REPO,
    add_output_arguments,
    command_line,  # noqa: F401 - still imported from here by benchmarks/signal_search.py
    machine_line,
    resolve_out_dir,
    run_main,
    summary_us,
    tqdm,
    write_row,
)
from benchmarks.common import machine_info as _machine_info
from rrr_env.data import COUNTDOWN_TINYZERO_TEST, read_file
from rrr_env.tasks.countdown_solver import solve
from rrr_env.verifiers.countdown import verify

DEFAULT_DATA = COUNTDOWN_TINYZERO_TEST  # bundled with rrr_env, gzipped
DATA_FILE = "tinyzero_test.jsonl"
NAME = "countdown_verify"
KINDS = ("correct", "missed_target", "wrong_numbers", "invalid")
EXPECTED_REASON = {
    "correct": "ok",
    "missed_target": "missed_target",
    "wrong_numbers": "wrong_numbers",
    "invalid": "invalid_expression",
}
#: The code whose speed is measured (here and in bench_env); uncommitted changes to it are
#: flagged in the results.
MEASURED_CODE = (
    "rrr_env/env.py",
    "rrr_env/spaces.py",
    "rrr_env/verdict.py",
    "rrr_env/tasks/base.py",
    "rrr_env/tasks/countdown.py",
    "rrr_env/tasks/countdown_solver.py",
    "rrr_env/verifiers/boxed.py",
    "rrr_env/verifiers/countdown.py",
    "benchmarks/__init__.py",
    "benchmarks/common.py",
    "benchmarks/bench_countdown_verify.py",
    "benchmarks/bench_env.py",
)
#: The packages whose versions are reported with the machine (here and in bench_env).
PACKAGES = ("sympy", "gymnasium", "numpy")
GOAL_MEDIAN_US = 20.0  # issue 2
GOAL_RATIO = 25.0  # issue 2
#: Issue 27: the typical case (correct answers) and all answers pooled, >= 40x sympy again.
GOAL_RATIO_TYPICAL = 40.0


# -- machine ------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (the Countdown code and packages)."""
    return _machine_info(MEASURED_CODE, PACKAGES)


# -- the answers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One response to judge, with what it should be judged."""

    kind: str
    variant: str
    numbers: tuple[int, ...]
    target: int
    response: str


def respond(numbers: Sequence[int], target: int, expression: str) -> str:
    """A short reasoning text that ends in the boxed expression, like a model's answer."""
    return (
        f"We need to combine {list(numbers)} to reach {target}, using each number exactly "
        "once. Start from the largest numbers, see how far they are from the target, and "
        f"close the gap with the others. Checking {expression} step by step, it works.\n\n"
        f"So the answer is \\boxed{{{expression}}}."
    )


def chain_expression(numbers: Sequence[int], rng: random.Random) -> tuple[str, Fraction]:
    """A random left-to-right expression over ``numbers`` and its exact value."""
    order = list(numbers)
    rng.shuffle(order)
    text, value, previous = str(order[0]), Fraction(order[0]), "*"
    for number in order[1:]:
        op = rng.choice("+-*/") if number else rng.choice("+-*")
        if op in "*/" and previous in "+-":
            text = f"({text})"
        text = f"{text} {op} {number}"
        if op == "+":
            value += number
        elif op == "-":
            value -= number
        elif op == "*":
            value *= number
        else:
            value /= number
        previous = op
    return text, value


def missed_target(numbers: Sequence[int], target: int, rng: random.Random) -> str:
    for _ in range(1_000):
        text, value = chain_expression(numbers, rng)
        if value != target:
            return text
    raise RuntimeError(f"no expression over {numbers} misses {target}")


def wrong_numbers(numbers: Sequence[int], target: int, rng: random.Random) -> tuple[str, str]:
    # The typical model error: reach the target while leaving one number out.
    dropped = list(numbers)
    del dropped[rng.randrange(len(dropped))]
    expression = solve(dropped, target)
    if expression is not None:
        return "drops_a_number_hits_target", expression
    return "drops_a_number", chain_expression(dropped, rng)[0]


def invalid(numbers: Sequence[int], solution: str, index: int) -> tuple[str, str]:
    a, b, c = numbers[0], numbers[1], numbers[2]
    variants = (
        ("unbalanced_parenthesis", f"({solution}"),
        ("dangling_operator", f"{solution} +"),
        ("words", "\\text{no solution}"),
        ("step_equations", f"{a} + {b} = {a + b}, {a + b} * {c} = {(a + b) * c}"),
    )
    return variants[index % len(variants)]


def build_answers(items: list[dict[str, Any]], seed: int) -> tuple[list[Answer], int]:
    """Four answers per solvable item; also the count of items the solver found unsolvable."""
    answers: list[Answer] = []
    unsolvable = 0
    for index, row in enumerate(tqdm(items, desc="solving items", unit="item")):
        numbers, target = tuple(int(n) for n in row["nums"]), int(row["target"])
        solution = solve(numbers, target)
        if solution is None:
            unsolvable += 1
            continue
        rng = random.Random(f"{seed}:{index}")
        variant, dropped = wrong_numbers(numbers, target, rng)
        invalid_variant, bad = invalid(numbers, solution, index)
        for kind, variant_name, expression in (
            ("correct", "solver_expression", solution),
            ("missed_target", "random_chain", missed_target(numbers, target, rng)),
            ("wrong_numbers", variant, dropped),
            ("invalid", invalid_variant, bad),
        ):
            response = respond(numbers, target, expression)
            answers.append(Answer(kind, variant_name, numbers, target, response))
    return answers, unsolvable


# -- the baseline: reasoning-gym style, sympy.parse_expr on the boxed text ----------------

_NUMBER = re.compile(r"\d+")


def baseline_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    begin = start + len("\\boxed{")
    depth = 1
    for pos in range(begin, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:pos]
    return None


def sympy_check(response: str, numbers: Sequence[int], target: int) -> bool:
    """Correct iff the boxed text parses with sympy, equals the target and uses the numbers."""
    answer = baseline_boxed(response)
    if answer is None:
        return False
    try:
        value = parse_expr(answer, evaluate=True)  # calls eval: only on answers built above
    except Exception:  # the baseline's broad except, as in reasoning-gym
        return False
    used = sorted(int(n) for n in _NUMBER.findall(answer))
    return used == sorted(numbers) and bool(value == target)


# -- measurement ----------------------------------------------------------------------------


def time_calls(
    check: Callable[..., Any], answer: Answer, repeats: int, warmup: int
) -> tuple[list[int], Any]:
    """Per-call timings in nanoseconds after ``warmup`` untimed calls, and the last result."""
    args = (answer.response, answer.numbers, answer.target)
    result = None
    for _ in range(warmup):
        result = check(*args)
    clock = time.perf_counter_ns
    samples = []
    for _ in range(repeats):
        start = clock()
        result = check(*args)
        samples.append(clock() - start)
    return samples, result


def time_single_pass(check: Callable[..., Any], answers: list[Answer]) -> list[int]:
    """One timed call per answer, one checker at a time: each string is new to the checker."""
    clock = time.perf_counter_ns
    samples = []
    for answer in answers:
        start = clock()
        check(answer.response, answer.numbers, answer.target)
        samples.append(clock() - start)
    return samples


def timer_overhead_ns(repeats: int = 10_000) -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(repeats):
        start = clock()
        samples.append(clock() - start)
    return int(statistics.median(samples))


def measure_kind(kind: str, answers: list[Answer], args: argparse.Namespace) -> dict[str, Any]:
    ours_ns: list[int] = []
    theirs_ns: list[int] = []
    # Before the repeated calls, so that every string is new to the checker.
    ours_first = time_single_pass(verify, answers)
    theirs_first = time_single_pass(sympy_check, answers)
    reasons: Counter[str] = Counter()
    variants: Counter[str] = Counter()
    ours_correct = theirs_correct = disagreements = unexpected = 0
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for answer in tqdm(answers, desc=f"timing {kind}", unit="answer"):
        samples, verdict = time_calls(verify, answer, args.repeats, args.warmup)
        ours_ns += samples
        samples, correct = time_calls(sympy_check, answer, args.repeats, args.warmup)
        theirs_ns += samples
        reasons[verdict.reason] += 1
        variants[answer.variant] += 1
        ours_correct += verdict.correct
        theirs_correct += correct
        disagreements += verdict.correct != correct
        unexpected += verdict.reason != EXPECTED_REASON[kind]
    cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    return {
        "kind": kind,
        "answers": len(answers),
        # Below 1.0 when other processes took the core from this one.
        "cpu_share": round(cpu_share, 3),
        "variants": dict(variants),
        "ours_us": summary_us(ours_ns),
        "sympy_us": summary_us(theirs_ns),
        "ours_single_pass_us": summary_us(ours_first),
        "sympy_single_pass_us": summary_us(theirs_first),
        "ours_correct": ours_correct,
        "sympy_correct": theirs_correct,
        "disagreements": disagreements,
        "ours_reasons": dict(reasons),
        "unexpected_reasons": unexpected,
        "_samples": (ours_ns, theirs_ns, ours_first, theirs_first),
    }


def finish_row(row: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    row.pop("_samples", None)
    row["ratio_median"] = round(row["sympy_us"]["median"] / row["ours_us"]["median"], 2)
    row["ratio_single_pass_median"] = round(
        row["sympy_single_pass_us"]["median"] / row["ours_single_pass_us"]["median"], 2
    )
    return {"benchmark": NAME, **row, **common}


def run(args: argparse.Namespace, jsonl: Path, command: str) -> None:
    data = args.data / DATA_FILE if args.data.is_dir() else args.data
    items = [row for _, row in read_file(data)]  # JSON lines, .gz too
    if args.items is not None:
        items = items[: args.items]
    answers, unsolvable = build_answers(items, args.seed)
    common = {
        "command": command,
        "data": os.path.relpath(data, REPO),
        "items": len(items),
        "unsolvable_items": unsolvable,
        "calls_per_answer": args.repeats,
        "warmup_calls": args.warmup,
        "timer_overhead_ns": timer_overhead_ns(),
        "machine": machine_info(),
    }
    pooled: dict[str, list[int]] = {
        "ours_us": [],
        "sympy_us": [],
        "ours_single_pass_us": [],
        "sympy_single_pass_us": [],
    }
    totals: Counter[str] = Counter()
    with jsonl.open("w", encoding="utf-8") as handle:
        for kind in KINDS:
            row = measure_kind(kind, [a for a in answers if a.kind == kind], args)
            for key, samples in zip(pooled, row["_samples"], strict=True):
                pooled[key] += samples
            for key in ("answers", "ours_correct", "sympy_correct", "disagreements"):
                totals[key] += row[key]
            totals["unexpected_reasons"] += row["unexpected_reasons"]
            write_row(handle, finish_row(row, common))
        row = {"kind": "all", **totals, **{k: summary_us(v) for k, v in pooled.items()}}
        write_row(handle, finish_row(row, common))


# -- report -------------------------------------------------------------------------------


def render(rows: list[dict[str, Any]]) -> str:
    first, pooled = rows[0], rows[-1]
    ours, ratio = pooled["ours_us"]["median"], pooled["ratio_median"]
    lines = [
        "# Countdown verifier speed",
        "",
        f"Command: `{first['command']}`",
        "",
        f"Machine: {machine_line(first['machine'])}",
        "",
        f"Data: `{first['data']}`, {first['items']:,} items "
        f"({first['unsolvable_items']} unsolvable), one answer of each kind per item. Each "
        f"answer is checked {first['warmup_calls']} times as warm-up, then "
        f"{first['calls_per_answer']} times, each call timed with `time.perf_counter_ns` "
        f"(timer overhead {first['timer_overhead_ns']} ns, not subtracted); medians are over "
        "all timed calls of a kind. `rrr` is `rrr_env.verifiers.countdown.verify`; `sympy` is "
        "the benchmark's reasoning-gym style check (last boxed text -> "
        "`sympy.parse_expr(evaluate=True)`, value == target, regex numbers == given numbers).",
        "",
        "| answers | count | rrr median us (p10-p90) | sympy median us (p10-p90) "
        "| sympy / rrr | rrr correct | sympy correct | disagreements | rrr reasons |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        a, b = row["ours_us"], row["sympy_us"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(row.get("ours_reasons", {}).items()))
        lines.append(
            f"| {row['kind']} | {row['answers']:,} | {a['median']:.1f} ({a['p10']:.1f}-"
            f"{a['p90']:.1f}) | {b['median']:.1f} ({b['p10']:.1f}-{b['p90']:.1f}) | "
            f"{row['ratio_median']:.1f}x | {row['ours_correct']:,} | {row['sympy_correct']:,} "
            f"| {row['disagreements']} | {reasons or '-'} |"
        )
    lines += [
        "",
        "Single pass: before the repeated calls, each checker alone judges every answer of "
        "the kind once, so each string is new to it (sympy's cache may still hold parts of an "
        "expression from earlier answers). This is the workload of an RL run, where every "
        "answer is judged once:",
        "",
        "| answers | rrr single pass median us | sympy single pass median us | sympy / rrr |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        a, b = row["ours_single_pass_us"], row["sympy_single_pass_us"]
        lines.append(
            f"| {row['kind']} | {a['median']:.1f} | {b['median']:.1f} "
            f"| {row['ratio_single_pass_median']:.1f}x |"
        )
    shares = ", ".join(f"{r['kind']} {r['cpu_share']:.2f}" for r in rows if "cpu_share" in r)
    met = ours <= GOAL_MEDIAN_US
    ratio_met = ratio >= GOAL_RATIO
    typical = next(row["ratio_median"] for row in rows if row["kind"] == "correct")
    lines += [
        "",
        f"Goal (issue 2): rrr median <= {GOAL_MEDIAN_US:g} us: **{ours:.1f} us, "
        f"{'met' if met else 'missed'}**; >= {GOAL_RATIO:g}x faster than sympy: "
        f"**{ratio:.1f}x, {'met' if ratio_met else 'missed'}**. Disagreements on correctness: "
        f"{pooled['disagreements']}; verdicts with a reason other than the kind's: "
        f"{pooled['unexpected_reasons']}.",
        "",
        f"Goal (issue 27): >= {GOAL_RATIO_TYPICAL:g}x faster than sympy on the typical case "
        f"(correct answers) and on all answers pooled: **{typical:.1f}x and {ratio:.1f}x, "
        f"{'met' if min(typical, ratio) >= GOAL_RATIO_TYPICAL else 'missed'}**. Short plain "
        "boxed expressions take the verifier's fast path; LaTeX, equations and nested braces "
        "the general one.",
        "",
        f"CPU share while timing (process CPU time / wall time): {shares}; below 1 means other "
        "processes on the machine took the core from the benchmark part of the time.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"directory with {DATA_FILE}, or the file"
    )
    parser.add_argument("--items", type=int, default=None, help="use the first N items (all)")
    parser.add_argument("--repeats", type=int, default=25, help="timed calls per answer")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per answer first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the wrong answers")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    add_output_arguments(parser, "100 items, 5 repeats, temp dir")
    args = parser.parse_args(argv)
    if args.quick:
        args.items = 100 if args.items is None else args.items
        args.repeats, args.warmup = 5, 1
    resolve_out_dir(args)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    run_main("benchmarks.bench_countdown_verify", NAME, parse_args, run, render, argv)


if __name__ == "__main__":
    main()
