r"""Worst-case verifier time on hostile input, beside the median on a typical response.

Every verifier (Countdown, GSM8K, function calling in each style and mode) judges every
response of :data:`CASES`: hostile texts of up to the env's largest action
(``rrr_env.env.MAX_ACTION_CHARS``, a million characters): nested and unclosed braces, many
``\boxed``, long digit strings, huge exponents, deep parentheses, many ``<tool_call>`` tags,
deep JSON, long whitespace, non-ASCII digits. Each pair is timed ``--repeats`` times after one
untimed call; a pair's time is the median of its repeats, a verifier's worst case the largest
of those over the cases. Goal (issue 11, section 4): every verifier under 5 ms on any action
the env accepts. The verdicts themselves are checked in tests/test_verifier_hostile.py.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_verify_worst_case          # benchmarks/results/
    OMP_NUM_THREADS=1 python -m benchmarks.bench_verify_worst_case --quick  # 2 repeats, temp dir

``--label before`` with ``--out-name verify_worst_case_before`` records the same measurement
on an older checkout (copy this file into it), so that the report shows both.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    add_output_arguments,
    command_line,
    machine_info,
    machine_line,
    pin_cpu,
    read_rows,
    resolve_out_dir,
    write_row,
)
from rrr_env.verifiers import countdown, math_answer
from rrr_env.verifiers import function_call as fc

NAME = "verify_worst_case"
#: The same measurement on the code before issue 11 (commit 422017d), kept beside ours.
BEFORE = RESULTS / f"{NAME}_before.jsonl"
GOAL_MS = 5.0  # issue 11, section 4
N = 1_000_000  # rrr_env.env.MAX_ACTION_CHARS; the env refuses longer actions
MEASURED_CODE = (
    "rrr_env/verifiers/boxed.py",
    "rrr_env/verifiers/countdown.py",
    "rrr_env/verifiers/math_answer.py",
    "rrr_env/verifiers/function_call.py",
    "benchmarks/bench_verify_worst_case.py",
)
PACKAGES = ("numpy",)

NUMBERS, TARGET = (1, 2, 3, 4), 10
GOLD_NUMBER = "18"
GOLD_CALLS = [{"name": "f", "arguments": {"x": 1}}]
BFCL_TOOLS = [
    {
        "name": "f",
        "parameters": {
            "type": "dict",
            "properties": {"x": {"type": "integer"}},
            "required": ["x"],
        },
    }
]
BFCL_GOLD = [{"f": {"x": [1]}}]

#: name -> the verifier on one response.
VERIFIERS: dict[str, Callable[[str], Any]] = {
    "countdown": lambda text: countdown.verify(text, NUMBERS, TARGET),
    "gsm8k": lambda text: math_answer.verify(text, GOLD_NUMBER),
    "fc qwen strict": lambda text: fc.verify(text, GOLD_CALLS),
    "fc llama strict": lambda text: fc.verify(text, GOLD_CALLS, style="llama"),
    "fc chat_template strict": lambda text: fc.verify(text, GOLD_CALLS, style="chat_template"),
    "fc qwen lenient": lambda text: fc.verify(text, GOLD_CALLS, format="lenient"),
    "fc bfcl lenient": lambda text: fc.verify(
        text, BFCL_GOLD, mode="bfcl", tools=BFCL_TOOLS, format="lenient"
    ),
}

#: name -> a typical correct response of that verifier (the median beside the worst case).
TYPICAL: dict[str, str] = {
    "countdown": "We need 10 from 1, 2, 3 and 4. Adding them all gives 10. \\boxed{1 + 2 + 3 + 4}",
    "gsm8k": "She sells 16 - 3 - 4 = 9 eggs at $2 each, so she makes \\boxed{18} dollars a day.",
    **dict.fromkeys(
        ("fc qwen strict", "fc chat_template strict", "fc qwen lenient", "fc bfcl lenient"),
        'I will call f.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>',
    ),
    "fc llama strict": '{"name": "f", "parameters": {"x": 1}}',
}


_size = N  # the length _fit and _nested fill; CASES is built at N, then at FC_LIMIT


def _fit(unit: str, head: str = "", tail: str = "") -> str:
    """``head`` + ``unit`` repeated + ``tail``, at most ``_size`` characters."""
    room = _size - len(head) - len(tail)
    return head + unit * (room // len(unit)) + tail


def _nested(open_: str, close: str, head: str = "", tail: str = "", middle: str = "") -> str:
    count = (_size - len(head) - len(tail) - len(middle)) // (len(open_) + len(close))
    return head + open_ * count + middle + close * count + tail


def _cases() -> dict[str, str]:
    """Hostile responses of about ``_size`` characters (and a few short ones)."""
    return {
        # braces and boxes
        "box then open braces": _fit("{", "\\boxed{"),
        "many unclosed boxes": _fit("\\boxed{"),
        "many \\boxed without a brace": _fit("\\boxed"),
        "many closed boxes, then one open": _fit("\\boxed{1}", tail="\\boxed{"),
        "nested boxes": _nested("\\boxed{", "}", middle="18"),
        "box closed by the last of a million braces": _nested("{", "}", "\\boxed{18", "}"),
        "box, a million close braces": _fit("}", "\\boxed{18"),
        "open braces": _fit("{"),
        "close braces": _fit("}"),
        "close then open braces": _fit("}{"),
        "box far from the end, open": _fit("x", "\\boxed{1} \\boxed{ "),
        "box then spaces then brace": _fit(" ", "\\boxed", "{18}"),
        # the Countdown verifier's fast path looks for its box near the last "}" only
        "short box, then a million characters and a }": _fit("x", "\\boxed{1 + 2}", "}"),
        "box with a brace, then a million characters and a }": _fit(
            "x", "\\boxed{\\frac{1}{2}", "}"
        ),
        # numbers
        "digits": _fit("9"),
        "digits in a box": _fit("9", "\\boxed{", "}"),
        "numbers with commas": _fit("1,"),
        "fractions a/b": _fit("1/"),
        "minus signs and digits": _fit("-1"),
        "many numbers": _fit("1 "),
        "many \\frac": _fit("\\frac{1}{2}"),
        "nested \\frac in a box": _nested("\\frac{", "}", "\\boxed{", "}"),
        "1,000 digits times 1,000 digits in a box": "\\boxed{" + "9" * 990 + "*" + "9" * 990 + "}",
        "huge power in a box": "\\boxed{99**98**97}",
        "huge exponent in JSON": (
            '<tool_call>{"name": "f", "arguments": {"x": 1e999999}}</tool_call>'
        ),
        "long number in JSON": _fit(
            "0", '<tool_call>{"name": "f", "arguments": {"x": 1', "}}</tool_call>"
        ),
        "many \\text in a box": _nested("\\text{", "}", "\\boxed{", "}", "18"),
        "many = in a box": "\\boxed{" + "=" * 990 + "18}",
        "many words in a box": "\\boxed{" + "a " * 495 + "18}",
        "Arabic-Indic digits": _fit("٣"),
        "Arabic-Indic digits in a box": _fit("٣", "\\boxed{", "}"),
        "emoji": _fit("😀"),
        "NUL, lone surrogate, emoji": _fit("\x00\ud800\U0001f600"),
        # parentheses and arithmetic
        "deep parentheses in a box": _nested("(", ")", "\\boxed{", "}", "1"),
        "deep parentheses, 2,000 characters": "\\boxed{" + "(" * 996 + "1" + ")" * 996 + "}",
        "long sum, 2,000 characters": "\\boxed{" + "+".join("1" * 996) + "}",
        "many boxes of long sums": _fit("\\boxed{" + "1+" * 400 + "1}"),
        # whitespace
        "spaces": _fit(" "),
        "newlines then a number": _fit("\n", tail="18"),
        "digit, spaces, digit": _fit(" ", "1", "2"),
        # tool calls and JSON
        "many <tool_call> tags": _fit("<tool_call>"),
        "many closed <tool_call> blocks": _fit("<tool_call></tool_call>"),
        "many call blocks": _fit('<tool_call>{"name": "f", "arguments": {}}</tool_call>'),
        "open block, deep list": _fit("[", "<tool_call>"),
        "deep lists": _fit("["),
        "deep objects": _nested('{"a": ', "}", middle="1"),
        "deep JSON in a block": _nested('{"a": ', "}", "<tool_call>", "</tool_call>", "1"),
        "many nameless objects": _fit('{"name": 1}'),
        "many calls, no block": _fit('{"name": "f", "arguments": {}} '),
        "many list items": _fit("1, ", '{"name": "f", "parameters": {"x": [', "1]}}"),
        "quotes": _fit('"'),
        "open brace and quote pairs": _fit('{"'),
        "escaped quotes": _fit('"\\', '{"'),
        "fences": _fit("```"),
        "fenced calls": _fit('```json\n{"name": "f", "arguments": {}}\n```\n'),
        "long reasoning, then a call": _fit(
            "x", "<think>", '</think><tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
        ),
        "long prose, then a call": _fit(
            "word ", tail='<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
        ),
    }


#: The function-call verifier rejects longer responses unread, so its worst cases are the
#: same texts cut to its limit.
FC_LIMIT = fc.MAX_RESPONSE_CHARS
#: name -> a hostile response (each at most N characters); "... [FC limit]": the same text at
#: FC_LIMIT characters.
CASES: dict[str, str] = _cases()
_size = FC_LIMIT
CASES |= {
    f"{name} [FC limit]": text
    for name, text in _cases().items()
    if len(CASES[name]) > FC_LIMIT  # the short ones are the same at both sizes
}
_size = N


def time_ns(function: Callable[[], Any], repeats: int) -> tuple[list[int], list[int]]:
    """CPU and wall nanoseconds of ``repeats`` calls after one untimed call.

    CPU time (``time.thread_time_ns``) is the headline: on a shared machine the wall clock
    also counts the time other processes held the core.
    """
    function()
    cpu_clock, wall_clock = time.thread_time_ns, time.perf_counter_ns
    cpu, wall = [], []
    for _ in range(repeats):
        cpu_start, wall_start = cpu_clock(), wall_clock()
        function()
        wall.append(wall_clock() - wall_start)
        cpu.append(cpu_clock() - cpu_start)
    return cpu, wall


def run(args: argparse.Namespace, jsonl: Path, command: str) -> None:
    meta = {
        "command": command,
        "label": args.label,
        "machine": machine_info(MEASURED_CODE, PACKAGES),
        "repeats": args.repeats,
        "typical_repeats": args.typical_repeats,
        "cases": len(CASES),
        "max_chars": max(len(text) for text in CASES.values()),
    }
    gc.disable()  # a collection would land in a random sample
    try:
        with jsonl.open("w", encoding="utf-8") as handle:
            write_row(handle, {"benchmark": NAME, "meta": meta})
            for verifier, check in VERIFIERS.items():
                typical, _ = time_ns(
                    lambda c=check, v=verifier: c(TYPICAL[v]), args.typical_repeats
                )
                typical_verdict = check(TYPICAL[verifier])
                worst = ("", -1.0)
                for case, text in CASES.items():
                    samples, wall = time_ns(lambda c=check, t=text: c(t), args.repeats)
                    verdict = check(text)
                    median_us = statistics.median(samples) / 1_000
                    write_row(
                        handle,
                        {
                            "benchmark": NAME,
                            "label": args.label,
                            "verifier": verifier,
                            "case": case,
                            "chars": len(text),
                            "median_us": round(median_us, 1),
                            "max_us": round(max(samples) / 1_000, 1),
                            "wall_median_us": round(statistics.median(wall) / 1_000, 1),
                            "reason": verdict.reason,
                            "correct": verdict.correct,
                        },
                    )
                    worst = max(worst, (case, median_us), key=lambda pair: pair[1])
                    gc.collect()
                row = {
                    "benchmark": NAME,
                    "label": args.label,
                    "verifier": verifier,
                    "summary": True,
                    "typical_median_us": round(statistics.median(typical) / 1_000, 1),
                    "typical_correct": typical_verdict.correct,
                    "worst_case": worst[0],
                    "worst_median_us": round(worst[1], 1),
                    "goal_ms": GOAL_MS,
                    "met": worst[1] <= GOAL_MS * 1_000,
                    "command": command,
                    "machine": meta["machine"],
                }
                write_row(handle, row)
                print(
                    f"{verifier:24s} typical {row['typical_median_us']:8.1f} us   worst "
                    f"{row['worst_median_us']:10.1f} us ({worst[0]})",
                    flush=True,
                )
            if args.before is not None:  # the older run's summary, kept beside this one
                for row in read_rows(args.before):
                    if "meta" in row or row.get("summary"):
                        write_row(handle, {**row, "before": True})
    finally:
        gc.enable()


def render(rows: list[dict[str, Any]]) -> str:
    """The summary per verifier (with the ``--before`` run's beside it) and every case."""
    meta = next(row["meta"] for row in rows if "meta" in row and not row.get("before"))
    summaries = [row for row in rows if row.get("summary") and not row.get("before")]
    old = {row["verifier"]: row for row in rows if row.get("summary") and row.get("before")}
    old_meta = next((row["meta"] for row in rows if "meta" in row and row.get("before")), None)
    lines = [
        "# Verifier worst case on hostile input",
        "",
        f"Command: `OMP_NUM_THREADS=1 {meta['command']}`",
        "",
        f"Machine: {machine_line(meta['machine'])}",
        "",
        f"{meta['cases']} hostile responses of up to {meta['max_chars']:,} characters (the env's "
        "largest action) for every verifier; each pair timed "
        f"{meta['repeats']} times after one untimed call, its time the median of those, in "
        "thread CPU time (`time.thread_time_ns`; the JSONL also has the wall-clock median, "
        "which on this shared machine includes time other processes held the core). "
        "*Worst case*: the largest such median over the responses. *Typical*: the median of "
        f"{meta['typical_repeats']} calls on a short correct response. Goal (issue 11): every "
        f"verifier under {GOAL_MS:g} ms on any action the env accepts.",
        "",
    ]
    header = "| verifier | typical median µs | worst case µs | worst response | goal met |"
    rule = "|---|---:|---:|---|---|"
    if old:
        header += " before: worst case µs | before: worst response |"
        rule += "---:|---|"
    lines += [header, rule]
    for row in summaries:
        line = (
            f"| {row['verifier']} | {row['typical_median_us']:.1f} | "
            f"{row['worst_median_us']:,.1f} | {row['worst_case']} | "
            f"{'**met**' if row['met'] else '**missed**'} |"
        )
        if old:
            previous = old.get(row["verifier"])
            line += (
                f" {previous['worst_median_us']:,.1f} | {previous['worst_case']} |"
                if previous
                else " — | — |"
            )
        lines.append(line)
    if old_meta is not None:
        lines += [
            "",
            f"Before: `OMP_NUM_THREADS=1 {old_meta['command']}` on {old_meta['label']} "
            f"({machine_line(old_meta['machine'])}).",
        ]
    verifiers = [row["verifier"] for row in summaries]
    cases = [row for row in rows if "case" in row and not row.get("before")]
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row in cases:
        table.setdefault(row["case"], {})[row["verifier"]] = row
    lines += [
        "",
        "Every response, median µs and reason per verifier:",
        "",
        "| response | characters | " + " | ".join(verifiers) + " |",
        "|---|---:|" + "---:|" * len(verifiers),
    ]
    for case, by_verifier in table.items():
        chars = next(iter(by_verifier.values()))["chars"]
        cells = [
            f"{by_verifier[v]['median_us']:,.1f} {by_verifier[v]['reason']}"
            if v in by_verifier
            else "—"
            for v in verifiers
        ]
        lines.append(f"| {case} | {chars:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per response")
    parser.add_argument("--typical-repeats", type=int, default=200, help="calls, typical case")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    parser.add_argument("--label", default="this checkout", help="what was measured")
    parser.add_argument("--out-name", default=NAME, help="stem of the result files")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help=f"JSONL of an older run, kept and shown beside (default: {BEFORE.name} in the "
        "results folder, if there)",
    )
    add_output_arguments(parser, "2 repeats, temp dir")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.typical_repeats = 2, 20
    resolve_out_dir(args)
    if args.before is None and args.out_name == NAME and BEFORE.exists():
        args.before = BEFORE
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = args.out_dir / f"{args.out_name}.jsonl"
    if not args.render_only:
        pin_cpu(args.cpu)
        run(args, jsonl, command_line("benchmarks.bench_verify_worst_case", argv))
    markdown = args.out_dir / f"{args.out_name}.md"
    markdown.write_text(render(read_rows(jsonl)), encoding="utf-8")
    print(f"wrote {jsonl} and {markdown}")


if __name__ == "__main__":
    main()
