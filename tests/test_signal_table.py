"""The signal table's arithmetic: groups and their halves, rates per CPU-minute, and its CLI."""

from __future__ import annotations

import json

import pytest

from benchmarks import signal_table


def row(model, context, index, rewards, *, cpu_s=16.0, stopped=None):
    n = len(rewards)
    return {
        "model": model,
        "context": context,
        "settings": {
            "env": signal_table.ENV_ID,
            "split": "validation",
            "group_size": n,
            "attempt_tokens": 8,
            "reflection_tokens": 8,
            "retry_tokens": 8,
            "engine": "torch",
            "seed": 0,
        },
        "index": index,
        "rewards": rewards,
        "reasons": ["ok" if r else "no_answer" for r in rewards],
        "reflection_stopped": stopped or [True] * n,
        "reflection_tokens": [5] * n,
        "retry_tokens": [5] * n,
        "cpu_s": cpu_s,
        "wall_s": cpu_s / 2,
        "examples": [],
        "machine": signal_table._machine_info([], []),
    }


def test_a_group_counts_once_and_its_halves_separately():
    # Group 0: the only success is in the first half -> the group and one half have signal.
    # Group 1: successes in both halves, not all -> the group and both halves.
    # Group 2: nothing -> none.
    rows = [
        row("m", "reflection", 0, [1, 0, 0, 0, 0, 0, 0, 0]),
        row("m", "reflection", 1, [1, 0, 0, 0, 1, 1, 1, 0]),
        row("m", "reflection", 2, [0] * 8, stopped=[False] * 4 + [True] * 4),
    ]
    s = signal_table.summarize(rows, [{"successes": 1, "queries": 4}])
    assert (s["full"], s["half"], s["halves"], s["fixable"]) == (2, 3, 6, 2)
    assert s["retry_success"] == pytest.approx(5 / 24)
    assert s["reflection_cut"] == pytest.approx(4 / 24)
    assert s["retry_no_answer"] == pytest.approx(19 / 24)
    # 48 CPU-s over 24 rollouts: 2 s each. A group of 8 costs 16 s, a half 8 s.
    assert s["cpu_per_rollout"] == pytest.approx(2.0)
    assert s["rate_full"] == pytest.approx(60 * 2 / 48)
    assert s["rate_half"] == pytest.approx(60 * 3 / 48)


def test_the_report_ranks_rows_by_signal_rate(tmp_path):
    rows = [
        row("big", "conversation", 0, [1, 0, 0, 0], cpu_s=40.0),
        row("small", "reflection", 0, [1, 0, 1, 0], cpu_s=8.0),
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = signal_table.render(tmp_path)
    table = [
        line
        for line in report.splitlines()
        if line.startswith("| big") or line.startswith("| small")
    ]
    assert [line.split("|")[1].strip() for line in table] == ["small", "small", "big", "big"]
    assert "| small | reflection | 4 | 1/1 | 7.50 |" in report
    assert "| small | reflection | 2 | 2/2 | 15.00 |" in report


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--engine", "vllm"], "--engine must be one of"),
        (["--models", "gpt-9"], "unknown bundled model"),
        (["--group-size", "3"], "even number"),
        (["--failures", "0"], "--failures must be at least 1"),
    ],
)
def test_bad_values_exit_2_before_any_model_loads(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        signal_table.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
