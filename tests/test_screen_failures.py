"""Screened failures (issue 25): the band, the rollout, the bundled set, the command line.

``agents.screen_failures`` keeps the failures whose retry success rate under the untrained
model lies in a band; the no-argument ``agents.grpo_reflect`` trains on the bundled set so
that its steps have reward variance. Scripted rewards and generators stand in for the model:
the screening's logic is the point, not the model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gymnasium as gym
import pytest
from transformers import AutoTokenizer

import agents.models
import rrr_env
from agents import screen_failures
from agents.grpo_reflect import load_failures
from agents.reflection_rollout import EPISODE_OPTIONS, EpisodeReplayer
from agents.screen_failures import ScreenArgs, bundled_sets, in_band, screen, screen_groups
from rrr_env.tasks.countdown_solver import solve

gym.register_envs(rrr_env)
EASY = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'
TASK = re.compile(r"Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)")
GOOD, BAD = "Use each number exactly once.", "No idea."


def scripted_groups(successes: dict[int, list[int]], calls: list | None = None):
    """``run_groups`` whose rewards come from a table: row ``i``'s k-th retry is
    ``successes[i][k]``, in the order the retries are asked for."""
    drawn: dict[int, int] = {}

    def run_groups(rows, n):
        if calls is not None:
            calls.append(([row["failure"] for row in rows], n))
        out = []
        for row in rows:
            i = row["failure"]
            start = drawn.get(i, 0)
            out.append([float(r) for r in successes[i][start : start + n]])
            drawn[i] = start + n
        return out

    return run_groups


def test_screening_keeps_exactly_the_failures_in_the_band(tmp_path):
    # 16 retries each: 0, 1, 4, 8, 12, 14, 16 successes; the 1-success row's one success comes
    # after the prescreen's 8, so the prescreen stops it.
    table = {
        0: [0] * 16,
        1: [0] * 8 + [1] + [0] * 7,
        2: [1, 0, 0, 0] * 4,
        3: [1, 0] * 8,
        4: [1, 1, 1, 0] * 4,
        5: [1, 0, 1, 0] + [1] * 12,
        6: [1] * 16,
    }
    failures = [{"prompt": [{"role": "user", "content": str(i)}], "index": i} for i in table]
    args = ScreenArgs(output_dir=str(tmp_path), chunk_failures=3)
    calls: list = []
    kept = screen(args, failures, scripted_groups(table, calls), progress=False)
    assert [row["failure"] for row in kept] == [2, 3, 4]  # 4/16, 8/16, 12/16: in [0.25, 0.75]
    rates = {
        row["failure"]: (row["retry_successes"], row["retries"])
        for row in map(json.loads, (tmp_path / "rates.jsonl").read_text().splitlines())
    }
    assert rates == {
        0: (0, 8),
        1: (0, 8),
        2: (4, 16),
        3: (8, 16),
        4: (12, 16),
        5: (14, 16),
        6: (8, 8),
    }
    # Only rows whose first 8 rewards differ were sampled further.
    assert ([2], 8) in calls and all(n in (8,) for _, n in calls)
    assert sorted(i for ids, n in calls if n == 8 for i in ids) == [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    # The screened file holds the band, loads as a dataset of failures and has its metadata.
    dataset = load_failures(tmp_path / "screened.jsonl")
    assert list(dataset["index"]) == [2, 3, 4]
    meta = screen_failures.read_meta(tmp_path / "screened.jsonl")
    assert meta["counts"]["screened"] == 7 and meta["counts"]["in_band"] == 3
    assert meta["band"] == [0.25, 0.75] and meta["rollout"]["group_size"] == 16
    assert meta["settings"]["env_kwargs"] == json.loads(EASY)
    assert meta["counts"]["by_successes"] == {
        "0/8": 2,
        "4/16": 1,
        "8/16": 1,
        "12/16": 1,
        "14/16": 1,
        "8/8": 1,
    }


def test_without_prescreen_every_failure_gets_the_whole_group(tmp_path):
    table = {0: [0] * 4, 1: [1, 0, 0, 0], 2: [1, 1, 0, 0]}
    rows = [{"failure": i, "prompt": [], "index": i} for i in table]
    done = screen_groups(rows, scripted_groups(table), group_size=4, prescreen=0)
    assert [(r["retry_successes"], r["retries"]) for r in done] == [(0, 4), (1, 4), (2, 4)]
    args = ScreenArgs(group_size=4, prescreen=0, min_rate=0.0, max_rate=0.3)
    assert [in_band(r, args) for r in done] == [True, True, False]


def test_a_screening_resumes_and_refuses_other_options(tmp_path):
    table = {i: [1, 0] * 8 for i in range(5)}
    failures = [{"prompt": [{"role": "user", "content": str(i)}], "index": i} for i in table]
    args = ScreenArgs(output_dir=str(tmp_path), chunk_failures=2, max_failures=3)
    calls: list = []
    assert len(screen(args, failures, scripted_groups(table, calls), progress=False)) == 3
    args.max_failures = None
    calls.clear()
    assert len(screen(args, failures, scripted_groups(table, calls), progress=False)) == 5
    assert sorted({i for ids, _ in calls for i in ids}) == [3, 4]  # only the new ones
    with pytest.raises(ValueError, match="another screening"):
        screen(ScreenArgs(output_dir=str(tmp_path), group_size=12), failures, None, progress=False)


def test_confirmation_judges_the_band_on_fresh_retries_alone(tmp_path):
    # Row 0 is lucky in its first group (4/16) and rarely fixed after (1 of 16 more); row 1
    # holds its rate; row 2 is out of the band at first and never confirmed.
    table = {
        0: [1, 0, 0, 0] * 4 + [0] * 15 + [1],
        1: [1, 0] * 16,
        2: [0] * 32,
    }
    failures = [{"prompt": [{"role": "user", "content": str(i)}], "index": i} for i in table]
    args = ScreenArgs(output_dir=str(tmp_path), prescreen=0, confirm=16)
    positions: list[int] = []
    calls: list = []
    kept = screen(
        args, failures, scripted_groups(table, calls), progress=False, before_chunk=positions.append
    )
    assert [row["failure"] for row in kept] == [1]
    assert ([0, 1], 16) in calls and not any(2 in ids for ids, _ in calls[1:])
    assert positions[-1] == screen_failures.CONFIRM_OFFSET  # other seeds than the first groups
    meta = screen_failures.read_meta(tmp_path / "screened.jsonl")
    assert meta["counts"]["confirmed_by_successes"] == {"1/16": 1, "8/16": 1}
    # A rerun finds both confirmed and samples nothing more; without --confirm, both are in.
    calls.clear()
    assert [
        r["failure"] for r in screen(args, failures, scripted_groups(table, calls), progress=False)
    ] == [1]
    assert calls == []
    unconfirmed = ScreenArgs(output_dir=str(tmp_path), prescreen=0)
    assert [r["failure"] for r in screen(unconfirmed, failures, None, progress=False)] == [0, 1]


def test_enough_stops_the_screening_once_the_band_has_that_many(tmp_path):
    table = {i: [1, 0] * 8 for i in range(6)}
    failures = [{"prompt": [{"role": "user", "content": str(i)}], "index": i} for i in table]
    args = ScreenArgs(output_dir=str(tmp_path), chunk_failures=2, enough=3)
    assert len(screen(args, failures, scripted_groups(table), progress=False)) == 4


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(agents.models.resolve_model("smollm2-135m").path)
    tokenizer.padding_side = "left"
    return tokenizer


class Scripted:
    """Reflections alternate GOOD / BAD within each group (or are all BAD); a retry after GOOD
    solves the task, any other retry answers wrong. The env grades every retry."""

    def __init__(self, tokenizer, useful: bool = True) -> None:
        self.tokenizer, self.useful = tokenizer, useful
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.calls: list[tuple[int, int, int]] = []

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) + [self.eos]

    def __call__(self, prompt_ids, max_new_tokens, group_size=1):
        self.calls.append((len(prompt_ids), max_new_tokens, group_size))
        out = []
        for ids in prompt_ids:
            context = self.tokenizer.decode(ids)
            if context.rstrip().endswith("next time.<|im_end|>\n<|im_start|>assistant"):
                out.append(self.encode(GOOD if self.useful and len(out) % 2 == 0 else BAD))
            elif GOOD in context.split("Reflect on what went wrong")[-1]:
                numbers, target = TASK.findall(context)[-1]
                solution = solve([int(n) for n in numbers.split(",")], int(target))
                out.append(self.encode(f"\\boxed{{{solution}}}"))
            else:
                out.append(self.encode("\\boxed{1 + 1}"))
        return out, None


def env_failures(args: ScreenArgs, count: int) -> list[dict]:
    env = gym.make(args.env, **args.env_options())
    rows = []
    for index in range(count):
        env.reset(options={"index": index})
        obs, _, _, _, info = env.step("I do not know.")
        assert info["phase"] == "reflection"
        rows.append({"prompt": obs, "index": index})
    return rows


@pytest.mark.parametrize("useful", [True, False])
def test_the_trainer_rollout_rates_real_failures_graded_by_the_env(tmp_path, tokenizer, useful):
    args = ScreenArgs(output_dir=str(tmp_path), group_size=4, prescreen=2, chunk_failures=2)
    failures = env_failures(args, 3)
    generate = Scripted(tokenizer, useful)
    run_groups = screen_failures.rollout_groups(
        args,
        lambda: gym.make(args.env, **args.env_options()),
        failures,
        generate,
        generate,
        tokenizer,
        {generate.eos},
    )
    kept = screen(args, failures, run_groups, progress=False)
    if useful:  # half of each group's retries solve the task: rate 0.5, in the band
        assert [row["index"] for row in kept] == [0, 1, 2]
        assert all(row["retry_successes"] == 2 and row["retries"] == 4 for row in kept)
    else:  # no retry succeeds: the prescreen's 2 stop every failure
        assert kept == []
        rates = [json.loads(x) for x in (tmp_path / "rates.jsonl").read_text().splitlines()]
        assert [(r["retry_successes"], r["retries"]) for r in rates] == [(0, 2)] * 3
    # The trainer's token limits and group sizes: reflections of 64, retries of 192 tokens.
    assert (4, 64, 2) in generate.calls and (4, 192, 1) in generate.calls


def test_the_bundled_sets_load_replay_in_their_env_and_match_the_demo():
    from agents.grpo_reflect import GRPOReflectConfig

    sets = bundled_sets()
    assert sets, "no bundled screened set"
    for path, meta in sets:
        dataset = load_failures(path)
        rows = dataset.to_list()
        low, high = meta["band"]
        # Two demo steps, each redrawing from the other failure when a group has no variance.
        assert len(rows) == meta["counts"]["in_band"] >= 2
        assert all(
            low <= r["retry_rate"] <= high and r["retries"] == meta["rollout"]["group_size"]
            for r in rows
        )
        confirm = meta["rollout"].get("confirm", 0)
        assert all(
            r["confirm_retries"] == confirm and low <= r["confirm_rate"] <= high
            for r in rows
            if confirm
        )
        options = {**meta["env_kwargs"], **EPISODE_OPTIONS, "split": meta["split"]}
        replayer = EpisodeReplayer(lambda o=options, m=meta: gym.make(m["env_id"], **o), rows)
        (env,) = replayer.envs(1)
        for row in rows:  # raises unless the env reproduces the failure prompt
            assert replayer.replay(env, row["prompt"])["phase"] == "reflection"
    demo = GRPOReflectConfig(output_dir="unused")
    default_set = screen_failures.find_bundled(
        screen_failures.run_settings(
            model=demo.model,
            env_id=demo.env_id,
            env_kwargs=demo.env_kwargs,
            split=demo.train_split,
            attempt_max_tokens=demo.attempt_max_tokens,
            reflection_max_tokens=demo.max_completion_length,
            retry_max_tokens=demo.retry_max_tokens,
            temperature=demo.temperature,
            top_p=demo.top_p,
            top_k=demo.top_k,
            retry_temperature=demo.retry_temperature,
            retry_top_p=demo.retry_top_p,
        )
    )
    assert default_set is not None, "no bundled set matches the no-argument run"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--group_size", "0"], "--group_size"),
        (["--min_rate", "0.8", "--max_rate", "0.5"], "--min_rate"),
        (["--prescreen", "16"], "--prescreen"),
        (["--min_rate", "0"], "--prescreen"),
        (["--engine", "vllm"], "--engine"),
        (["--env_kwargs", "{bad"], "--env_kwargs"),
        (["--env", "rrr/NoSuchEnv-v0"], "NoSuchEnv"),
        (["--env_kwargs", '{"num_count": -3}'], "num_count"),
        (["--model", "no-such-model-anywhere"], "no-such-model-anywhere"),
        (["--top_p", "0"], "--top_p"),
        (["--no_such_option", "1"], "no_such_option"),
    ],
)
def test_bad_options_exit_2_in_one_line_before_a_model_loads(
    argv, words, tmp_path, monkeypatch, capsys
):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(agents.models, "load_model_and_tokenizer", no_model)
    with pytest.raises(SystemExit) as exit_:
        screen_failures.main([*argv, "--output_dir", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "failures").exists()


# -- the demo's source of failures, warmup ----------------------------------------------------


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """A bundled screened set made with the demo's settings (scripted rates), the only one."""
    args = ScreenArgs(output_dir=str(tmp_path / "screening"))
    rows = env_failures(args, 10)
    screen(args, rows, lambda rs, n: [[1.0, 0.0] * (n // 2) for _ in rs], progress=False)
    folder = tmp_path / "bundled"
    folder.mkdir()
    for name in ("screened.jsonl", "screened.meta.json"):
        (folder / name).write_bytes((tmp_path / "screening" / name).read_bytes())
    monkeypatch.setattr(screen_failures, "BUNDLED_DIR", folder)
    return folder / "screened.jsonl"


def test_the_demo_trains_on_the_bundled_set_unless_asked_otherwise(tmp_path, bundle):
    from agents.grpo_reflect import GRPOReflectConfig

    out = str(tmp_path / "run")
    demo = GRPOReflectConfig(output_dir=out)
    assert demo.bundled_failures and demo.collect is False
    assert demo.failures_path == str(bundle)
    assert demo.resample_groups == 5  # dynamic sampling backs the screened set up
    # Another setting, model or token limit: the failures are collected, as before.
    for change in (
        {"env_kwargs": '{"num_count": 3}'},
        {"model": "smollm2-135m"},
        {"retry_max_tokens": 256},
        {"max_completion_length": 128},
        {"train_split": None},
        {"temperature": 0.7},
    ):
        other = GRPOReflectConfig(output_dir=out, **change)
        assert other.collect is True and other.failures_path is None, change
        assert not other.bundled_failures and other.resample_groups == 0, change
    # Asked for: collection, a path, or resampling.
    collect = GRPOReflectConfig(output_dir=out, collect=True)
    assert collect.collect and collect.failures_path is None and collect.resample_groups == 0
    given = GRPOReflectConfig(output_dir=out, failures_path=str(tmp_path / "mine.jsonl"))
    assert given.failures_path == str(tmp_path / "mine.jsonl") and not given.bundled_failures
    assert GRPOReflectConfig(output_dir=out, resample_groups=1).resample_groups == 1
    assert GRPOReflectConfig(output_dir=out, resample_groups=0).resample_groups == 0


def test_warmup_defaults_to_the_paper_ratio_and_to_none_under_the_cpu_recipe(tmp_path):
    from trl import ModelConfig

    from agents.cli import parse_trl
    from agents.grpo_reflect import GRPOReflectConfig

    out = str(tmp_path / "run")
    assert GRPOReflectConfig(output_dir=out, cpu_recipe=True).warmup_steps == 0
    assert GRPOReflectConfig(output_dir=out, cpu_recipe=False).warmup_steps == 0.03
    assert GRPOReflectConfig(output_dir=out, cpu_recipe=True, warmup_steps=5).warmup_steps == 5
    configs = Path(__file__).resolve().parents[1] / "agents" / "configs"
    for name in ("grpo_reflect_h100.yaml", "grpo_reflect_h100_server.yaml"):
        args, _ = parse_trl(
            (GRPOReflectConfig, ModelConfig), ["--config", str(configs / name), "--output_dir", out]
        )
        assert args.cpu_recipe is False and args.warmup_steps == 0.03, name
    args, _ = parse_trl(
        (GRPOReflectConfig, ModelConfig),
        ["--config", str(configs / "grpo_reflect_countdown.yaml"), "--output_dir", out],
    )
    assert args.cpu_recipe is True and args.warmup_steps == 0


@pytest.mark.slow
def test_the_dry_run_says_where_the_failures_come_from(tmp_path, capsys):
    import agents.grpo_reflect as grpo_reflect

    out = ["--output_dir", str(tmp_path / "run"), "--dry_run"]
    bundled = grpo_reflect.main(out)
    assert "the bundled screened set" in bundled["failures"]
    assert "screened for reward variance" in bundled["failures"]
    assert "python -m agents.screen_failures" in bundled["failures"]
    assert str(screen_failures.BUNDLED_DIR) in bundled["failures"]
    assert "screened for reward variance" in capsys.readouterr().out
    # --collect true still collects; another model (named either way) collects too.
    for argv in (
        ["--collect", "true"],
        ["--model", "smollm2-135m"],
        ["--model_name_or_path", "smollm2-135m"],
    ):
        result = grpo_reflect.main([*out, *argv])
        assert "scripted failures (a real run collects 16 queries)" in result["failures"], argv
        assert result["trainer_object"].args.resample_groups == 0, argv


# -- what each optimizer step changed --------------------------------------------------------


class StepScripted(Scripted):
    """As :class:`Scripted`, with useful reflections on the steps ``plan`` says (one per step)."""

    def __init__(self, tokenizer, plan: list[bool]) -> None:
        super().__init__(tokenizer, plan[0])
        self.plan = plan

    def __call__(self, prompt_ids, max_new_tokens, group_size=1):
        out = super().__call__(prompt_ids, max_new_tokens, group_size)
        if group_size == 1:  # the retries end a step's rollout
            self.plan = self.plan[1:] or self.plan
            self.useful = self.plan[0]
        return out


@pytest.mark.slow
def test_the_trainer_reports_what_each_step_changed(tmp_path, tokenizer):
    import contextlib

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from agents.grpo_callbacks import StepChanges, format_steps, step_line
    from agents.grpo_reflect import GRPOReflectConfig, build_trainer

    config = GRPOReflectConfig(
        output_dir=str(tmp_path / "run"),
        failures_path=str(tmp_path / "failures.jsonl"),
        env_kwargs=EASY,
        num_generations=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        max_completion_length=12,
        retry_max_tokens=12,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        eval_n=0,
        seed=0,
        bf16=False,
        use_cpu=True,
        cpu_recipe=True,
    )
    assert config.warmup_steps == 0  # the CPU recipe: step 1 runs at the full learning rate
    rows = env_failures(ScreenArgs(), 4)
    Path(config.failures_path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    model_config = AutoConfig.from_pretrained(agents.models.resolve_model("smollm2-135m").path)
    model_config.num_hidden_layers = 2
    if getattr(model_config, "layer_types", None):
        model_config.layer_types = model_config.layer_types[:2]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    scripted = StepScripted(tokenizer, [True, False])
    trainer = build_trainer(
        config,
        model,
        tokenizer,
        load_failures(config.failures_path),
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train()
    (changes,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, StepChanges)]
    first, second = changes.records
    assert (first["step"], first["groups"], first["groups_with_variance"]) == (1, 2, 2)
    assert not first["skipped"] and first["learning_rate"] == pytest.approx(1e-3)
    assert first["grad_norm"] > 0 and first["weight_change"] > 0 and first["loss"] is not None
    assert (second["step"], second["groups_with_variance"], second["skipped"]) == (2, 0, True)
    assert second["weight_change"] == 0  # the skipped step moved no weight
    assert "skipped" in step_line(second) and "learning rate 0.001" in step_line(first)
    table = format_steps(changes.records)
    assert "| 1 | 2 / 2 |" in table and table.rstrip().endswith("| yes |")


def test_the_main_job_benchmark_says_whether_every_step_updated():
    from benchmarks.bench_main_job import render, updated

    step = {
        "step": 1,
        "groups": 1,
        "groups_with_variance": 1,
        "loss": 0.01,
        "grad_norm": 0.5,
        "learning_rate": 1e-4,
        "skipped": False,
        "weight_change": 1e-3,
        "seconds": 60.0,
    }
    machine = {
        "cpu_model": "AMD EPYC",
        "cpu_count": 2,
        "cpu_affinity": [0, 1],
        "load_average_1m": 0.0,
        "platform": "Linux",
        "python": "3.11",
        "packages": {},
        "git_commit": "abc",
        "git_dirty": False,
        "date": "2026-12-06",
    }
    row = {
        "options": [],
        "wall_seconds": 300.0,
        "peak_rss_gb": 7.0,
        "steps": 2,
        "collect_seconds": 0.0,
        "train_seconds": 120.0,
        "eval_seconds": [40.0, 40.0],
        "failures_source": "bundled x.jsonl",
        "step_changes": [step, {**step, "step": 2}],
        "table": "",
        "machine": machine,
    }
    assert updated(row) == "yes (2/2)"
    skipped = {**step, "step": 2, "skipped": True, "weight_change": 0.0, "learning_rate": 0.0}
    assert updated({**row, "step_changes": [step, skipped]}) == "no (1/2)"
    assert updated({k: v for k, v in row.items() if k != "step_changes"}) == "-"
    report = render([row, {**row, "step_changes": [step, skipped]}])
    lines = [line for line in report.splitlines() if line.startswith("| default")]
    assert "| yes (2/2) | bundled x.jsonl |" in lines[0] and "| yes | AMD EPYC" in lines[0]
    assert "| no (1/2) |" in lines[1] and "| no | AMD EPYC" in lines[1]  # goal not met
    assert "| 2 | 1/1 | 0.01 | 0.5 | 0 | 0.00e+00 | yes | 60 |" in report
