"""A killed RRR-GRPO run resumes from its checkpoint and keeps counting its time budget.

Each checkpoint records the training wall time spent until it was saved (in its
``trainer_state.json``); ``resume_checkpoint`` finds the newest checkpoint and that time,
so that ``max_minutes`` and ``snapshot_minutes`` count the earlier process's time too. The
trainer is the real one on a 2-layer model with SmolLM2-135M's tokenizer; a scripted
generator gives every step reward variance.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time

import pytest
from test_no_signal_step import Scripted, failures, make_config, tiny_model

from agents.grpo_reflect import (
    SPENT_FILE,
    RecordSpentTime,
    TimeSnapshots,
    build_trainer,
    resume_checkpoint,
)


def test_without_a_checkpoint_a_run_starts_afresh(tmp_path):
    config = make_config(tmp_path, resume_from_checkpoint="true")
    assert resume_checkpoint(config) == (None, 0.0)
    assert resume_checkpoint(make_config(tmp_path)) == (None, 0.0)
    with pytest.raises(ValueError, match="no checkpoint folder at"):
        resume_checkpoint(make_config(tmp_path, resume_from_checkpoint=str(tmp_path / "x")))


def spent_in(checkpoint):
    """The training seconds ``checkpoint``'s ``trainer_state.json`` records."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state["stateful_callbacks"]["RecordSpentTime"]["attributes"]["train_seconds"]


def recorded(seconds):
    attributes = {"train_seconds": seconds}
    return json.dumps({"stateful_callbacks": {"RecordSpentTime": {"attributes": attributes}}})


def test_a_checkpoint_cut_while_saving_is_passed_over_for_the_one_before(tmp_path, caplog):
    run = tmp_path / "run"
    for step, name in ((1, "trainer_state.json"), (2, "adapter_model.bin")):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / name).write_text(recorded(42.0))
    (run / "checkpoint-x").mkdir()  # not a step: ignored
    config = make_config(tmp_path, resume_from_checkpoint="last")
    assert resume_checkpoint(config) == (str(run / "checkpoint-1"), 42.0)
    assert "checkpoint-2 has no trainer_state.json" in caplog.text
    # Only the cut one left: nothing to resume, the run starts afresh.
    shutil.rmtree(run / "checkpoint-1")
    assert resume_checkpoint(config) == (None, 0.0)


def test_the_time_is_read_from_an_older_checkpoint_file_or_counts_as_zero(tmp_path, caplog):
    checkpoint = tmp_path / "run" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 3}')
    config = make_config(tmp_path, resume_from_checkpoint="last")
    assert resume_checkpoint(config) == (str(checkpoint), 0.0), "saved by another tool"
    assert "records no training time" in caplog.text
    (checkpoint / SPENT_FILE).write_text('{"train_seconds": 7.5}')  # as older versions saved it
    assert resume_checkpoint(config) == (str(checkpoint), 7.5)
    # trainer_state.json's record, where there is one, is the one that counts.
    (checkpoint / "trainer_state.json").write_text(recorded(9.0))
    assert resume_checkpoint(config) == (str(checkpoint), 9.0)


@pytest.mark.slow
def test_checkpoints_record_the_time_spent_and_a_resumed_run_continues_from_them(tmp_path):
    from transformers import AutoTokenizer

    from agents.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    tokenizer.padding_side = "left"
    options = {"save_strategy": "steps", "save_steps": 1, "max_steps": 2}
    config = make_config(tmp_path, **options)
    dataset = failures(config, 4)
    scripted = Scripted(tokenizer)
    scripted.signal = [True]
    started = time.perf_counter() - 100.0  # as if collection had taken 100 s
    trainer = build_trainer(
        config,
        tiny_model(),
        tokenizer,
        dataset,
        callbacks=[RecordSpentTime(started)],
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train()
    spent = {step: spent_in(tmp_path / "run" / f"checkpoint-{step}") for step in (1, 2)}
    assert 100.0 < spent[1] < spent[2]
    assert not list((tmp_path / "run").glob(f"checkpoint-*/{SPENT_FILE}")), "no second file"

    resumed = make_config(tmp_path, resume_from_checkpoint="last", **{**options, "max_steps": 3})
    checkpoint, before = resume_checkpoint(resumed)
    assert checkpoint == str(tmp_path / "run" / "checkpoint-2")
    assert before == spent[2]
    # As an older version saved it: the time in its own file, none in trainer_state.json
    # (whose missing entry the resumed trainer must not trip over when it saves).
    state_file = tmp_path / "run" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["stateful_callbacks"]["RecordSpentTime"]
    state_file.write_text(json.dumps(state))
    (tmp_path / "run" / "checkpoint-2" / SPENT_FILE).write_text(
        json.dumps({"train_seconds": 500.0})
    )
    assert resume_checkpoint(resumed) == (checkpoint, 500.0)
    trainer = build_trainer(
        resumed,
        tiny_model(),
        tokenizer,
        dataset,
        callbacks=[RecordSpentTime(time.perf_counter() - 500.0)],
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    assert trainer.state.global_step == 3
    # The history comes back with the checkpoint; one more step was trained.
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2, 3]
    assert spent_in(tmp_path / "run" / "checkpoint-3") > 500.0, "the earlier time counts"


def test_a_resumed_run_does_not_retake_the_snapshots_its_first_process_took(tmp_path):
    snapshots = TimeSnapshots([1.0, 2.0, 3.0], time.perf_counter(), tmp_path, None, spent=150.0)
    assert snapshots.schedule.taken == 2
