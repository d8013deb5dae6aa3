"""Command lines fail fast and clearly (issue 11, section 6).

Every CLI checks its options, builds its env and checks ``--model`` before it loads a model:
a bad option prints one line naming it and exits 2, with no traceback and no output folder.
A few cases run as real subprocesses (exit status, stderr); the full matrix runs in-process
through each ``main(argv)``, which is the same code without the interpreter start-up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import agents.collect_failures
import agents.evaluate
import agents.grpo_reflect
import agents.rise_awr
import benchmarks.rrr_vs_rise
from agents import models

REPO = Path(__file__).resolve().parents[1]

#: module -> (the option naming the env, the option naming the output folder)
CLIS = {
    "agents.evaluate": (agents.evaluate.main, "--env", "--output-dir"),
    "agents.collect_failures": (agents.collect_failures.main, "--env", "--output-dir"),
    "agents.grpo_reflect": (agents.grpo_reflect.main, "--env_id", "--output_dir"),
    "agents.rise_awr": (agents.rise_awr.main, "--env-id", "--output-dir"),
    "benchmarks.rrr_vs_rise": (benchmarks.rrr_vs_rise.main, "--env", "--out-dir"),
}
COUNT_OPTION = {
    "agents.evaluate": "--n",
    "agents.collect_failures": "--n",
    "agents.grpo_reflect": "--collect_n",
    "agents.rise_awr": "--iterations",
    "benchmarks.rrr_vs_rise": "--seeds",
}
SPLIT_OPTION = {
    "agents.evaluate": "--split",
    "agents.collect_failures": "--split",
    "agents.grpo_reflect": "--train_split",
    "agents.rise_awr": "--train-split",
    "benchmarks.rrr_vs_rise": "--eval-split",
}


def bad_cases(module: str) -> dict[str, tuple[list[str], str]]:
    """Case name -> (argv, a fragment the one-line message must contain)."""
    _, env_flag, _ = CLIS[module]
    count = COUNT_OPTION[module]
    cases = {
        "bogus-flag": (["--bogus-flag"], "--bogus-flag"),
        "zero": ([count, "0"], count),
        "negative": ([count, "-1"], count),
        "bad-json": (["--env_kwargs" if "grpo" in module else "--env-kwargs", "{bad"], "JSON"),
        "no-such-model": (["--model", "no-such-model"], "--model"),
        "unknown-env": ([env_flag, "rrr/NoSuchTask-v0"], "rrr/Countdown-v0"),
        "unknown-split": ([SPLIT_OPTION[module], "nope"], "split must be one of"),
    }
    if module in ("agents.evaluate",):
        cases["bad-feedback"] = (["--feedback", "bogus"], "feedback must be one of")
    if module == "agents.rise_awr":
        cases["bad-weighting"] = (["--weighting", "bogus"], "'baseline', 'official'")
    return cases


MATRIX = [(module, case) for module in CLIS for case in bad_cases(module)]


@pytest.fixture
def no_model_loading(monkeypatch):
    """Any attempt to load a model fails the test: checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the command line was checked")

    monkeypatch.setattr(models, "load_model_and_tokenizer", refuse)
    monkeypatch.setattr(models, "_ensure_converted", refuse)


@pytest.mark.parametrize(("module", "case"), MATRIX, ids=[f"{m}-{c}" for m, c in MATRIX])
def test_a_bad_option_exits_2_with_one_line_before_any_model(
    module, case, tmp_path, capsys, no_model_loading
):
    main, _, out_flag = CLIS[module]
    argv, fragment = bad_cases(module)[case]
    out = tmp_path / "out"
    extra = [] if module != "agents.grpo_reflect" else ["--report_to", "none"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, out_flag, str(out), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"python -m {module}: error: ") or ": error: " in err
    assert fragment in err, err
    assert "Traceback" not in err
    assert not out.exists(), "a run that failed its checks left its output folder behind"


SUBPROCESS_CASES = [
    ("agents.evaluate", ["--bogus-flag"], "--bogus-flag"),
    ("agents.evaluate", ["--n", "0"], "--n"),
    ("agents.evaluate", ["--env", "rrr/NoSuchTask-v0"], "unknown environment id"),
    ("agents.collect_failures", ["--model", "no-such-model"], "--model"),
    ("agents.grpo_reflect", ["--env_kwargs", "{bad"], "--env_kwargs"),
    # TRL's own flag for the model, listed in --help: an alias of --model (issue 27).
    ("agents.grpo_reflect", ["--model_name_or_path", "no-such-model"], "no-such-model"),
    ("agents.rise_awr", ["--weighting", "bogus"], "--weighting"),
    ("benchmarks.rrr_vs_rise", ["--eval-n", "-1"], "--eval-n"),
]


@pytest.mark.parametrize(("module", "argv", "fragment"), SUBPROCESS_CASES)
def test_the_real_command_exits_2_with_one_line_and_no_traceback(module, argv, fragment, tmp_path):
    out_flag = CLIS[module][2]
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RRR_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", module, *argv, out_flag, str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    # Python warnings from dependencies (gymnasium forces its DeprecationWarning for an older
    # env version such as rrr/Countdown-v0 on) are not the CLI's output: "file:line: XWarning:
    # message" and the indented source line under it.
    lines = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not re.search(r":\d+: \w*Warning: ", line) and line[:1] != " "
    ]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"python -m {module}: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in done.stderr
    assert not out.exists()
    # An empty cache folder: the bundled model was never fetched.
    assert not (tmp_path / "cache").exists()


def test_evaluate_leaves_no_folder_when_the_model_fails_to_load(tmp_path, monkeypatch):
    """The config is written only once the model has loaded, so a corrected rerun is not
    refused as "a different evaluation"."""

    def fail_to_load(*args, **kwargs):
        raise OSError("no hub access")

    monkeypatch.setattr(models, "load_model_and_tokenizer", fail_to_load)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="no hub access"):
        agents.evaluate.main(["--model", "org/some-model", "--output-dir", str(out), "--n", "1"])
    assert not out.exists()


def test_help_still_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        agents.evaluate.main(["--help"])
    assert exit_info.value.code == 0
    assert "--env-kwargs" in capsys.readouterr().out


def test_evaluate_writes_its_folder_once_checks_pass_and_the_model_loads(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(models.resolve_model("qwen2.5-coder-0.5b").path)
    tokenizer.padding_side = "left"
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    monkeypatch.setattr(models, "load_model_and_tokenizer", lambda *a, **k: (model, tokenizer))
    out = tmp_path / "out"
    argv = ["--output-dir", str(out), "--n", "1", "--max-new-tokens", "2"]
    metrics = agents.evaluate.main([*argv, "--reflection-max-new-tokens", "2"])
    assert metrics["rrr"]["episodes"] == 1
    assert {p.name for p in out.iterdir()} >= {"config.json", "episodes.jsonl", "metrics.json"}


# -- agents.grpo_reflect: TRL's --model_name_or_path and the order of --help (issue 27) ------


def test_trl_model_flag_is_checked_as_the_model(tmp_path, capsys, no_model_loading):
    out = tmp_path / "out"
    argv = ["--model_name_or_path", "no-such-model", "--output_dir", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        agents.grpo_reflect.main([*argv, "--report_to", "none"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "no-such-model" in err and "Traceback" not in err


def test_trl_model_flag_names_the_model(tmp_path, monkeypatch):
    seen = {}

    def train(args, model_args=None):
        seen["model"] = args.model
        return {"dry_run": True, "notes": []}

    monkeypatch.setattr(agents.grpo_reflect, "train", train)
    monkeypatch.setattr(agents.grpo_reflect, "format_dry_run", lambda result: "")
    out = ["--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    agents.grpo_reflect.main(["--model_name_or_path", "smollm2-135m", *out])
    assert seen["model"] == "smollm2-135m"


def test_trl_model_flag_and_model_that_disagree_exit_2(tmp_path, capsys, no_model_loading):
    argv = ["--model", "smollm2-135m", "--model_name_or_path", "qwen2.5-coder-1.5b"]
    with pytest.raises(SystemExit) as exit_info:
        agents.grpo_reflect.main([*argv, "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--model_name_or_path" in err and "--model" in err


def test_grpo_reflect_help_lists_our_options_before_trls(capsys):
    with pytest.raises(SystemExit) as exit_info:
        agents.grpo_reflect.main(["--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()

    def first(option):
        return next(i for i, line in enumerate(lines) if line.lstrip().startswith(option))

    ours = [first(option) for option in ("--env_id", "--model ", "--credit", "--dry_run")]
    trl = [first(option) for option in ("--learning_rate", "--num_generations", "--use_vllm")]
    assert max(ours) < min(trl), (ours, trl)
    assert max(ours) < 150, "our options are near the top, not after TRL's thousand lines"
