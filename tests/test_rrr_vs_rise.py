"""The head-to-head harness: arm protocols, scores, the sign test, and a quick real run."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch

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
    Evidence,
    arm_scores,
    curve_marks,
    episode_outcomes,
    gain_split_lines,
    held_out_curve,
    main,
    parse_args,
    protocol,
    reflect_options,
    render,
    rrr_config,
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
    ],
)
def test_bad_command_lines_fail_clearly(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


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


def test_report_gives_the_share_of_groups_without_gradient_and_the_resampling_cost():
    base = {
        "machine": machine_info(MEASURED_CODE, PACKAGES),
        "items": 2,
        "first_try": 0.0,
        "second_try": 0.5,
        "solved_second": [1],
    }
    curve = [
        {"step": 1, "retry_success": 0.5, "zero_variance": 0.0, "group_draws": 3.0,
         "drawn_zero_variance": 2 / 3},
        {"step": 2, "retry_success": 0.25, "zero_variance": 1.0, "group_draws": 5.0,
         "drawn_zero_variance": 1.0},
    ]  # fmt: skip
    rows = [
        {**base, "arm": "vanilla", "seed": 0, "eval_generated_tokens": 10},
        {**base, "arm": "rrr", "seed": 1, "eval_generated_tokens": 10, "curve": curve},
    ]
    report = render(rows, parse_args([]), "cmd")
    assert "- seed 1: 1: 0.50, 2: 0.25" in report
    assert "no gradient: 50% over 2 steps" in report
    assert "4.0 groups drawn per trained group, 83% of drawn groups without reward variance" in (
        report
    )
    for point in curve:
        point["group_draws"], point["drawn_zero_variance"] = 1.0, point["zero_variance"]
    assert "dynamic sampling" not in render(rows, parse_args([]), "cmd")


def test_report_names_rows_run_on_another_cpu():
    """Wall-clock budgets buy less training on a CPU without bf16 units: the report says so."""
    fast = {
        **machine_info(MEASURED_CODE, PACKAGES),
        "cpu_model": "EPYC",
        "cpu_flags": ["avx512_bf16", "avx512f", "avx2"],
    }
    base = {
        "items": 2,
        "first_try": 0.0,
        "second_try": 0.5,
        "solved_second": [1],
        "eval_generated_tokens": 10,
    }
    rows = [
        {**base, "arm": "vanilla", "seed": 0, "machine": fast},
        {**base, "arm": "rise", "seed": 1, "machine": fast},
    ]
    report = render(rows, parse_args([]), "cmd")
    assert "Machine: EPYC (avx512_bf16, avx512f, avx2; " in report
    assert "another CPU" not in report
    rows.append({**base, "arm": "rise", "seed": 2, "machine": {**fast, "cpu_flags": ["avx2"]}})
    rows.append({**base, "arm": "rise", "seed": 3, "machine": {**fast, "cpu_flags": []}})
    report = render(rows, parse_args([]), "cmd")
    assert (
        "Rows on another CPU than EPYC (avx512_bf16, avx512f, avx2) (a wall-clock budget buys a "
        "different amount of training there): rise seed 2: EPYC (avx2); rise seed 3: EPYC "
        "(no AVX2)." in report
    )
    old = {k: v for k, v in fast.items() if k != "cpu_flags"}  # rows from before the field
    report = render(
        [{**base, "arm": "vanilla", "seed": 0, "machine": old}, rows[1]], parse_args([]), "cmd"
    )
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
        assert row["updates"] >= 1 and row["train_generated_tokens"] > 0
        assert row["train_seconds"] > 0
        # The quick budget ends within the first iteration/step: no inner curve points.
        assert row["held_out_curve"] == []
    assert by_arm["rrr"]["curve"], "retry success logged per step"
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
