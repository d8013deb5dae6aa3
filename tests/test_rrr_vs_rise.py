"""The head-to-head harness: arm protocols, scores, the sign test, and a quick real run."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import benchmarks.rrr_vs_rise as harness
import rrr_env
from agents import models
from agents.controls import GENERIC_REFLECTION
from agents.rollout import PhaseSampling, SamplingParams, rollout
from agents.scripted import ScriptedBackend
from benchmarks.common import machine_info
from benchmarks.rrr_vs_rise import (
    ARMS,
    MEASURED_CODE,
    PACKAGES,
    RRR_OPTIONS_FILE,
    TRAINED_FILE,
    TRUNCATED_REFLECTIONS,
    Evidence,
    arm_scores,
    curve_marks,
    episode_outcomes,
    eval_sampling,
    gain_split_lines,
    held_out_curve,
    main,
    parse_args,
    protocol,
    reflect_options,
    render,
    rise_config,
    rise_options,
    rise_run_dirs,
    rrr_config,
    rrr_model_options,
    rrr_options,
    rrr_run_dir,
    run_state,
    sign_test,
)
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
SAMPLING = PhaseSampling.same(SamplingParams(16))


def solver_policy(right_at: dict[int, set[int]]):
    """Answers item ``i`` right at the answer numbers in ``right_at[i]``, else wrong."""
    env = gym.make("rrr/Countdown-v0", split="test", size=8)
    items = {}
    for index in range(8):
        obs, _ = env.reset(options={"index": index})
        items[obs[-1]["content"]] = env.unwrapped.item

    def policy(conversation):
        question = conversation[1]["content"]
        item = items[question]
        index = list(items).index(question)
        answer = sum(m["role"] == "assistant" for m in conversation)
        if "Reflect" in conversation[-1]["content"]:
            return "I will check the numbers."
        number = (answer + 2) // 2 if "Reflect" in json.dumps(conversation) else answer + 1
        if number in right_at.get(index, set()):
            return f"\\boxed{{{solve(list(item.numbers), item.target)}}}"
        return "\\boxed{1 + 1}"

    return policy


def episodes_of(arm: str, right_at: dict[int, set[int]], indices=(0, 1, 2, 3)):
    spec = protocol(arm)
    options = {"split": "test", "size": 8, **spec["env"]}
    return rollout(
        lambda: gym.make("rrr/Countdown-v0", **options),
        ScriptedBackend(solver_policy(right_at)),
        list(indices),
        group_size=spec["samples"],
        sampling=SAMPLING,
    )


@pytest.mark.parametrize("arm", ["vanilla", "retry", "rrr", "rise", "fixed_reflection"])
def test_two_answer_arms_score_first_and_second_try(arm):
    # item 0 right at once, item 1 right at the retry, items 2 and 3 never
    episodes = episodes_of(arm, {0: {1}, 1: {2}})
    scores = arm_scores(arm, episodes)
    assert scores["items"] == 4
    assert scores["first_try"] == 0.25 and scores["second_try"] == 0.5
    assert scores["solved_second"] == [0, 1]
    phases = [t.phase for t in episodes[1].turns]
    reflects = protocol(arm)["env"]["reflect"]
    assert phases == (["attempt", "reflection", "retry"] if reflects else ["attempt", "retry"])


def test_best_of_2_is_solved_if_either_independent_sample_is_right():
    spec = protocol("best_of_2")
    assert spec["samples"] == 2 and spec["env"]["max_attempts"] == 1
    episodes = episodes_of("best_of_2", {0: {1}})
    # the scripted policy is deterministic, so fake one sample of item 1 as right
    episodes[3].turns[0].correct = True
    scores = arm_scores("best_of_2", episodes)
    assert scores["first_try"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert scores["second_try"] == 0.5 and scores["solved_second"] == [0, 1]
    assert all(len(e.turns) == 1 for e in episodes), "no feedback, no second answer"


def test_every_arm_has_a_protocol_and_unknown_arms_fail():
    assert {arm: protocol(arm)["env"]["reflect"] for arm in ARMS} == {
        "vanilla": True,
        "retry": False,
        "fixed_reflection": True,
        "best_of_2": False,
        "rrr": True,
        "rise": False,
    }
    with pytest.raises(ValueError, match="unknown arm"):
        protocol("oracle")


def test_sign_test_by_hand():
    assert sign_test(0, 0) == 1.0
    assert sign_test(3, 0) == pytest.approx(2 / 8)  # 2 * P(X <= 0), X ~ Bin(3, 1/2)
    assert sign_test(11, 7) == pytest.approx(sign_test(7, 11))
    assert sign_test(11, 7) == pytest.approx(0.4807, abs=1e-4)
    assert sign_test(5, 5) == 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0"], "--seeds"),
        (["--env-kwargs", "[1]"], "JSON object"),
        (["--env-kwargs", "{oops"], "not valid JSON"),
        (["--arms", "oracle"], "invalid choice"),
        (["--curve-points", "-1"], "--curve-points must be an integer >= 0"),
        (["--rrr-groups-per-step", "0"], "--rrr-groups-per-step must be an integer >= 1"),
        (["--rrr-beta", "-0.1"], "--rrr-beta must be >= 0"),
        (["--rrr-adapter-scope", "retry"], "invalid choice"),
        (["--train-engine", "vllm"], "invalid choice"),
        (["--rrr-truncated-reflections", "drop"], "invalid choice"),
        (["--rrr-collect-temperature", "-1"], "--rrr-collect-temperature must be >= 0"),
        (["--rrr-collect-temperature", "0", "--rrr-samples-per-query", "4"], "per-query 1"),
        (["--retry-max-tokens", "0"], "--retry-max-tokens must be an integer >= 1"),
        (["--rrr-resample-groups", "-1"], "--rrr-resample-groups must be >= 0"),
        (["--rrr-resample-batch", "0"], "--rrr-resample-batch must be an integer >= 1"),
    ],
)
def test_bad_command_lines_fail_clearly(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("groups, size", [(1, 8), (4, 8), (3, 5)])
def test_each_optimizer_step_trains_the_asked_number_of_whole_groups(tmp_path, groups, size):
    argv = ["--rrr-groups-per-step", str(groups), "--rrr-num-generations", str(size)]
    config = rrr_config(parse_args([*argv, "--runs-dir", str(tmp_path)]), seed=1)
    assert config.num_generations == size
    # One generation batch per optimizer step, holding exactly `groups` groups.
    assert config.generation_batch_size == groups * size
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == groups * size


def test_rrr_beta_reaches_the_trainer_and_defaults_to_the_papers(tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    assert rrr_config(parse_args(runs), seed=1).beta == 0.001
    assert rrr_config(parse_args([*runs, "--rrr-beta", "0"]), seed=1).beta == 0.0


def report_row(arm: str, seed: int, **fields) -> dict:
    """A results row of 2 items (2nd try 0.5) measured on this machine, with ``fields``."""
    row = {
        "arm": arm,
        "seed": seed,
        "machine": machine_info(MEASURED_CODE, PACKAGES),
        "items": 2,
        "first_try": 0.0,
        "second_try": 0.5,
        "solved_second": [1],
        "eval_generated_tokens": 10,
    }
    return {**row, **fields}


def test_report_gives_the_share_of_groups_without_gradient_and_the_resampling_cost():
    curve = [
        {"step": 1, "retry_success": 0.5, "zero_variance": 0.0, "group_draws": 3.0,
         "drawn_zero_variance": 2 / 3},
        {"step": 2, "retry_success": 0.25, "zero_variance": 1.0, "group_draws": 5.0,
         "drawn_zero_variance": 1.0},
    ]  # fmt: skip
    rows = [report_row("vanilla", 0), report_row("rrr", 1, curve=curve)]
    report = render(rows, parse_args([]), "cmd")
    assert "- seed 1: 1: 0.50, 2: 0.25" in report
    assert "no gradient: 50% over 2 steps" in report
    # 2 of the 3 groups drawn at step 1 and all 5 of step 2: 7 of 8 (not the steps' mean, 83%).
    assert "4.0 groups drawn per trained group, 88% of drawn groups without reward variance" in (
        report
    )
    for point in curve:
        point["group_draws"], point["drawn_zero_variance"] = 1.0, point["zero_variance"]
    assert "dynamic sampling" not in render(rows, parse_args([]), "cmd")
    # Seeds that generated several replacement groups per round are named as such.
    rows += [report_row("rrr", 2, rrr_resample_batch=5)]
    report = render(rows, parse_args([]), "cmd")
    assert "(`--rrr-resample-batch`" in report
    assert "seed 1: one at a time; seed 2: up to 5 together." in report


def test_report_gives_updates_and_train_tokens_per_seed_in_seed_order():
    """A seed without a figure shows "-": a lone figure must not read as every seed's."""
    rows = [
        report_row("rrr", 2, updates=5, steps=5, train_generated_tokens=77961),
        report_row("rrr", 1, updates=1, steps=4),  # reused from before the tokens were kept
        report_row("rise", 1, updates=4, train_generated_tokens=147600),
        report_row("rise", 2, updates=3, train_generated_tokens=120000),
    ]
    report = render(rows, parse_args([]), "cmd")
    rrr = next(line for line in report.splitlines() if line.startswith("| RRR-GRPO"))
    assert "| 1 of 4 / 5 of 5 | - / 77961 |" in rrr
    rise = next(line for line in report.splitlines() if line.startswith("| RISE-AWR"))
    assert "| 4 / 3 | 147600 / 120000 |" in rise


def test_report_names_trained_rows_whose_engine_fell_back_to_torch():
    asked = {"train_engine": "openvino"}
    rows = [
        report_row("rrr", 1, **asked, train_engine_used="openvino"),
        report_row("rise", 1, **asked, train_engine_used="torch"),
        report_row("rise", 2, **asked),  # from before the field: what it asked for
    ]
    report = render(rows, parse_args(["--train-engine", "openvino"]), "cmd")
    assert "rise seed 1 trained with torch rollouts (`--train-engine openvino` could not" in report
    assert "rrr seed 1 trained with" not in report and "rise seed 2 trained with" not in report


def test_report_names_rows_run_on_another_cpu():
    """Wall-clock budgets buy less training on a CPU without bf16 units: the report says so."""
    fast = {
        **machine_info(MEASURED_CODE, PACKAGES),
        "cpu_model": "EPYC",
        "cpu_flags": ["avx512_bf16", "avx512f", "avx2"],
    }
    rows = [report_row("vanilla", 0, machine=fast), report_row("rise", 1, machine=fast)]
    report = render(rows, parse_args([]), "cmd")
    assert "Machine: EPYC (avx512_bf16, avx512f, avx2; " in report
    assert "another CPU" not in report
    rows.append(report_row("rise", 2, machine={**fast, "cpu_flags": ["avx2"]}))
    rows.append(report_row("rise", 3, machine={**fast, "cpu_flags": []}))
    report = render(rows, parse_args([]), "cmd")
    assert (
        "Rows on another CPU than EPYC (avx512_bf16, avx512f, avx2) (a wall-clock budget buys a "
        "different amount of training there): rise seed 2: EPYC (avx2); rise seed 3: EPYC "
        "(no AVX2)." in report
    )
    old = {k: v for k, v in fast.items() if k != "cpu_flags"}  # rows from before the field
    report = render([report_row("vanilla", 0, machine=old), rows[1]], parse_args([]), "cmd")
    assert "another CPU than EPYC (unknown features)" in report
    assert "rise seed 1: EPYC (avx512_bf16, avx512f, avx2)." in report


@pytest.mark.slow
@pytest.mark.parametrize("fast_bf16, quick_dtype", [(True, "bfloat16"), (False, "float32")])
def test_quick_runs_evaluate_in_the_fast_dtype_and_full_runs_in_bf16(
    monkeypatch, fast_bf16, quick_dtype
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "_cpu_has_fast_bf16", lambda: fast_bf16)
    assert parse_args(["--quick"]).eval_dtype == quick_dtype
    assert parse_args(["--eval-dtype", "auto"]).eval_dtype == quick_dtype
    # The protocol of the committed results stays unless asked otherwise.
    assert parse_args([]).eval_dtype == "bfloat16"
    assert parse_args(["--quick", "--eval-dtype", "bfloat16"]).eval_dtype == "bfloat16"


def test_a_run_refuses_to_join_rows_evaluated_in_another_dtype(tmp_path, capsys):
    # A row from before eval_dtype was recorded: evaluated in bf16, the only default there was.
    (tmp_path / "results.jsonl").write_text(json.dumps({"arm": "vanilla", "seed": 0}) + "\n")
    argv = ["--out-dir", str(tmp_path), "--arms", "vanilla", "retry", "--eval-dtype", "float32"]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "evaluated in bfloat16" in err and "--eval-dtype bfloat16" in err
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 1, "nothing appended"


def test_quick_run_trains_both_methods_evaluates_every_arm_and_resumes(tmp_path):
    out = tmp_path / "out"
    argv = ["--quick", "--out-dir", str(out), "--runs-dir", str(tmp_path / "runs")]
    # SmolLM2 solves nothing: only targets of failed groups exist for RISE to update on.
    argv.append("--rise-train-on-failures")
    rows = main(argv)
    by_arm = {r["arm"]: r for r in rows}
    assert set(by_arm) == set(ARMS)
    assert {r["seed"] for r in rows if r["arm"] in ("rrr", "rise")} == {1}
    for arm in ("rrr", "rise"):
        row = by_arm[arm]
        assert row.get("steps", row["updates"]) >= 1 and row["train_generated_tokens"] > 0
        assert row["train_seconds"] > 0
        # The quick budget ends within the first iteration/step: no inner curve points.
        assert row["held_out_curve"] == []
    assert by_arm["rrr"]["curve"], "retry success logged per step"
    # Per step (RRR) and iteration (RISE): what --reuse-from counts a snapshot's cost from.
    for arm in ("rrr", "rise"):
        curve = by_arm[arm]["curve"]
        spent = sum(c["generated_tokens"] for c in curve)
        assert spent == pytest.approx(by_arm[arm]["train_generated_tokens"], abs=len(curve))
    assert sum(not c["skipped"] for c in by_arm["rrr"]["curve"]) == by_arm["rrr"]["updates"]
    assert sum(c["updates"] for c in by_arm["rise"]["curve"]) == by_arm["rise"]["updates"]
    for row in rows:
        assert row["items"] == 2 and 0 <= row["first_try"] <= row["second_try"] <= 1
        assert row["eval_dtype"] == parse_args(["--quick"]).eval_dtype
    fixed = [
        json.loads(line) for line in (out / "episodes" / "fixed_reflection__seed0.jsonl").open()
    ]
    reflections = [t["text"] for e in fixed for t in e["turns"] if t["phase"] == "reflection"]
    assert reflections and set(reflections) == {GENERIC_REFLECTION}
    report = (out / "report.md").read_text()
    assert "RRR-GRPO (trained reflection)" in report and (out / "accuracy.png").stat().st_size
    again = main(argv)
    key = lambda r: (r["arm"], r["seed"], r["first_try"], r["second_try"])  # noqa: E731
    assert sorted(map(key, again)) == sorted(map(key, rows)), "a rerun finds every arm done"

    # Killed during the trained arms' evaluations: their trainings finished (trained.json),
    # their rows are missing, the RRR evaluation wrote one of its two episodes.
    for arm in ("rrr", "rise"):
        trained = json.loads((Path(by_arm[arm]["run_dir"]) / TRAINED_FILE).read_text())
        assert trained["train_seconds"] == by_arm[arm]["train_seconds"]
        assert "policy" not in trained and "tokenizer" not in trained
    kept = [r for r in again if r["arm"] not in ("rrr", "rise")]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    rrr_episodes = out / "episodes" / "rrr__seed1.jsonl"
    first_episode = rrr_episodes.read_text().splitlines()[0]
    rrr_episodes.write_text(first_episode + "\n")

    def no_training(args, seed):
        raise AssertionError("a finished training was redone")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "train_rrr", no_training)
        patch.setattr(harness, "train_rise", no_training)
        resumed = {r["arm"]: r for r in main(argv)}
    for arm in ("rrr", "rise"):
        for field in ("train_seconds", "updates", "train_generated_tokens", "run_dir"):
            assert resumed[arm][field] == by_arm[arm][field], (arm, field)
        assert resumed[arm]["items"] == 2
    assert key(resumed["rise"]) == key(by_arm["rise"]), "its finished evaluation was read back"
    lines = rrr_episodes.read_text().splitlines()
    assert lines[0] == first_episode and len(lines) == 2, "the episode file was resumed"


def test_curve_marks_split_the_budget_evenly():
    assert curve_marks(parse_args(["--budget-minutes", "45"])) == [15.0, 30.0]
    assert curve_marks(parse_args(["--budget-minutes", "60", "--curve-points", "3"])) == [
        15.0,
        30.0,
        45.0,
    ]
    assert curve_marks(parse_args(["--curve-points", "0"])) is None


def test_report_counts_problems_once_and_draws_the_held_out_curve():
    base = {"machine": machine_info(MEASURED_CODE, PACKAGES), "items": 4}
    base["eval_generated_tokens"] = 10
    retry = {**base, "arm": "retry", "seed": 0, "first_try": 0.25, "second_try": 0.25}
    retry["solved_second"] = [0]
    rows = [retry]
    for seed, solved in ((1, [0, 1, 2]), (2, [1, 2, 3])):
        point = {"minutes": 15.2, "iteration": 2, "first_try": 0.5, "second_try": 0.5}
        rows.append(
            {**base, "arm": "rise", "seed": seed, "first_try": 0.75, "second_try": 0.75}
            | {"solved_second": solved, "train_seconds": 2880.0, "held_out_curve": [point]}
        )
    report = render(rows, parse_args([]), "cmd")
    # Per seed: seed 1 gains items 1 and 2; seed 2 gains 1, 2 and 3 and loses 0.
    assert "| rise vs retry | 1 | 2 | 0 | 0.5 |" in report
    assert "| rise vs retry | 2 | 3 | 1 | 0.62 |" in report
    # Per problem (means over the 2 seeds): 0 from 1 to 0.5 (lost), 1 and 2 up to 1, 3 up to
    # 0.5: 3 gained, 1 lost, counted once each; no count pooled over seeds.
    assert "| rise vs retry | 2nd | 4 | 0.750 | 0.250 | +0.500 [" in report
    assert "| 3 | 1 | 0.62 | " in report
    assert "pooled" not in report
    assert "Against a one-seed arm, read the permutation test" in report
    one_seed = render(rows[:2], parse_args([]), "cmd")
    assert "| rise vs retry | 2nd | 4 | 0.750 | 0.250 |" in one_seed
    assert "read the permutation test" not in one_seed, "one seed each: both tests count alike"
    assert (
        "- rise seed 2: 0.0 min 0.250 / 0.250, 15.2 min 0.500 / 0.500, 48.0 min 0.750 / 0.750"
        in (report)
    )


def write_run(out, arms_right, *, seeds=(0,)):
    """Episodes and rows of a scripted run on 4 test items, as the harness writes them."""
    command = (
        "python -m benchmarks.rrr_vs_rise --env-kwargs '{\"size\": 8}' --eval-split test "
        "--eval-n 4 --arms vanilla retry rise"
    )
    (out / "episodes").mkdir(parents=True)
    rows = []
    for arm, seed, right_at in arms_right:
        episodes = episodes_of(arm, right_at)
        with (out / "episodes" / f"{arm}__seed{seed}.jsonl").open("w") as handle:
            for episode in episodes:
                handle.write(json.dumps(episode.to_dict()) + "\n")
        row = {"arm": arm, "seed": seed, "command": command, **arm_scores(arm, episodes)}
        row |= {"train_seconds": 60.0} if seed else {}
        rows.append(row | {"machine": machine_info(MEASURED_CODE, PACKAGES)})
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_render_only_rebuilds_the_report_with_problem_statistics_and_the_shortcut(tmp_path):
    out = tmp_path / "run"
    # Two RISE seeds that solve the same problems (0 and 1, both on the 1st try) against a
    # control that solves problem 0 on the retry.
    write_run(
        out,
        [("retry", 0, {0: {2}}), ("rise", 1, {0: {1}, 1: {1}}), ("rise", 2, {0: {1}, 1: {1}})],
    )
    main(["--render-only", "--out-dir", str(out)])
    report = (out / "report.md").read_text()
    assert "pooled" not in report
    # The same p-value as one seed: two identical seeds add no evidence.
    assert (
        "| rise vs retry | 2nd | 4 | 0.500 | 0.250 | +0.250 [+0.000, +0.750] | 1 | 0 | 1 | 1 |"
        in (report)
    )
    assert "| rise vs retry | 1st | 4 | 0.500 | 0.000 | +0.500 [" in report
    shortcut = json.loads((out / "shortcut.json").read_text())
    assert shortcut["chosen_on"] == "train", "Countdown-v0 has no validation split"
    assert shortcut["forms"] == 16
    assert "| shortcut: fixed form `" in report and "(model-free, chosen on train)" in report
    assert "| rise vs shortcut | 2nd | 4 |" in report
    assert "**Gains split by the shortcut**" in report
    # The scripted retry fixes problem 0 for the control; RISE's retries are never needed on
    # 0 and 1 and repeat "1 + 1" on 2 and 3.
    assert "| retry | - | 4 | 1 | 3 of 4 | 0 |" in report
    assert "| rise | 1 | 2 | 0 | 2 of 2 | 0 |" in report
    assert (out / "accuracy.png").stat().st_size


@pytest.mark.parametrize(
    "gained, label",
    [
        (range(10), "| 100% | `f` 10/10 | **in shortcut-solvable problems** |"),
        ([*range(9), 10], "| 90% | `f` 9/10 | **in shortcut-solvable problems (mostly)** |"),
        ([*range(8), 10, 11], "| 80% | `f` 8/10 | not the shortcut's |"),
        ([10, 11], "| 0% | `g` 2/2 | **in problems that `g` solves** |"),
    ],
)
def test_a_gain_in_shortcut_solvable_problems_is_labelled_so(gained, label):
    """Problems 0..9 of 20 are solved by the shortcut form; the arm gains ``gained``."""
    first = {i: {"first": float(i in gained), "second": float(i in gained)} for i in range(20)}
    zero = {i: {"first": 0.0, "second": 0.0} for i in range(20)}
    shortcut = {
        "form": "f",
        "solved": {"f": list(range(10)), "g": [10, 11]},
        "outcomes": {i: {"first": float(i < 10), "second": float(i < 10)} for i in range(20)},
    }
    evidence = Evidence({("rise", 1): first, ("retry", 0): zero}, shortcut=shortcut)
    lines = "\n".join(gain_split_lines(evidence, ["retry", "rise"]))
    inside = len(gained) - sum(i >= 10 for i in gained)
    outside = len(gained) - inside
    assert f"| rise vs retry | 2nd | 10: +{inside} / -0 | 10: +{outside} / -0 {label}" in lines
    # The control solving more than the arm: no net gain to attribute.
    evidence = Evidence({("rise", 1): zero, ("retry", 0): first}, shortcut=shortcut)
    assert "| no net gain |" in "\n".join(gain_split_lines(evidence, ["retry", "rise"]))


def test_render_only_needs_rows(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--render-only", "--out-dir", str(tmp_path)])
    assert stopped.value.code == 2 and "no rows" in capsys.readouterr().err


def test_episode_outcomes_read_first_and_second_try_and_answers(tmp_path):
    rows = write_run(tmp_path / "run", [("vanilla", 0, {0: {1}, 1: {2}})])
    outcomes = episode_outcomes(tmp_path / "run" / "episodes" / "vanilla__seed0.jsonl")
    assert [outcomes[i]["first"] for i in range(4)] == [1.0, 0.0, 0.0, 0.0]
    assert [outcomes[i]["second"] for i in range(4)] == [1.0, 1.0, 0.0, 0.0]
    assert outcomes[2]["answers"] == ["1+1", "1+1"] and outcomes[2]["correct"] == [False, False]
    assert rows[0]["solved_second"] == [0, 1]


@pytest.mark.slow
def test_snapshots_of_a_rise_run_become_points_of_the_held_out_curve(tmp_path):
    from agents.rise_awr import Args, train

    env_kwargs = json.dumps({"num_count": 2, "number_range": [1, 20], "size": 50})
    run = train(
        Args(
            output_dir=str(tmp_path / "runs"),
            env_id="rrr/Countdown-v0",
            env_kwargs=env_kwargs,
            model="smollm2-135m",
            use_peft=True,
            lora_r=4,
            iterations=2,
            items_per_iteration=1,
            samples_per_item=2,
            best_of=2,
            max_new_tokens=8,
            eval_n=0,
            threads=1,
            train_on_failures=True,
            # Both marks pass in iteration 1: one snapshot; iteration 2 is the end point.
            snapshot_minutes=[1e-6, 2e-6],
        )
    )
    args = parse_args(["--quick", "--model", "smollm2-135m", "--env-kwargs", env_kwargs])
    points = held_out_curve("rise", 1, run.run_dir, args, tmp_path)
    assert len(points) == 1 and points[0]["iteration"] == 1
    assert points[0]["mark"] == 2e-6, "named after the last mark it passed"
    assert 0 < points[0]["minutes"] < run.train_seconds / 60
    assert points[0]["items"] == 2 and 0 <= points[0]["first_try"] <= points[0]["second_try"]
    assert (tmp_path / "rise__seed1__2e-06min.jsonl").exists()


def test_retry_context_reaches_only_the_episodes_with_a_reflection():
    assert reflect_options(parse_args([])) == {}, "the paper's default adds no env option"
    args = parse_args(["--retry-context", "reflection"])
    assert reflect_options(args) == {"retry_context": "reflection"}
    for arm in ("vanilla", "fixed_reflection", "rrr"):
        env = gym.make("rrr/Countdown-v0", **protocol(arm)["env"], **reflect_options(args))
        assert env.unwrapped.retry_context == "reflection"
    base = {"machine": machine_info(MEASURED_CODE, PACKAGES), "items": 1, "seed": 0}
    row = {**base, "arm": "vanilla", "first_try": 0.0, "second_try": 0.0, "solved_second": []}
    row["eval_generated_tokens"] = 1
    assert "`--retry-context reflection`" in render([row], args, "cmd")
    assert "--retry-context" not in render([row], parse_args([]), "cmd")


def test_new_options_reach_both_trainers_and_the_evaluation(tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    assert parse_args(["--quick", *runs]).runs_dir == tmp_path, "tests keep their runs apart"
    args = parse_args(runs)
    config, rise = rrr_config(args, seed=1), rise_config(args, seed=1)
    assert config.engine == rise.engine == "torch"
    assert config.truncated_reflections == "keep" and config.collect_temperature == 1.0
    # Without --retry-max-tokens, retries keep the attempts' limit everywhere.
    assert config.retry_max_tokens == rise.sampling().retry.max_new_tokens == 256
    assert rise.best_of_sampling().max_new_tokens == eval_sampling("rrr", args).retry.max_new_tokens
    # RRR-GRPO checkpoints every step (the newest kept) and resumes from the newest.
    assert (config.save_steps, config.save_total_limit) == (1, 1)
    assert config.save_strategy == "steps" and config.resume_from_checkpoint == "last"
    assert rise.save_every == 1 and rise.resume is None
    assert (config.resample_groups, config.resample_batch) == (0, 1)
    resampled = parse_args([*runs, "--rrr-resample-groups", "5", "--rrr-resample-batch", "5"])
    config = rrr_config(resampled, seed=1)
    assert (config.resample_groups, config.resample_batch) == (5, 5)
    argv = [*runs, "--train-engine", "openvino", "--rrr-truncated-reflections", "penalize"]
    argv += ["--rrr-collect-temperature", "0", "--retry-max-tokens", "40"]
    args = parse_args(argv)
    config, rise = rrr_config(args, seed=1), rise_config(args, seed=1)
    assert config.engine == rise.engine == "openvino"
    assert config.truncated_reflections == "penalize" and config.collect_temperature == 0.0
    assert config.retry_max_tokens == 40 and config.attempt_max_tokens == 256
    assert rise.sampling().retry.max_new_tokens == rise.best_of_sampling().max_new_tokens == 40
    assert rise.sampling().attempt.max_new_tokens == 256
    for arm in ("vanilla", "retry", "rrr", "rise"):
        sampling = eval_sampling(arm, args)
        assert (sampling.attempt.max_new_tokens, sampling.retry.max_new_tokens) == (256, 40)
    report = render([quick_row("rrr")], args, "cmd")
    assert "(40 per retry, also in training)" in report and "`--train-engine`" in report
    assert "`--rrr-truncated-reflections penalize`" in report
    assert "`--rrr-collect-temperature`" in report
    plain = render([quick_row("rrr")], parse_args(runs), "cmd")
    assert "per retry" not in plain and "--train-engine" not in plain


def test_the_harness_names_the_trainers_truncation_choices():
    from agents.grpo_reflect_config import TRUNCATED_REFLECTIONS as CONFIG_CHOICES

    assert TRUNCATED_REFLECTIONS == CONFIG_CHOICES


def quick_row(arm: str, **fields) -> dict:
    row = {"arm": arm, "seed": 1, "machine": machine_info(MEASURED_CODE, PACKAGES), "items": 1}
    row.update(first_try=0.0, second_try=0.0, solved_second=[], eval_generated_tokens=1)
    return {**row, **fields}


@pytest.mark.parametrize(
    "row, argv, message",
    [
        # Rows from before retry_max_tokens was recorded retried with the attempts' limit.
        ({"arm": "vanilla", "seed": 0}, ["--retry-max-tokens", "99"], "--retry-max-tokens 256"),
        ({"arm": "rise", "seed": 1, "train_engine": "openvino"}, [], "--train-engine openvino"),
        ({"arm": "rrr", "seed": 1}, ["--train-engine", "openvino"], "--train-engine torch"),
        (
            {"arm": "rrr", "seed": 1, "rrr_truncated_reflections": "mask"},
            [],
            "--rrr-truncated-reflections mask",
        ),
        ({"arm": "rrr", "seed": 1}, ["--rrr-collect-temperature", "0"], "temperature 1.0"),
    ],
)
def test_a_run_refuses_rows_made_with_other_result_changing_options(
    tmp_path, capsys, row, argv, message
):
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(SystemExit) as stopped:
        main(["--out-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 1, "nothing appended"


def test_rows_of_arms_a_run_does_not_train_are_not_compared(tmp_path):
    from benchmarks.rrr_vs_rise import check_resume

    row = {"arm": "rise", "seed": 1, "train_engine": "openvino"}
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    check_resume(parse_args(["--out-dir", str(tmp_path), "--arms", "vanilla", "rrr"]))


def test_run_folders_resume_from_their_newest_checkpoint_and_refuse_other_options(tmp_path, capsys):
    runs = ["--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    args = parse_args([*runs, "--arms", "rrr", "rise"])
    assert run_state("rrr", args, 1) == run_state("rise", args, 1) == ("fresh", None)
    # RRR-GRPO: the newest complete checkpoint-N of the run folder, which records its options;
    # checkpoint-15 was cut while saving (transformers writes trainer_state.json last).
    folder = rrr_run_dir(args, 1)
    for step in (3, 12, 15):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if step < 15:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    options = {"config": rrr_options(args, 1), "model": rrr_model_options(args)}
    (folder / RRR_OPTIONS_FILE).write_text(json.dumps(options))
    assert run_state("rrr", args, 1) == ("resume", folder / "checkpoint-12")
    (folder / TRAINED_FILE).write_text("{}")
    assert run_state("rrr", args, 1) == ("finished", folder)
    # RISE-AWR: the seed's newest run folder with a checkpoint (or a finished training).
    setting = folder.parent
    for stamp in (100, 200, 300):
        run = setting / f"rrr_Countdown-v0__rise__1__{stamp}"
        run.mkdir()
        (run / "args.json").write_text(json.dumps({**rise_options(args, 1), "resume": None}))
        # The last one was killed before its first checkpoint; the one before it between
        # moving its old checkpoint aside and its new one into place.
        for name in {100: ["checkpoint"], 200: ["checkpoint.old", "checkpoint.tmp"]}.get(stamp, []):
            (run / name).mkdir()
            (run / name / "trainer_state.pt").write_bytes(name.encode())
    (setting / "rrr_Countdown-v0__rise__2__400").mkdir()  # another seed's
    assert [f.name[-3:] for f in rise_run_dirs(args, 1)] == ["100", "200", "300"]
    newest = setting / "rrr_Countdown-v0__rise__1__200"
    assert run_state("rise", args, 1) == ("resume", newest / "checkpoint")
    assert (newest / "checkpoint" / "trainer_state.pt").read_bytes() == b"checkpoint.tmp"
    assert not (newest / "checkpoint.old").exists()
    assert rise_config(args, 1, newest / "checkpoint").resume == str(newest / "checkpoint")

    # The same folders under other options: refused before any model loads, in one line.
    other = [*runs, "--arms", "rrr", "--learning-rate", "1e-5"]
    for arms, changed in ((["rrr"], "learning_rate"), (["rise"], "learning_rate")):
        argv = [*runs, "--arms", *arms, "--learning-rate", "1e-5"]
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2
        err = capsys.readouterr().err.strip()
        assert changed in err and "pick another --runs-dir or delete the folder" in err
        assert len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="max_minutes"):
        run_state("rrr", parse_args([*runs, "--budget-minutes", "99"]), 1)
    with pytest.raises(ValueError, match="engine"):
        run_state("rise", parse_args([*runs, "--train-engine", "openvino"]), 1)
    assert run_state("rrr", parse_args(other), 2) == ("fresh", None), "another seed"
    # A checkpoint without the options it was made with is not resumed either.
    (folder / RRR_OPTIONS_FILE).unlink()
    with pytest.raises(ValueError, match=RRR_OPTIONS_FILE):
        run_state("rrr", args, 1)


class Killed(Exception):
    """Stands for the end of a session, which kills the run."""


def test_a_run_killed_during_training_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    import torch as torch_

    from agents import grpo_reflect, rise_awr

    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--quick", "--arms", "rrr", "rise", "--rise-train-on-failures"]
    argv += ["--out-dir", str(out), "--runs-dir", str(runs)]
    args = parse_args(argv)
    save = grpo_reflect.RecordSpentTime.on_save

    def killed_after_saving(self, *a, **k):
        raise Killed  # where the older version wrote the time, the moment after saving

    # 1. RRR-GRPO is killed once its first checkpoint is written.
    monkeypatch.setattr(grpo_reflect.RecordSpentTime, "on_save", killed_after_saving)
    with pytest.raises(Killed):
        main(argv)
    folder = rrr_run_dir(args, 1)
    (checkpoint,) = folder.glob("checkpoint-*")
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]
    spent = saved["RecordSpentTime"]["attributes"]["train_seconds"]
    assert spent > 0 and not (folder / TRAINED_FILE).exists()
    assert not (out / "results.jsonl").exists()
    size = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    print(f"RRR checkpoint of smollm2-135m (LoRA r 16): {size / 2**20:.1f} MiB")

    # 2. The rerun resumes it (and RISE-AWR is killed once its first checkpoint is written).
    monkeypatch.setattr(grpo_reflect.RecordSpentTime, "on_save", save)
    resumed = []
    find = grpo_reflect.resume_checkpoint
    monkeypatch.setattr(
        grpo_reflect, "resume_checkpoint", lambda a: resumed.append(find(a)) or resumed[-1]
    )
    save_rise = rise_awr.save_checkpoint

    def rise_killed(*a, **k):
        save_rise(*a, **k)
        raise Killed

    monkeypatch.setattr(rise_awr, "save_checkpoint", rise_killed)
    with pytest.raises(Killed):
        main(argv)
    assert resumed == [(str(checkpoint), spent)], "resumed with the time spent before"
    (rrr,) = harness.read_rows(out / "results.jsonl")
    assert rrr["arm"] == "rrr" and rrr["run_dir"] == str(folder)
    assert rrr["steps"] > int(checkpoint.name.split("-")[1]), "it went on from the checkpoint"
    assert rrr["train_seconds"] > spent, "the killed run's time counts"
    assert rrr["curve"][0]["step"] == 1, "the killed run's logged step is kept"
    (rise_run,) = rise_run_dirs(args, 1)
    rise_spent = torch_.load(rise_run / "checkpoint" / "trainer_state.pt")["train_seconds"]

    # 3. The next rerun resumes RISE-AWR's run folder; RRR's row is kept.
    monkeypatch.setattr(rise_awr, "save_checkpoint", save_rise)
    rows = main(argv)
    assert [r["arm"] for r in rows] == ["rrr", "rise"] and rows[0] == rrr
    assert rise_run_dirs(args, 1) == [rise_run], "no new run folder"
    assert rows[1]["run_dir"] == str(rise_run) and rows[1]["iterations"] >= 1
    assert rows[1]["train_seconds"] >= rise_spent


def test_the_easy_default_task_options_apply_only_to_the_plain_countdown_ids():
    easy = json.loads(harness.EASY_COUNTDOWN)
    assert json.loads(harness.parse_args([]).env_kwargs) == easy
    assert json.loads(harness.parse_args(["--env", "rrr/Countdown-v1"]).env_kwargs) == easy
    # A preset sets its own options: the easy ones (2 numbers) would contradict it.
    preset = harness.parse_args(["--env", "rrr/Countdown3-NoFixedForms-v1"])
    assert preset.env_kwargs == "{}"
    assert harness.setting_name(preset) == "countdown3-nofixedforms-v1__qwen2.5-coder-0.5b"
    given = harness.parse_args(["--env", "rrr/GSM8K-v0", "--env-kwargs", '{"a": 1}'])
    assert json.loads(given.env_kwargs) == {"a": 1}


def test_a_step_counts_as_skipped_from_its_flag_or_else_its_zero_variance():
    from benchmarks.rrr_vs_rise import skipped_step

    assert skipped_step({"rrr/step_skipped": 1.0, "frac_reward_zero_std": 0.0})
    assert not skipped_step({"rrr/step_skipped": 0.0, "frac_reward_zero_std": 1.0})
    # A run logged before the flag: the skip was on, and no group had variance.
    assert skipped_step({"rrr/skipped_steps": 3, "frac_reward_zero_std": 1.0})
    assert not skipped_step({"rrr/skipped_steps": 3, "frac_reward_zero_std": 0.5})
    # Without the skip (TRL's behaviour) every step updates.
    assert not skipped_step({"frac_reward_zero_std": 1.0})
