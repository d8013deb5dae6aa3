"""The in-sample check of RRR-GRPO's update: its statistics, arguments and report."""

from __future__ import annotations

import json

import pytest

from benchmarks.common import machine_info
from benchmarks.rrr_fit_check import (
    fisher_exact,
    group_successes,
    main,
    parse_args,
    read_stages,
    render,
)


def test_fisher_exact_by_hand():
    # Fisher's tea tasting: 3 of 4 against 1 of 4; P = (1 + 16 + 16 + 1) / 70 for the tables
    # as likely as or rarer than the observed one.
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(34 / 70)
    assert fisher_exact(1, 4, 3, 4) == pytest.approx(34 / 70)
    assert fisher_exact(7, 48, 7, 48) == 1.0
    assert fisher_exact(8, 10, 1, 6) == pytest.approx(0.034965, abs=1e-6)
    assert fisher_exact(0, 5, 5, 5) == pytest.approx(2 / 252)


def test_group_successes_counts_adjacent_groups():
    assert group_successes([1.0, 0.0, 1.0, 0.0, 0.0, 0.0], 2) == [1, 1, 0]
    assert group_successes([], 4) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--group-size", "3"], "--group-size must be an even number"),
        (["--learning-rate", "0"], "--learning-rate must be > 0"),
        (["--measure-size", "-1"], "--measure-size must be >= 1"),
    ],
)
def test_bad_arguments_fail_before_any_model_loads(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def _stages(after: bool) -> list[dict]:
    common = {
        "command": "python -m benchmarks.rrr_fit_check",
        "token_limits": {"attempt": 192, "reflection": 128, "retry": 192},
        "machine": machine_info([], []),
    }
    rows = [{"prompt": [], "index": i} for i in (3, 5, 8)]
    stages = [
        {
            "stage": "collect",
            **common,
            "rows": rows,
            "queries": 6,
            "first_attempts": 12,
            "first_attempt_successes": 2,
        },
        {"stage": "screen", **common, "size": 8, "successes": [0, 2, 1], "kept": [1, 2]},
        {"stage": "before", **common, "size": 4, "successes": [1, 0], "indices": [5, 8]},
    ]
    if after:
        stages.append(
            {
                "stage": "after",
                **common,
                "size": 4,
                "successes": [4, 3],
                "indices": [5, 8],
                "steps": 20,
                "train_seconds": 600.0,
                "learning_rate": 1e-4,
                "curve": [{"step": 1, "retry_success": 0.25}, {"step": 2, "retry_success": 0.5}],
            }
        )
    return stages


def test_report_pools_the_kept_failures_and_tests_the_change(tmp_path):
    stages = {row["stage"]: row for row in _stages(after=True)}
    text = render(stages)
    assert "kept (rewards differ): 2 failures" in text
    assert "before: 1/8 retries right" in text
    assert "7/8 retries right" in text
    assert f"p = {fisher_exact(7, 8, 1, 8):.3g}" in text
    assert "| 5 | 1/4 | 4/4 |" in text and "| 8 | 0/4 | 3/4 |" in text
    assert "0.25, 0.50" in text
    assert "In-sample" in text, "the report says what the check does not show"


def test_render_only_rewrites_the_report_from_finished_stages(tmp_path):
    (tmp_path / "stages.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in _stages(after=False)) + '{"stage": "af'
    )
    assert set(read_stages(tmp_path / "stages.jsonl")) == {"collect", "screen", "before"}
    main(["--out-dir", str(tmp_path), "--render"])
    text = (tmp_path / "report.md").read_text()
    assert "before: 1/8 retries right" in text and "Fisher" not in text
