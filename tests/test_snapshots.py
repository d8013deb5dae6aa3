"""Policy snapshots at training wall times: marks, saving, listing, loading, the GRPO callback."""

from __future__ import annotations

import json
import time

import pytest
import torch
from transformers import TrainerControl, TrainerState

from agents.grpo_reflect import GRPOReflectConfig, TimeSnapshots
from agents.snapshots import (
    INFO_FILE,
    POLICY_FILE,
    SNAPSHOTS,
    SnapshotSchedule,
    check_marks,
    due_marks,
    list_snapshots,
    load_policy,
    load_snapshot,
    read_adapter_scope,
    save_snapshot,
)

SMALL = "smollm2-135m"


@pytest.mark.parametrize(
    ("marks", "message"),
    [([0.0], "positive"), ([5.0, float("nan")], "positive"), ([10.0, 5.0], "increasing")],
)
def test_bad_marks_fail_clearly(marks, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        check_marks(marks, "--snapshot-minutes")
    with pytest.raises(ValueError, match="--snapshot_minutes must be"):
        GRPOReflectConfig(output_dir=str(tmp_path), snapshot_minutes=marks)


def test_due_marks_are_the_passed_ones_not_yet_taken():
    assert due_marks(None, 1e9, 0) == []
    assert due_marks([15, 30], 60 * 14.9, 0) == []
    assert due_marks([15, 30], 60 * 15, 0) == [15]
    assert due_marks([15, 30], 60 * 20, 1) == []
    assert due_marks([15, 30], 60 * 31, 0) == [15, 30], "one long step passed both"
    assert due_marks([15, 30], 60 * 31, 1) == [30]


def test_a_resumed_schedule_skips_the_marks_its_run_already_passed(tmp_path):
    schedule = SnapshotSchedule([15, 30], tmp_path, spent=60 * 20)
    assert schedule.taken == 1
    # Nothing due (15 is taken, 30 not reached): nothing is saved, so no model is needed.
    assert schedule.after(60 * 25, False, None, None, iteration=3) is None
    assert schedule.after(60 * 31, True, None, None, iteration=4) is None, "the end point"
    assert not (tmp_path / SNAPSHOTS).exists()


@pytest.fixture(scope="module")
def lora_policy():
    from peft import LoraConfig, get_peft_model

    from agents.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(SMALL, dtype="float32")
    policy = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)  # as if trained: B starts at zero
    return policy, tokenizer


@pytest.mark.slow
def test_a_saved_adapter_loads_back_as_the_merged_policy(tmp_path, lora_policy):
    policy, tokenizer = lora_policy
    path = save_snapshot(tmp_path, 15.0, policy, tokenizer, {"train_seconds": 912.5, "step": 7})
    assert path == tmp_path / SNAPSHOTS / "15min"
    # An interrupted save (no snapshot.json) is not listed.
    (tmp_path / SNAPSHOTS / "30min").mkdir()
    listed = list_snapshots(tmp_path)
    assert [(p.name, info["step"], info["minutes"]) for p, info in listed] == [("15min", 7, 15.0)]

    loaded, _ = load_snapshot(path, SMALL)
    assert not any("lora_" in name for name, _ in loaded.named_parameters()), "merged"
    ids = tokenizer("Using the numbers [3, 4], make 7.", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = policy(input_ids=ids).logits
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_grpo_callback_saves_once_per_mark_and_not_at_the_last_step(tmp_path, lora_policy):
    policy, tokenizer = lora_policy
    started = time.perf_counter() - 60 * 20  # 20 minutes of training so far
    callback = TimeSnapshots([15, 30], started, tmp_path, tokenizer)
    state, control = TrainerState(global_step=3, max_steps=10), TrainerControl()
    callback.on_step_end(None, state, control, model=policy)
    state.global_step = 4
    callback.on_step_end(None, state, control, model=policy)  # 15 is taken, 30 not yet due
    info = json.loads((tmp_path / SNAPSHOTS / "15min" / INFO_FILE).read_text())
    assert info["step"] == 3 and 60 * 20 <= info["train_seconds"] < 60 * 21
    assert [p.name for p, _ in list_snapshots(tmp_path)] == ["15min"]

    callback.started -= 60 * 15  # now 35 minutes: 30 is due, but the budget stopped training
    control.should_training_stop = True
    callback.on_step_end(None, state, control, model=policy)
    assert [p.name for p, _ in list_snapshots(tmp_path)] == ["15min"], "the end point is saved"


class Saved:
    """Stands in for a model or tokenizer where the weights are not the point."""

    def __init__(self, name: str):
        self.name = name

    def save_pretrained(self, path):
        path.mkdir(parents=True, exist_ok=True)
        (path / self.name).write_text("{}")


@pytest.mark.parametrize("scope", ["reflection", "all"])
def test_a_snapshot_records_its_runs_adapter_scope(tmp_path, scope):
    model, tokenizer = Saved("model.json"), Saved("tokenizer.json")
    path = save_snapshot(tmp_path, 15.0, model, tokenizer, {"train_seconds": 900.0}, scope)
    assert read_adapter_scope(path) == scope
    schedule = SnapshotSchedule([15, 30], tmp_path / "run")
    path = schedule.after(60 * 16, False, model, tokenizer, adapter_scope=scope, iteration=2)
    assert read_adapter_scope(path) == scope
    assert "adapter_scope" not in json.loads((path / INFO_FILE).read_text()), "not a position"


def test_a_snapshot_without_a_scope_reads_as_shared_weights(tmp_path):
    """Snapshots saved before they recorded a scope (and RISE-AWR's) have no policy file."""
    path = save_snapshot(tmp_path, 15.0, Saved("m"), Saved("t"), {"train_seconds": 900.0})
    assert not (path / POLICY_FILE).exists()
    assert read_adapter_scope(path) == "all"


def test_an_unknown_scope_is_refused_before_anything_is_saved(tmp_path):
    with pytest.raises(ValueError, match="adapter_scope must be one of"):
        save_snapshot(tmp_path, 15.0, Saved("m"), Saved("t"), {"train_seconds": 1.0}, "retry")
    assert not (tmp_path / SNAPSHOTS).exists()


@pytest.mark.parametrize("scope", ["reflection", "all"])
def test_grpo_snapshots_carry_the_configs_adapter_scope(tmp_path, scope):
    config = GRPOReflectConfig(output_dir=str(tmp_path / "out"), adapter_scope=scope)
    callback = TimeSnapshots([15], time.perf_counter() - 60 * 16, tmp_path, Saved("t"))
    state, control = TrainerState(global_step=3, max_steps=10), TrainerControl()
    callback.on_step_end(config, state, control, model=Saved("m"))
    ((path, info),) = list_snapshots(tmp_path)
    assert info["step"] == 3 and read_adapter_scope(path) == scope


@pytest.mark.slow
def test_a_reflection_scope_snapshot_loads_with_its_adapter_unmerged(tmp_path, lora_policy):
    policy, tokenizer = lora_policy
    info = {"train_seconds": 60.0}
    path = save_snapshot(tmp_path, 1.0, policy, tokenizer, info, adapter_scope="reflection")
    loaded, _, scope = load_policy(path, SMALL, dtype="float32")
    assert scope == "reflection" and hasattr(loaded, "disable_adapter"), "unmerged PEFT model"
    ids = tokenizer("Using the numbers [3, 4], make 7.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, policy(input_ids=ids).logits)
        with loaded.disable_adapter(), policy.disable_adapter():
            torch.testing.assert_close(loaded(input_ids=ids).logits, policy(input_ids=ids).logits)
    path = save_snapshot(tmp_path, 2.0, policy, tokenizer, info, adapter_scope="all")
    merged, _, scope = load_policy(path, SMALL, dtype="float32")
    assert scope == "all" and not hasattr(merged, "disable_adapter"), "merged as before"
