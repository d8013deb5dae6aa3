"""PERFORMANCE.md rendering, on synthetic JSONL rows in a temp dir (nothing is measured)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.performance import NOT_MEASURED, REPORT, parse_args, render_report, write_report

MACHINE = {
    "processor": "",
    "cpu_model": "Test CPU",
    "cpu_count": 2,
    "cpu_affinity": [0],
    "load_average_1m": 0.5,
    "platform": "Linux-test",
    "python": "3.11.7",
    "packages": {"sympy": "1.14.0"},
    "git_commit": "0123456789abcdef",
    "git_dirty": False,
    "git_dirty_files": [],
    "date": "2026-01-02T03:04:05+00:00",
}


def write_jsonl(directory: Path, name: str, rows: list[dict[str, Any]]) -> None:
    with (directory / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def table_rows(text: str, what: str) -> list[list[str]]:
    """The cells of the table rows whose first cell starts with ``what``."""
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if line.startswith("| ") and cells[0].startswith(what):
            rows.append(cells)
    return rows


def countdown_rows(ours_us: float, ratio: float) -> list[dict[str, Any]]:
    common = {"command": "python -m benchmarks.bench_countdown_verify", "machine": MACHINE}
    return [
        {**common, "kind": "correct", "answers": 2, "ours_us": {"median": 1.0}},
        {
            **common,
            "kind": "all",
            "answers": 8,
            "ours_us": {"median": ours_us},
            "sympy_us": {"median": round(ours_us * ratio, 3)},
            "ratio_median": ratio,
        },
    ]


def env_row(rate: float) -> dict[str, Any]:
    return {
        "measurement": "episodes",
        "variant": "gym.make",
        "policy": "wrong_reflect_right",
        "steps_per_episode": 3,
        "episodes_per_cpu_s_median": rate,
        "command": "python -m benchmarks.bench_env",
        "machine": MACHINE,
    }


def grpo_rows() -> list[dict[str, Any]]:
    common = {"command": "python -m benchmarks.bench_grpo_step", "machine": MACHINE}
    cpu = {"trl": [10.0, 12.0, 11.0], "reflection": [9.0, 10.0, 11.0], "reflection+retry": [13.0]}
    return [{**common, "kind": k, "cpu_s": c} for k, values in cpu.items() for c in values]


def test_goals_met_and_missed(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "countdown_verify", countdown_rows(ours_us=9.87, ratio=21.61))
    write_jsonl(tmp_path, "env_speed", [env_row(9_000.4)])
    write_jsonl(tmp_path, "grpo_step", grpo_rows())
    (tmp_path / "env_speed.md").write_text("# env\n")
    text = render_report(tmp_path)

    [time_row] = table_rows(text, "Countdown verify, time per check")
    assert time_row[1] == "9.9 µs median"
    assert time_row[2].startswith("213.3 µs median")  # 9.87 * 21.61, rounded as in the report
    assert time_row[3:6] == ["sympy / ours 21.6x", "<= 20 µs", "**met**"]
    [ratio_row] = table_rows(text, "Countdown verify, speed-up over sympy")
    assert ratio_row[4:6] == [">= 25x vs sympy", "**missed**"]
    assert time_row[6] == MACHINE["date"]
    assert "Test CPU (2 CPUs, affinity [0]" in time_row[7]
    assert time_row[8] == "[countdown_verify.md](countdown_verify.md) (not written yet)"

    [env] = table_rows(text, "Countdown env")
    assert env[1] == "9,000 episodes / CPU s"
    assert env[5] == "**missed**"
    assert env[8] == "[env_speed.md](env_speed.md)"

    # medians: TRL 11, reflection 10, reflection+retry 13
    [retry] = table_rows(text, "RRR-GRPO step / TRL GRPO step, CPU time, credit=reflection+retry")
    assert retry[1:6] == [
        "13.00 CPU s / step",
        "11.00 CPU s / step (plain TRL GRPO)",
        "ours / TRL 1.182",
        "<= 1.15",
        "**missed**",
    ]
    assert retry[9] == "`OMP_NUM_THREADS=1 python -m benchmarks.bench_grpo_step`"
    [reflection] = table_rows(text, "RRR-GRPO step / TRL GRPO step, CPU time, credit=reflection ")
    assert reflection[3:6] == ["ours / TRL 0.909", "<= 1.15", "**met**"]


def test_missing_files_say_not_measured_yet(tmp_path: Path) -> None:
    rollout = {
        "model": "tiny",
        "dtype": "bfloat16",
        "episodes": 4,
        "max_new_tokens": 16,
        "batched": {"tokens_per_second": 90.0},
        "single": {"tokens_per_second": 30.0},
        "ratio": 3.0,
        "command": "python -m benchmarks.bench_rollout",
        "machine": MACHINE,
    }
    write_jsonl(tmp_path, "rollout_speed", [rollout])  # float32 not measured yet
    text = render_report(tmp_path)

    [bf16] = table_rows(text, "Rollout tokens/s, lockstep batched vs batch-1 (tiny, bfloat16")
    assert bf16[1:6] == [
        "90.0 tok/s batched",
        "30.0 tok/s batch-1",
        "batched / batch-1 3.0x",
        ">= 3x",
        "**met**",
    ]
    [fp32] = table_rows(text, "Rollout tokens/s, lockstep batched vs batch-1 (float32)")
    assert fp32[1] == NOT_MEASURED
    for what in ["Countdown verify", "Function-call", "Countdown env", "RRR-GRPO"]:
        rows = table_rows(text, what)
        assert rows and all(row[1] == NOT_MEASURED and row[6] == "—" for row in rows), what
    assert table_rows(text, "Countdown env")[0][9] == "`python -m benchmarks.bench_env`"


def test_old_function_call_rows_and_failures(tmp_path: Path) -> None:
    # function_call_verify.jsonl predates benchmarks.common: no affinity, no package dict
    old_machine = {k: v for k, v in MACHINE.items() if k not in ("cpu_affinity", "packages")}
    meta = {
        "command": "python -m benchmarks.bench_function_call",
        "machine": {**old_machine, "bfcl_eval": "2026.3.23"},
        "bfcl_checker": "ast_checker",
        "bfcl_import": "plain import",
    }
    measured = [
        {
            "category": category,
            "ours_verify_us": {"median": verify},
            "ours_judge_us": {"median": verify / 3},
            "bfcl_checker_us": {"median": bfcl},
            "ratio_bfcl_over_verify": round(bfcl / verify, 2),
            "ratio_bfcl_over_judge": round(3 * bfcl / verify, 2),
        }
        for category, verify, bfcl in [("simple", 18.0, 6.0), ("parallel", 60.0, 12.0)]
    ]
    write_jsonl(tmp_path, "function_call_verify", [{"meta": meta}, *measured])
    write_jsonl(tmp_path, "env_speed", [{"measurement": "item_generation"}])  # interrupted run
    text = render_report(tmp_path, failures={"grpo_step": "exit code 1: OSError: no model"})

    [verify] = table_rows(text, "Function-call verify")
    assert verify[1:6] == [
        "18.0-60.0 µs",
        "6.0-12.0 µs (BFCL `ast_checker` on parsed calls)",
        "BFCL / ours 0.20-0.33",
        "none: report ours vs BFCL's checker",
        "—",
    ]
    assert "affinity not recorded" in verify[7] and "bfcl-eval 2026.3.23" in verify[7]
    [judge] = table_rows(text, "Function-call judge")
    assert judge[1] == "6.0-20.0 µs"

    [env] = table_rows(text, "Countdown env")
    assert env[1].startswith("could not read env_speed.jsonl")
    grpo = table_rows(text, "RRR-GRPO")
    assert len(grpo) == 2
    assert all(row[1] == "**failed in this run**: exit code 1: OSError: no model" for row in grpo)


def test_write_report_and_arguments(tmp_path: Path) -> None:
    path = write_report(tmp_path / "results")
    assert path == tmp_path / "results" / REPORT
    assert path.read_text(encoding="utf-8").startswith("# Performance\n")

    assert parse_args(["--render-only"]).only == [
        "countdown_verify",
        "function_call_verify",
        "env_speed",
        "rollout_speed",
        "grpo_step",
        "verify_worst_case",
    ]
    assert parse_args(["--only", "env_speed", "grpo_step"]).only == ["env_speed", "grpo_step"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "bench_env"])


def test_worst_case_rows_show_the_worst_beside_the_typical_and_the_before(tmp_path: Path) -> None:
    command = "python -m benchmarks.bench_verify_worst_case"
    meta = {"command": command, "label": "this checkout", "machine": MACHINE}
    summary = {"summary": True, "command": command, "machine": MACHINE, "goal_ms": 5.0}
    rows = [
        {"meta": {**meta, "cases": 3, "max_chars": 1_000_000}},
        {**summary, "verifier": "countdown", "typical_median_us": 9.5, "worst_case": "braces"},
        {"meta": {**meta, "label": "commit abc"}, "before": True},
        {**summary, "verifier": "countdown", "worst_median_us": 300_000.0, "before": True},
        {**summary, "verifier": "gsm8k", "typical_median_us": 10.0, "worst_case": "digits"},
    ]
    rows[1]["worst_median_us"] = 600.0
    rows[3]["worst_case"] = "box then open braces"
    rows[4]["worst_median_us"] = 6_000.0
    write_jsonl(tmp_path, "verify_worst_case", rows)
    text = render_report(tmp_path)

    [countdown] = table_rows(text, "countdown verifier, worst case over 3 hostile responses")
    assert countdown[1:6] == [
        "600 µs worst (braces); 9.5 µs median on a typical response",
        "300,000 µs worst (box then open braces) on commit abc",
        "before / after 500x",
        "< 5 ms on any action",
        "**met**",
    ]
    assert countdown[9] == f"`OMP_NUM_THREADS=1 {command}`"
    [gsm8k] = table_rows(text, "gsm8k verifier, worst case")
    assert gsm8k[2:6] == ["—", "—", "< 5 ms on any action", "**missed**"]
