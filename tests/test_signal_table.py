"""The signal table's arithmetic: groups and their halves, rates per CPU-minute, and its CLI."""

from __future__ import annotations

import json

import pytest

from benchmarks import signal_table


def row(model, context, index, rewards, *, cpu_s=16.0, stopped=None, retry_temperature=None):
    n = len(rewards)
    extra = {} if retry_temperature is None else {"retry_temperature": retry_temperature}
    return {
        "model": model,
        "context": context,
        **extra,
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


def test_each_rule_for_cut_reflections_leaves_what_the_trainer_would_train_on():
    cut, done = False, True
    rows = [
        # Group 0: one correct retry, after a cut reflection; the others complete failures.
        row("m", "reflection", 0, [1, 0, 0, 0], stopped=[cut, done, done, done]),
        # Group 1: no correct retry; two reflections cut (only the penalty tells them apart).
        row("m", "reflection", 1, [0, 0, 0, 0], stopped=[cut, cut, done, done]),
        # Group 2: every reflection cut, one correct retry.
        row("m", "reflection", 2, [0, 1, 0, 0], stopped=[cut] * 4),
    ]
    t = signal_table.truncation_rules(rows, group_size=4)
    assert (t["groups"], t["after_complete"], t["after_cut"]) == (3, (0, 5), (2, 7))
    # keep: groups 0 and 2 have reward variance; both correct retries are reinforced.
    assert t["keep"] == {"with_gradient": 2, "penalty_only": 0, "reinforced": 2}
    # mask: group 2 carries no loss at all, and group 0's correct retry carries none either
    # (only its complete failures are pushed down).
    assert t["mask"] == {"with_gradient": 1, "penalty_only": 0, "reinforced": 0}
    # penalize: group 0 trains on [0, 0, 0, 0] (1 - 1 for the cut one),
    # no gradient; group 1: [-1, -1, 0, 0], a gradient from the penalty alone; group 2:
    # [-1, 0, -1, -1], its correct retry above the mean.
    assert t["penalize"] == {"with_gradient": 2, "penalty_only": 1, "reinforced": 1}


def test_the_report_ranks_rows_by_signal_rate(tmp_path):
    rows = [
        row("big", "conversation", 0, [1, 0, 0, 0], cpu_s=40.0),
        row("small", "reflection", 0, [1, 0, 1, 0], cpu_s=8.0),
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = signal_table.render(tmp_path)
    first_table = report.split("## Cut reflections")[0]
    table = [
        line
        for line in first_table.splitlines()
        if line.startswith("| big") or line.startswith("| small")
    ]
    assert [line.split("|")[1].strip() for line in table] == ["small", "small", "big", "big"]
    assert "| small | reflection | 1 | 4 | 1/1 | 7.50 |" in report
    assert "| small | reflection | 1 | 2 | 2/2 | 15.00 |" in report


def test_greedy_retries_are_rows_of_their_own_beside_the_sampled_ones(tmp_path):
    """Rows from before --retry-temperatures sampled their retries at T = 1."""
    rows = [
        row("m", "reflection", 0, [1, 0, 0, 0]),  # no retry_temperature: an old row, T = 1
        row("m", "reflection", 0, [1, 1, 0, 0], retry_temperature=0.0),
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = signal_table.render(tmp_path)
    assert "| m | reflection | 1 | 4 | 1/1 | 3.75 | 0.250 |" in report
    assert "| m | reflection | 0 | 4 | 1/1 | 3.75 | 0.500 |" in report
    truncation = report.split("## Cut reflections")[1]  # one row each there too
    assert truncation.count("| m | reflection | 1 | 4 |") == 1
    assert truncation.count("| m | reflection | 0 | 4 |") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--engine", "vllm"], "--engine must be one of"),
        (["--models", "gpt-9"], "unknown bundled model"),
        (["--group-size", "3"], "even number"),
        (["--failures", "0"], "--failures must be at least 1"),
        (["--retry-temperatures", "-1"], "--retry-temperatures must be >= 0"),
    ],
)
def test_bad_values_exit_2_before_any_model_loads(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        signal_table.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
