"""A killed RRR-GRPO run resumes from its checkpoint and keeps counting its time budget.

Each checkpoint records the training wall time spent until it was saved
(``rrr_train_seconds.json``); ``resume_checkpoint`` finds the newest checkpoint and that time,
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


def test_a_checkpoint_cut_while_saving_is_passed_over_for_the_one_before(tmp_path, caplog):
    run = tmp_path / "run"
    for step, files in ((1, ["trainer_state.json", SPENT_FILE]), (2, ["adapter_model.bin"])):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        for name in files:
            (run / f"checkpoint-{step}" / name).write_text('{"train_seconds": 42.0}')
    (run / "checkpoint-x").mkdir()  # not a step: ignored
    config = make_config(tmp_path, resume_from_checkpoint="last")
    assert resume_checkpoint(config) == (str(run / "checkpoint-1"), 42.0)
    assert "checkpoint-2 has no trainer_state.json" in caplog.text
    # Only the cut one left: nothing to resume, the run starts afresh.
    shutil.rmtree(run / "checkpoint-1")
    assert resume_checkpoint(config) == (None, 0.0)


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
    spent = {
        step: json.loads((tmp_path / "run" / f"checkpoint-{step}" / SPENT_FILE).read_text())
        for step in (1, 2)
    }
    assert 100.0 < spent[1]["train_seconds"] < spent[2]["train_seconds"]

    resumed = make_config(tmp_path, resume_from_checkpoint="last", **{**options, "max_steps": 3})
    checkpoint, before = resume_checkpoint(resumed)
    assert checkpoint == str(tmp_path / "run" / "checkpoint-2")
    assert before == spent[2]["train_seconds"]
    trainer = build_trainer(
        resumed,
        tiny_model(),
        tokenizer,
        dataset,
        generator_factory=lambda trainer: contextlib.nullcontext(scripted),
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    assert trainer.state.global_step == 3
    # The history comes back with the checkpoint; one more step was trained.
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2, 3]


def test_a_resumed_run_does_not_retake_the_snapshots_its_first_process_took(tmp_path):
    snapshots = TimeSnapshots([1.0, 2.0, 3.0], time.perf_counter(), tmp_path, None, spent=150.0)
    assert snapshots.schedule.taken == 2
