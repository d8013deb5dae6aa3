"""``--reuse-from``: a head-to-head run takes another folder's controls and trained policies."""

from __future__ import annotations

import json
import shlex

import gymnasium as gym
import pytest

import rrr_env
from agents import models
from agents.rollout import PhaseSampling, SamplingParams, rollout
from agents.scripted import ScriptedBackend
from benchmarks.common import machine_info
from benchmarks.harness_reuse import plan_reuse
from benchmarks.rrr_vs_rise import MEASURED_CODE, PACKAGES, arm_scores, main, parse_args, protocol
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)

OPTIONS = ["--env-kwargs", '{"size": 8}', "--eval-split", "test", "--eval-n", "4"]


def scripted_episodes(arm: str, right: set[int]):
    """``arm``'s episodes of items 0-3: items in ``right`` are solved at once, others never."""
    spec = protocol(arm)
    options = {"split": "test", "size": 8, **spec["env"]}
    env = gym.make("rrr/Countdown-v0", **options)
    answers = {}
    for index in range(4):
        obs, _ = env.reset(options={"index": index})
        item = env.unwrapped.item
        answers[obs[-1]["content"]] = (
            f"\\boxed{{{solve(list(item.numbers), item.target)}}}"
            if index in right
            else "\\boxed{1 + 1}"
        )

    def policy(conversation):
        return answers[conversation[1]["content"]]

    return rollout(
        lambda: gym.make("rrr/Countdown-v0", **options),
        ScriptedBackend(policy),
        [0, 1, 2, 3],
        group_size=spec["samples"],
        sampling=PhaseSampling.same(SamplingParams(16)),
    )


def write_episodes(path, episodes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in episodes))


def source_folder(tmp_path, *, budget=120, extra=()):
    """A finished 120-min folder: vanilla and retry, and RRR seed 1 with a 60-min snapshot
    (written as rows were before points recorded their mark)."""
    out = tmp_path / "source"
    argv = [*OPTIONS, "--budget-minutes", str(budget), "--curve-points", "1", *extra]
    command = "python -m benchmarks.rrr_vs_rise " + shlex.join(argv)
    rows = []
    machine = machine_info(MEASURED_CODE, PACKAGES)
    for arm, right in (("vanilla", {0}), ("retry", set())):
        episodes = scripted_episodes(arm, right)
        write_episodes(out / "episodes" / f"{arm}__seed0.jsonl", episodes)
        rows.append({"arm": arm, "seed": 0, "command": command, "machine": machine})
        rows[-1].update(arm_scores(arm, episodes), eval_dtype="bfloat16", budget_minutes=budget)
    snapshot = scripted_episodes("rrr", {0, 1})
    write_episodes(out / "episodes" / "rrr__seed1__60min.jsonl", snapshot)
    final = scripted_episodes("rrr", {0, 1, 2})
    write_episodes(out / "episodes" / "rrr__seed1.jsonl", final)
    curve = [
        {"step": 1, "zero_variance": 0.0, "retry_success": 0.5},
        {"step": 2, "zero_variance": 1.0, "retry_success": 0.0},
        {"step": 3, "zero_variance": 0.0, "retry_success": 0.25},
    ]
    point = {"minutes": 63.5, "step": 2, **arm_scores("rrr", snapshot), "eval_seconds": 7.0}
    rows.append(
        {
            "arm": "rrr",
            "seed": 1,
            "command": command,
            "machine": machine,
            "eval_dtype": "bfloat16",
            "budget_minutes": budget,
            "train_engine": "torch",
            "train_seconds": 125 * 60.0,
            "updates": 2,
            "steps": 3,
            "train_generated_tokens": 999,
            "curve": curve,
            "held_out_curve": [point],
            "run_dir": "runs/x/rrr_seed1",
            **arm_scores("rrr", final),
        }
    )
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def no_model(*args, **kwargs):
    raise AssertionError("a run with every row reused must not load a model")


def test_controls_and_a_snapshot_at_this_budget_are_reused_without_a_model(
    tmp_path, monkeypatch, capsys
):
    source = source_folder(tmp_path)
    monkeypatch.setattr(models, "load_model_and_tokenizer", no_model)
    out = tmp_path / "60min"
    argv = [*OPTIONS, "--budget-minutes", "60", "--curve-points", "0", "--seeds", "1"]
    argv += ["--arms", "vanilla", "retry", "rrr", "--out-dir", str(out)]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--reuse-from", str(source)]
    rows = main(argv)
    printed = capsys.readouterr().out
    assert "rrr seed 1: reused its 60-min snapshot from" in printed
    by_arm = {r["arm"]: r for r in rows}
    assert set(by_arm) == {"vanilla", "retry", "rrr"}
    # The controls, as they were, with this run's command and budget and their origin.
    old = [json.loads(line) for line in (source / "results.jsonl").read_text().splitlines()]
    assert by_arm["vanilla"]["solved_second"] == old[0]["solved_second"] == [0]
    assert by_arm["vanilla"]["budget_minutes"] == 60
    assert "--reuse-from" in by_arm["vanilla"]["command"]
    assert by_arm["vanilla"]["reused_from"]["command"] == old[0]["command"]
    # RRR seed 1 is its snapshot's policy: the snapshot's scores, time, steps and updates.
    rrr = by_arm["rrr"]
    assert rrr["second_try"] == 0.5 and rrr["solved_second"] == [0, 1]
    assert rrr["train_seconds"] == pytest.approx(63.5 * 60)
    assert (rrr["steps"], rrr["updates"]) == (2, 1), "step 2 had no variance: skipped"
    assert [c["step"] for c in rrr["curve"]] == [1, 2]
    assert rrr["held_out_curve"] == []
    assert "train_generated_tokens" not in rrr, "the end point's tokens are not the snapshot's"
    assert rrr["reused_from"]["snapshot_minutes"] == 60
    assert rrr["reused_from"]["budget_minutes"] == 120
    # Its episodes are the snapshot's, under this run's end-point name.
    copied = (out / "episodes" / "rrr__seed1.jsonl").read_text()
    assert copied == (source / "episodes" / "rrr__seed1__60min.jsonl").read_text()
    report = (out / "report.md").read_text()
    assert "rrr seed 1 (the 60-min snapshot of its 120-min run" in report
    assert "| rrr vs vanilla | 2nd | 4 | 0.500 | 0.250 |" in report
    # A rerun finds every row done: nothing is reused twice.
    main(argv)
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_a_row_of_the_same_budget_is_reused_whole_with_its_snapshots(tmp_path, monkeypatch):
    source = source_folder(tmp_path)
    monkeypatch.setattr(models, "load_model_and_tokenizer", no_model)
    out = tmp_path / "again"
    argv = [*OPTIONS, "--budget-minutes", "120", "--seeds", "1", "--arms", "vanilla", "rrr"]
    argv += ["--out-dir", str(out), "--reuse-from", str(source)]
    rrr = {r["arm"]: r for r in main(argv)}["rrr"]
    assert (rrr["steps"], rrr["updates"], rrr["train_generated_tokens"]) == (3, 2, 999)
    assert rrr["second_try"] == 0.75 and len(rrr["held_out_curve"]) == 1
    assert (out / "episodes" / "rrr__seed1__60min.jsonl").is_file()
    assert "snapshot_minutes" not in rrr["reused_from"]


@pytest.mark.parametrize(
    "changed, message",
    [
        (["--attempt-max-tokens", "64"], "--attempt-max-tokens 256 (this run: 64)"),
        (["--eval-n", "3"], "--eval-n 4 (this run: 3)"),
        (["--env-kwargs", '{"size": 6}'], "--env-kwargs {'size': 8} (this run: {'size': 6})"),
    ],
)
def test_a_folder_evaluated_by_another_protocol_is_refused_before_anything_runs(
    tmp_path, capsys, changed, message
):
    source = source_folder(tmp_path)
    out = tmp_path / "other"
    argv = [*OPTIONS, *changed, "--arms", "vanilla", "--out-dir", str(out)]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--reuse-from", str(source)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (out / "results.jsonl").exists()


def test_trained_rows_of_other_training_options_or_without_the_mark_are_not_reused(tmp_path):
    source = source_folder(tmp_path)
    done: set[tuple[str, int]] = set()
    cmd = "python -m benchmarks.rrr_vs_rise"
    argv = [*OPTIONS, "--seeds", "1", "--arms", "vanilla", "rrr"]
    other = parse_args([*argv, "--budget-minutes", "60", "--learning-rate", "0.001"])
    plan = plan_reuse(other, source, done, cmd)
    assert [r["arm"] for r in plan.rows] == ["vanilla"]
    assert plan.notes == [
        f"rrr seed 1 of {source} is not reused: trained with --learning-rate 0.0001 "
        "(this run: 0.001)"
    ]
    plan = plan_reuse(parse_args([*argv, "--budget-minutes", "30"]), source, done, cmd)
    assert plan.notes == [
        f"rrr seed 1 of {source} is not reused: no snapshot at 30 min (marks: 60)"
    ]
    # Options of the other method, or of the run's own schedule, do not matter.
    same = parse_args([*argv, "--budget-minutes", "60", "--rise-items", "9", "--curve-points", "3"])
    assert [r["arm"] for r in plan_reuse(same, source, done, cmd).rows] == ["vanilla", "rrr"]


def test_snapshot_files_that_do_not_pair_with_the_curve_are_an_error(tmp_path, capsys):
    source = source_folder(tmp_path)
    (source / "episodes" / "rrr__seed1__90min.jsonl").write_text("")
    argv = [*OPTIONS, "--budget-minutes", "60", "--seeds", "1", "--arms", "rrr"]
    argv += ["--out-dir", str(tmp_path / "o"), "--reuse-from", str(source)]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert "1 curve points and 2 snapshot episode files" in capsys.readouterr().err


def test_an_empty_or_missing_folder_is_refused(tmp_path, capsys):
    argv = [*OPTIONS, "--arms", "vanilla", "--out-dir", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--reuse-from", str(tmp_path / "nowhere")])
    assert stopped.value.code == 2 and "no rows in" in capsys.readouterr().err
