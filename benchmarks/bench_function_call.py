"""Function-call verifier speed on the BFCL categories, against BFCL's own AST checker.

For every item of the eight AST categories of the installed ``bfcl-eval`` data: the gold answer
(``rrr_env.tasks.bfcl.reference_calls``, rendered as qwen ``<tool_call>`` blocks) and one wrong
variant (the first argument of the first call changed: a string gets a suffix, a number +1, a
bool flips, a list grows, a dict gets a key). Each response is timed with
``rrr_env.verifiers.function_call.verify`` (parse + judge, ``mode="bfcl"``, strict qwen format,
as the env runs it) and with ``judge`` alone on the already-parsed calls. BFCL's own checker
(``bfcl_eval.eval_checker.ast_eval.ast_checker``) is timed on the same parsed calls when it can
be imported here: its module imports ``bfcl_eval.constants.model_config``, which imports every
model handler and their API clients (anthropic, openai, ...). When that fails, this benchmark
(and only this benchmark) puts a stand-in ``model_config`` module in ``sys.modules`` that
answers ``underscore_to_dot=False`` for every model, the setting of BFCL's prompt-style and
local Qwen FC models. That is the only thing the checker reads from it. The verdicts of both
checkers are compared, item by item.

    python -m benchmarks.bench_function_call          # full run, writes benchmarks/results/
    python -m benchmarks.bench_function_call --quick  # 20 items per category, to a temp dir
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.common import (
    add_output_arguments,
    command_line,
    machine_info,
    pin_cpu,
    resolve_out_dir,
    write_row,
)
from benchmarks.common import summary_us as common_summary_us
from rrr_env.tasks.bfcl import CATEGORIES, BFCLItem, load_category, reference_calls
from rrr_env.verifiers import function_call as fc
from rrr_env.verifiers.function_call import ToolCall

NAME = "function_call_verify"
KINDS = ("gold", "wrong")
ANCHOR_US = (28, 80)  # issue 6: BFCL's AST checker per item on this machine
BFCL_MODEL = "Qwen/Qwen3-8B-FC"  # a model with underscore_to_dot=False in BFCL's config
MEASURED_CODE = (
    "rrr_env/verifiers/function_call.py",
    "rrr_env/tasks/bfcl.py",
    "rrr_env/tasks/function_calling.py",
    "benchmarks/common.py",
    "benchmarks/bench_function_call.py",
)
PACKAGES = ("bfcl-eval",)  # reported with the machine


# -- BFCL's checker, if importable -----------------------------------------------------------


@dataclass
class _StandInModelConfig:
    underscore_to_dot: bool = False


class _StandInConfigMapping(dict):
    def __missing__(self, key: str) -> _StandInModelConfig:
        return _StandInModelConfig()


def import_bfcl_checker() -> tuple[Callable[..., dict] | None, Any, str]:
    """BFCL's ``ast_checker`` and ``Language``, and how they were imported (or why not)."""
    try:
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

        return ast_checker, Language, "imported as is"
    except ImportError as error:
        first_error = f"{type(error).__name__}: {error}"
    for name in list(sys.modules):
        if name.startswith("bfcl_eval.") and name != "bfcl_eval.constants.enums":
            del sys.modules[name]  # drop the half-imported modules
    stand_in = types.ModuleType("bfcl_eval.constants.model_config")
    stand_in.MODEL_CONFIG_MAPPING = _StandInConfigMapping()  # type: ignore[attr-defined]
    sys.modules["bfcl_eval.constants.model_config"] = stand_in
    try:
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    except ImportError as error:
        return None, None, f"not importable ({first_error}; with a stand-in config: {error})"
    return (
        ast_checker,
        Language,
        f"imported with a stand-in model_config (plain import failed: {first_error})",
    )


# -- responses -------------------------------------------------------------------------------


def changed(value: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + " (changed)"
    if isinstance(value, list):
        return [*value, value[0] if value else "extra"]
    if isinstance(value, dict):
        return {**value, "changed": 1}
    return "changed"


def wrong_calls(calls: list[ToolCall]) -> list[ToolCall]:
    first = calls[0]
    if not first.arguments:
        return [ToolCall(first.name + "_changed", first.arguments), *calls[1:]]
    key = next(iter(first.arguments))
    arguments = {**first.arguments, key: changed(first.arguments[key])}
    return [ToolCall(first.name, arguments), *calls[1:]]


@dataclass(frozen=True)
class Case:
    """One response to one item."""

    item: BFCLItem
    kind: str
    calls: list[ToolCall]
    response: str


def cases_for(items: Sequence[BFCLItem]) -> list[Case]:
    cases = []
    for item in items:
        gold = reference_calls(item)
        for kind, calls in (("gold", gold), ("wrong", wrong_calls(gold))):
            cases.append(Case(item, kind, calls, fc.render_calls(calls, "qwen")))
    return cases


# -- timing ----------------------------------------------------------------------------------


def time_calls(function: Callable[[], Any], repeats: int, warmup: int) -> list[int]:
    """Nanoseconds of ``repeats`` calls of ``function`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(repeats):
        start = clock()
        function()
        samples.append(clock() - start)
    return samples


def summary_us(samples_ns: Sequence[int]) -> dict[str, float]:
    return common_summary_us(samples_ns, digits=2, with_min=False)


def measure(
    category: str,
    kind: str,
    cases: list[Case],
    checker: Callable[..., dict] | None,
    language: Any,
    args: argparse.Namespace,
) -> dict[str, Any]:
    verify_ns: list[int] = []
    judge_ns: list[int] = []
    bfcl_ns: list[int] = []
    ours_correct = bfcl_correct = disagreements = 0
    disagreeing_ids = []
    for case in cases:
        gold = list(case.item.ground_truth)
        tools = list(case.item.functions)
        verdict = fc.verify(case.response, gold, mode="bfcl", tools=tools)
        ours_correct += verdict.correct
        parsed = fc.parse_calls(case.response).calls
        assert parsed is not None
        verify_ns += time_calls(
            lambda c=case, g=gold, t=tools: fc.verify(c.response, g, mode="bfcl", tools=t),
            args.repeats,
            args.warmup,
        )
        judge_ns += time_calls(
            lambda p=parsed, g=gold, t=tools: fc.judge(p, g, mode="bfcl", tools=t),
            args.repeats,
            args.warmup,
        )
        if checker is None:
            continue
        decoded = [{call.name: call.arguments} for call in parsed]

        def bfcl_check(d=decoded, g=gold, t=tools) -> dict:
            return checker(t, d, g, language.PYTHON, category, BFCL_MODEL)

        valid = bool(bfcl_check()["valid"])
        bfcl_correct += valid
        if valid != verdict.correct:
            disagreements += 1
            disagreeing_ids.append(case.item.id)
        bfcl_ns += time_calls(bfcl_check, args.repeats, args.warmup)
    row: dict[str, Any] = {
        "benchmark": NAME,
        "category": category,
        "kind": kind,
        "items": len(cases),
        "repeats": args.repeats,
        "ours_correct": ours_correct,
        "ours_verify_us": summary_us(verify_ns),
        "ours_judge_us": summary_us(judge_ns),
    }
    if checker is not None:
        row.update(
            bfcl_correct=bfcl_correct,
            disagreements=disagreements,
            disagreeing_ids=disagreeing_ids,
            bfcl_checker_us=summary_us(bfcl_ns),
            ratio_bfcl_over_verify=round(row_median(bfcl_ns) / row_median(verify_ns), 2),
            ratio_bfcl_over_judge=round(row_median(bfcl_ns) / row_median(judge_ns), 2),
        )
    return row


def row_median(samples: Sequence[int]) -> float:
    return statistics.median(samples)


# -- output ----------------------------------------------------------------------------------


def render_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    machine = meta["machine"]
    commit = (machine["git_commit"] or "unknown")[:12]
    if machine["git_dirty_files"]:
        commit += " (uncommitted: " + ", ".join(machine["git_dirty_files"]) + ")"
    # Rows written before benchmarks.common have the bfcl-eval version as "bfcl_eval".
    versions = machine.get("packages") or {"bfcl-eval": machine.get("bfcl_eval")}
    packages = ", ".join(f"{k} {v}" for k, v in versions.items())
    has_bfcl = meta["bfcl_checker"] is not None
    lines = [
        "# Function-call verifier speed on BFCL",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Machine: {machine['cpu_model']} ({machine['cpu_count']} CPUs, load "
        f"{machine['load_average_1m']} at start), {machine['platform']}, Python "
        f"{machine['python']}, {packages}; commit {commit}; {machine['date']}.",
        "",
        "Per response: median microseconds (p10-p90) over every item of the category and "
        f"{meta['repeats']} timed calls each. `gold`: the ground truth rendered as qwen "
        "`<tool_call>` blocks; `wrong`: the first argument of the first call changed. "
        "*verify*: `rrr_env.verifiers.function_call.verify` (parse the text + judge, "
        '`mode="bfcl"`, strict); *judge*: `judge` on the parsed calls; *BFCL*: '
        "`bfcl_eval`'s `ast_checker` on the same parsed calls.",
        "",
        f"BFCL's checker: {meta['bfcl_import']}.",
        "",
    ]
    header = "| category | kind | items | ours correct | verify us | judge us |"
    rule = "|---|---|---:|---:|---:|---:|"
    if has_bfcl:
        header += " BFCL us | BFCL correct | disagree | BFCL / verify | BFCL / judge |"
        rule += "---:|---:|---:|---:|---:|"
    lines += [header, rule]

    def cell(summary: dict[str, float]) -> str:
        return f"{summary['median']:.1f} ({summary['p10']:.1f}-{summary['p90']:.1f})"

    for row in rows:
        line = (
            f"| {row['category']} | {row['kind']} | {row['items']} | {row['ours_correct']} | "
            f"{cell(row['ours_verify_us'])} | {cell(row['ours_judge_us'])} |"
        )
        if has_bfcl:
            line += (
                f" {cell(row['bfcl_checker_us'])} | {row['bfcl_correct']} | "
                f"{row['disagreements']} | {row['ratio_bfcl_over_verify']:.2f} | "
                f"{row['ratio_bfcl_over_judge']:.2f} |"
            )
        lines.append(line)
    all_verify = [r["ours_verify_us"]["median"] for r in rows]
    lines += [
        "",
        f"Range of the per-category medians of *verify*: {min(all_verify):.1f}-"
        f"{max(all_verify):.1f} us. Anchor from issue 6: BFCL's AST checker takes "
        f"{ANCHOR_US[0]}-{ANCHOR_US[1]} us per item on this machine.",
    ]
    if has_bfcl:
        disagreeing = sorted({i for r in rows for i in r["disagreeing_ids"]})
        lines += [
            "",
            f"Verdicts that differ from BFCL's checker: {len(disagreeing)}"
            + (f" ({', '.join(disagreeing)})." if disagreeing else "."),
            "`gold` items that neither checker accepts contradict their own function docs "
            "(see `BFCL_UNSATISFIABLE` in tests/test_function_call_tasks.py).",
        ]
    else:
        lines += ["", "BFCL's checker could not be timed here; the numbers above are ours alone."]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=None, help="first N items per category")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per response")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per response first")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    add_output_arguments(parser, "20 items, 3 repeats, temp dir", render_only=False)
    parser.add_argument("--no-bfcl", action="store_true", help="do not time BFCL's checker")
    args = parser.parse_args(argv)
    if args.quick:
        args.items = args.items or 20
        args.repeats = 3
        args.warmup = 1
    resolve_out_dir(args)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    pin_cpu(args.cpu)
    if args.no_bfcl:
        checker, language, how = None, None, "not timed (--no-bfcl)"
    else:
        checker, language, how = import_bfcl_checker()
    meta = {
        "command": command_line("benchmarks.bench_function_call", argv),
        "machine": machine_info(MEASURED_CODE, PACKAGES),
        "repeats": args.repeats,
        "bfcl_import": how,
        "bfcl_checker": None if checker is None else "ast_checker",
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = args.out_dir / f"{NAME}.jsonl"
    rows = []
    gc.disable()  # collections would land in random samples
    try:
        with jsonl.open("w", encoding="utf-8") as handle:
            write_row(handle, {"meta": meta})
            for category in CATEGORIES:
                items = load_category(category)[: args.items]
                cases = cases_for(items)
                for kind in KINDS:
                    chosen = [c for c in cases if c.kind == kind]
                    row = measure(category, kind, chosen, checker, language, args)
                    rows.append(row)
                    write_row(handle, row)
                    print(
                        f"{category:24s} {kind:5s} verify {row['ours_verify_us']['median']:7.1f} us"
                        + (
                            f"  BFCL {row['bfcl_checker_us']['median']:7.1f} us"
                            f"  disagree {row['disagreements']}"
                            if checker is not None
                            else ""
                        ),
                        flush=True,
                    )
                    gc.collect()
    finally:
        gc.enable()
    markdown = args.out_dir / f"{NAME}.md"
    markdown.write_text(render_markdown(rows, meta), encoding="utf-8")
    print(f"wrote {jsonl} and {markdown}")


if __name__ == "__main__":
    main()
