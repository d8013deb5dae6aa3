"""The head-to-head harness honours RRR-GRPO's adapter scope (issue 25).

``--rrr-adapter-scope reflection`` reaches the RRR-GRPO config; its saved policy and snapshots
(``rrr_policy.json``) are evaluated with the adapter unmerged and switched on only for the
reflections, so that attempts and retries are the base model's; ``all`` evaluates the merged
adapter throughout, as before. A 2-layer model from SmolLM2-135M's config (random weights, its
real tokenizer) with a LoRA adapter whose weights are made non-zero, so that the adapter changes
greedy generations.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from test_adapter_scope_eval import greedy, with_adapter
from test_no_signal_step import tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer

import benchmarks.rrr_vs_rise as harness
from agents.backends import TransformersBackend
from agents.models import load_model_and_tokenizer, resolve_model
from agents.rollout import SamplingParams
from agents.snapshots import (
    INFO_FILE,
    SNAPSHOTS,
    SnapshotSchedule,
    read_adapter_scope,
    write_adapter_scope,
)
from benchmarks.common import machine_info

EASY = harness.EASY_COUNTDOWN


def test_the_scope_is_an_option_that_reaches_the_rrr_config(tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    assert harness.parse_args([]).rrr_adapter_scope == "all", "the paper's shared weights"
    assert harness.rrr_config(harness.parse_args(runs), seed=1).adapter_scope == "all"
    args = harness.parse_args([*runs, "--rrr-adapter-scope", "reflection"])
    assert harness.rrr_config(args, seed=1).adapter_scope == "reflection"
    # Results and training runs of the two scopes go to different folders by default.
    assert harness.setting_name(args) == "countdown-n2-easy__qwen2.5-coder-0.5b__rrr-reflection"
    assert harness.setting_name(harness.parse_args([])) == "countdown-n2-easy__qwen2.5-coder-0.5b"


def test_an_unknown_scope_fails_in_one_line_before_any_model_loads(capsys):
    with pytest.raises(SystemExit) as stopped:
        harness.main(["--rrr-adapter-scope", "retry"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--rrr-adapter-scope" in err and "invalid choice" in err


def test_a_run_refuses_to_add_rrr_rows_of_another_scope(tmp_path, capsys):
    # A row from before the scope was recorded: trained with shared weights, the only scope.
    (tmp_path / "results.jsonl").write_text(json.dumps({"arm": "rrr", "seed": 1}) + "\n")
    argv = ["--out-dir", str(tmp_path), "--arms", "rrr", "--rrr-adapter-scope", "reflection"]
    with pytest.raises(SystemExit) as stopped:
        harness.main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "adapter scope all" in err and "--rrr-adapter-scope all" in err
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 1, "nothing appended"


def test_a_snapshot_that_records_another_scope_is_refused_before_it_loads(tmp_path):
    snapshot = tmp_path / SNAPSHOTS / "1min"
    snapshot.mkdir(parents=True)
    (snapshot / INFO_FILE).write_text(json.dumps({"minutes": 1, "train_seconds": 61.0}))
    # No rrr_policy.json (a snapshot from before snapshots recorded it): scope "all".
    args = harness.parse_args(["--rrr-adapter-scope", "reflection", "--eval-n", "1"])
    with pytest.raises(ValueError, match="records adapter scope 'all'"):
        harness.held_out_curve("rrr", 1, tmp_path, args, tmp_path / "episodes")
    write_adapter_scope(snapshot, "reflection")
    with pytest.raises(ValueError, match="records adapter scope 'reflection'"):
        harness.held_out_curve("rise", 1, tmp_path, args, tmp_path / "episodes")


def test_the_report_says_when_rrr_answers_with_the_base_model():
    row = {"machine": machine_info(harness.MEASURED_CODE, harness.PACKAGES), "items": 1}
    row |= {"first_try": 0.0, "second_try": 0.0, "solved_second": [], "eval_generated_tokens": 1}
    rows = [{**row, "arm": "vanilla", "seed": 0}, {**row, "arm": "rrr", "seed": 1}]
    args = harness.parse_args([])
    assert "--rrr-adapter-scope" not in harness.render(rows, args, "cmd"), "old rows: all"
    rows[1]["rrr_adapter_scope"] = "reflection"
    report = harness.render(rows, args, "cmd")
    assert "(`--rrr-adapter-scope reflection`)" in report
    assert "attempts and retries, which come from the base model" in report


def fake_train_rrr(policy, tokenizer):
    """A ``train_rrr`` whose training is over at once.

    ``policy`` is saved as ``agents.grpo_reflect`` saves it: one snapshot, then the end point,
    each with the adapter scope of the harness's RRR-GRPO config.
    """

    def train(args, seed):
        config = harness.rrr_config(args, seed)
        run_dir = Path(config.output_dir)
        schedule = SnapshotSchedule([1e-6], run_dir)
        scope = config.adapter_scope
        assert schedule.after(1.0, False, policy, tokenizer, adapter_scope=scope, step=1)
        policy.save_pretrained(run_dir)
        tokenizer.save_pretrained(run_dir)
        write_adapter_scope(run_dir, scope)
        return {
            "policy": policy,
            "tokenizer": tokenizer,
            "train_seconds": 2.0,
            "updates": 2,
            "train_generated_tokens": 1,
            "curve": [],
            "failures": 1,
            "run_dir": str(run_dir),
        }

    return train


def prompts_and_texts(episode):
    """(conversation the turn answered, its text) for each turn of a stored episode."""
    messages, turns = episode["messages"], episode["turns"]
    assistant = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    pairs = []
    for turn, position in zip(turns, assistant, strict=False):
        assert messages[position]["content"] == turn["text"]
        pairs.append((messages[:position], turn["text"]))
    if len(turns) == len(assistant) + 1:  # the last answer ended the episode unrecorded
        pairs.append((messages, turns[-1]["text"]))
    assert len(pairs) == len(turns)
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["reflection", "all"])
def test_the_harness_evaluates_rrr_policies_in_their_adapter_scope(scope, tmp_path, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    tokenizer.padding_side = "left"
    base_dir = tmp_path / "base"
    tiny_model().save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    policy = with_adapter(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32))
    # Under "all" the harness evaluates the adapter merged into the weights.
    merged = copy.deepcopy(policy).merge_and_unload().eval()
    adapted = policy if scope == "reflection" else merged
    monkeypatch.setattr(harness, "train_rrr", fake_train_rrr(policy, tokenizer))

    out = tmp_path / "out"
    rows = harness.main(
        [
            *("--model", str(base_dir), "--env-kwargs", EASY, "--arms", "rrr", "--seeds", "1"),
            *("--eval-n", "1", "--eval-dtype", "float32", "--rrr-adapter-scope", scope),
            *("--attempt-max-tokens", "8", "--reflection-max-tokens", "8"),
            *("--out-dir", str(out), "--runs-dir", str(tmp_path / "runs")),
        ]
    )
    (row,) = rows
    assert row["arm"] == "rrr" and row["rrr_adapter_scope"] == scope
    assert len(row["held_out_curve"]) == 1, "the snapshot was evaluated too"
    assert ("`--rrr-adapter-scope reflection`" in (out / "report.md").read_text()) == (
        scope == "reflection"
    )
    for name in ("rrr__seed1.jsonl", "rrr__seed1__1e-06min.jsonl"):
        (episode,) = [json.loads(line) for line in (out / "episodes" / name).open()]
        phases = [t["phase"] for t in episode["turns"]]
        assert phases == ["attempt", "reflection", "retry"], "the random model's attempt fails"
        for (conversation, text), phase in zip(prompts_and_texts(episode), phases, strict=True):
            answered_by = adapted if phase == "reflection" else base
            if scope == "all":
                answered_by = merged
            assert text == greedy(answered_by, tokenizer, conversation), (name, phase)
        attempt_prompt, attempt = prompts_and_texts(episode)[0]
        # The adapter changes the attempt: the two scopes give different first attempts.
        other = base if scope == "all" else policy
        assert attempt != greedy(other, tokenizer, attempt_prompt)


@pytest.mark.slow
def test_a_quick_reflection_scope_run_trains_and_answers_with_the_base_model(tmp_path):
    """The real trainer on SmolLM2-135M: attempts and retries are the base model's answers.

    The trained policy records its scope; a quick run's adapter barely moves, so this checks
    the whole path (training, saving, loading, evaluation), the tiny model above the switch.
    """
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--quick", "--arms", "rrr", "--rrr-adapter-scope", "reflection"]
    argv += ["--eval-dtype", "float32", "--out-dir", str(out), "--runs-dir", str(runs)]
    (row,) = harness.main(argv)
    # SmolLM2 has no signal here: its steps are skipped (updates 0), but they ran.
    assert row["rrr_adapter_scope"] == "reflection" and row["steps"] >= 1
    assert read_adapter_scope(row["run_dir"]) == "reflection"
    base, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    answer = SamplingParams(harness.parse_args(argv).attempt_max_tokens, 0.0)
    backend = TransformersBackend(base, tokenizer)
    answers = 0
    for line in (out / "episodes" / "rrr__seed1.jsonl").open():
        episode = json.loads(line)
        pairs = prompts_and_texts(episode)
        for (conversation, text), turn in zip(pairs, episode["turns"], strict=True):
            if turn["phase"] != "reflection":
                assert text == backend.generate([conversation], answer)[0].text
                answers += 1
    assert answers >= 2
