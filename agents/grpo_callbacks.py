"""RRR-GRPO's trainer extensions: no update without signal, step records, time budgets.

No optimizer step (and no loss) without signal, what each step changed, the wall-clock
budget, time snapshots, and the training time a resumed run keeps counting.

:func:`reflect_trainer_class` is TRL's ``GRPOTrainer`` less the loss of a step without signal;
the rest are ``transformers`` callbacks that :func:`agents.grpo_reflect.build_trainer` and
:func:`agents.grpo_reflect.train` register.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from agents.grpo_reflect_config import GRPOReflectConfig
from agents.grpo_rollout import ReflectRetryRollout
from agents.snapshots import SnapshotSchedule

logger = logging.getLogger(__name__)


@functools.cache
def reflect_trainer_class() -> type:
    """TRL's ``GRPOTrainer``, with the loss of a step that will be skipped left uncomputed.

    The subclass (built on first use: TRL is imported late) overrides ``compute_loss`` only.
    Where ``signal_skip`` (a :class:`SkipStepsWithoutSignal`) is set, each training
    micro-batch's signal is noted, and a micro-batch of a step that will be skipped returns a
    zero loss without running the model: its gradients would be dropped anyway.
    """
    from trl import GRPOTrainer

    class ReflectGRPOTrainer(GRPOTrainer):
        """``GRPOTrainer`` that computes no loss for an optimizer step without signal."""

        signal_skip: SkipStepsWithoutSignal | None = None

        def compute_loss(
            self,
            model: Any,
            inputs: Any,
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            skip = self.signal_skip
            if skip is not None and self.model.training and skip.note_micro_batch():
                return torch.zeros((), device=self.accelerator.device, requires_grad=True)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return ReflectGRPOTrainer


class SkipStepsWithoutSignal(TrainerCallback):
    """No optimizer step on a batch whose GRPO groups all have equal rewards.

    Such a batch has no advantage anywhere, but an AdamW step on it still moves the weights
    (momentum, weight decay) and the schedule. Before the step, this callback drops the
    gradients (``zero_grad(set_to_none=True)``: torch optimizers skip a parameter without a
    gradient, so no weight, moment or step count changes); after it, it puts the
    learning-rate schedule (and the optimizer's learning rates) back where they were. The
    trainer's ``global_step`` still advances. Logs ``rrr/skipped_steps``, the number of skipped
    steps so far (a resumed run counts on from its checkpoint's log), and
    ``rrr/step_skipped``, 1 if the latest step was skipped. Every process takes the
    same decision, from the rewards of all of them.

    A step has signal when any of its micro-batches came from a generation batch with signal:
    :func:`reflect_trainer_class`'s trainer notes each micro-batch (:meth:`note_micro_batch`);
    without such notes (another trainer class) the latest generation batch decides. Where
    ``leave_loss_uncomputed``, a step without signal also runs no forward or backward pass:
    its loss is logged as 0 and TRL's loss metrics (``kl``, ``entropy``, clip ratios) are
    absent from its log. The counts are in ``uncomputed_losses``.

    Args:
        rollout: The trainer's rollout function; its latest training batch is judged.
        leave_loss_uncomputed: Skip the loss of a step without signal. Correct only when each
            optimizer step's micro-batches all come from one generation batch
            (``steps_per_generation`` a multiple of ``gradient_accumulation_steps``).
    """

    def __init__(self, rollout: ReflectRetryRollout, leave_loss_uncomputed: bool = False) -> None:
        self.rollout = rollout
        self.leave_loss_uncomputed = leave_loss_uncomputed
        self.skipped = 0
        self.latest_skipped = False
        self.uncomputed_losses = 0
        self._step_signal: bool | None = None
        self._saved: tuple[dict[str, Any], list[float]] | None = None

    def has_signal(self) -> bool:
        """Whether the latest batch, over all processes, has a group that gives a gradient.

        A group gives one when its trained rewards differ (and, with masked truncated
        reflections, one of its reflections finished): the rollout's
        :meth:`ReflectRetryRollout.groups_without_signal`.
        """
        import torch.distributed as dist

        groups = self.rollout.last_groups_with_signal
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, groups)
            groups = sum(parts)
        return groups > 0

    def note_micro_batch(self) -> bool:
        """Note the signal of the micro-batch about to be trained (the latest generation's).

        Returns:
            Whether its loss may go uncomputed: ``leave_loss_uncomputed`` and no signal (so
            the whole step has none and will be skipped).
        """
        signal = self.has_signal()
        self._step_signal = bool(self._step_signal) or signal
        if self.leave_loss_uncomputed and not signal:
            self.uncomputed_losses += 1
            return True
        return False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        # A run resumed from a checkpoint keeps counting the steps it skipped before.
        logged = [h["rrr/skipped_steps"] for h in state.log_history if "rrr/skipped_steps" in h]
        self.skipped = max(logged, default=0)
        return control

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._step_signal = None
        return control

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._saved = None
        signal = self.has_signal() if self._step_signal is None else self._step_signal
        if signal:
            return control
        kwargs["model"].zero_grad(set_to_none=True)
        scheduler, optimizer = kwargs["lr_scheduler"], kwargs["optimizer"]
        self._saved = (
            scheduler.state_dict(),
            [group["lr"] for group in optimizer.param_groups],
        )
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._step_signal = None
        if self._saved is not None:
            schedule, rates = self._saved
            kwargs["lr_scheduler"].load_state_dict(schedule)
            for group, rate in zip(kwargs["optimizer"].param_groups, rates, strict=True):
                group["lr"] = rate
            self.skipped += 1
            self._saved = None
            self.latest_skipped = True
        else:
            self.latest_skipped = False
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
        if logs is not None and "loss" in logs:
            values = {
                "rrr/skipped_steps": self.skipped,
                "rrr/step_skipped": float(self.latest_skipped),
            }
            logs.update(values)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(values)
        return control


class StepChanges(TrainerCallback):
    """What each optimizer step changed, logged one line per step and kept in ``records``.

    Per step: the GRPO groups of its batch and how many had reward variance (gave a gradient:
    :meth:`ReflectRetryRollout.groups_without_signal`), the loss and
    gradient norm the trainer logged, the learning rate the optimizer stepped with, whether
    the step was skipped (:class:`SkipStepsWithoutSignal` dropped its gradients), and the
    relative change of the trainable weights, ``||W_after - W_before|| / ||W_before||`` over
    all of them (for a LoRA adapter: its A and B matrices). The weight change is ``None``
    where the trainable weights are over ``max_tracked`` parameters (a copy would cost their
    memory: a full fine-tune) or sharded (DeepSpeed ZeRO-3). Also the step's wall time
    (generation, loss and update). Register it after :class:`SkipStepsWithoutSignal`.

    Args:
        rollout: The trainer's rollout function; its latest training batch is the step's.
        group_size: GRPO group size (``num_generations``).
        max_tracked: Most trainable parameters whose change is measured.
    """

    def __init__(
        self, rollout: ReflectRetryRollout, group_size: int, max_tracked: int = 50_000_000
    ) -> None:
        self.rollout, self.group_size, self.max_tracked = rollout, group_size, max_tracked
        self.records: list[dict[str, Any]] = []
        self._before: list[torch.Tensor] | None = None
        self._started = time.perf_counter()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._started = time.perf_counter()
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.records and self.records[-1]["step"] == state.global_step:
            self.records[-1]["seconds"] = round(time.perf_counter() - self._started, 1)
        return control

    @staticmethod
    def _trainable(model: Any) -> list[torch.Tensor]:
        return [p for p in model.parameters() if p.requires_grad]

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        params = self._trainable(kwargs["model"])
        batch = self.rollout.last_batch
        rewards = [] if batch is None else list(batch.rewards)
        groups = len(rewards) // self.group_size
        with_signal = self.rollout.last_groups_with_signal
        self.records.append(
            {
                "step": state.global_step + 1,
                "groups": groups,
                "groups_with_variance": with_signal,
                "retry_success": sum(rewards) / len(rewards) if rewards else None,
                "loss": None,
                "grad_norm": None,
                "learning_rate": float(kwargs["optimizer"].param_groups[0]["lr"]),
                "skipped": all(p.grad is None for p in params),
                "weight_change": None,
                "seconds": None,
            }
        )
        sizes = [p.numel() for p in params]
        self._before = None
        if 0 not in sizes and 0 < sum(sizes) <= self.max_tracked:
            self._before = [p.detach().clone() for p in params]
        return control

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self._before is not None and self.records:
            params = self._trainable(kwargs["model"])
            moved = sum(
                float((p.detach().float() - b.float()).pow(2).sum())
                for p, b in zip(params, self._before, strict=True)
            )
            norm = sum(float(b.float().pow(2).sum()) for b in self._before)
            self.records[-1]["weight_change"] = (moved / norm) ** 0.5 if norm > 0 else moved**0.5
            self._before = None
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
        record = self.records[-1] if self.records else None
        if logs and "loss" in logs and record and record["step"] == state.global_step:
            record["loss"], record["grad_norm"] = logs.get("loss"), logs.get("grad_norm")
            if state.is_world_process_zero:
                logger.info("%s", step_line(record, state.max_steps))
        return control


def step_line(record: dict[str, Any], max_steps: int | None = None) -> str:
    """One line on what an optimizer step changed (a :class:`StepChanges` record)."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    of = f"/{max_steps}" if max_steps else ""
    head = (
        f"step {record['step']}{of}: {record['groups_with_variance']} of {record['groups']} "
        "groups with reward variance"
    )
    if record["skipped"]:
        return f"{head}; skipped (no reward variance): no weight, moment or learning rate moved"
    change = record["weight_change"]
    moved = "" if change is None else f", trainable weights moved {change:.2e} of their norm"
    return (
        f"{head}; loss {number(record['loss'])}, grad norm {number(record['grad_norm'])}, "
        f"learning rate {number(record['learning_rate'])}{moved}"
    )


def format_steps(records: Sequence[dict[str, Any]]) -> str:
    """A markdown table of what each optimizer step changed (:class:`StepChanges` records)."""
    lines = [
        "What each optimizer step changed (weight change: ||W_after - W_before|| / ||W_before|| "
        "over the trainable weights):",
        "",
        "| step | groups with reward variance | loss | grad norm | learning rate | "
        "weight change | skipped |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        change = "-" if r["weight_change"] is None else f"{r['weight_change']:.2e}"
        cells = [
            "-" if r[k] is None else f"{r[k]:.3g}" for k in ("loss", "grad_norm", "learning_rate")
        ]
        lines.append(
            f"| {r['step']} | {r['groups_with_variance']} / {r['groups']} | {' | '.join(cells)} "
            f"| {change} | {'yes' if r['skipped'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


class TimeBudget(TrainerCallback):
    """Stops training once ``minutes`` of wall clock have passed since ``started``.

    Checked after each optimizer step, so the step under way always finishes (and is saved
    by the trainer's usual end-of-training logic).

    Args:
        minutes: The budget.
        started: ``time.perf_counter()`` at the start of the budgeted work (e.g. collection).
    """

    def __init__(self, minutes: float, started: float) -> None:
        self.deadline = started + 60.0 * minutes
        self.stopped_early = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        expired = time.perf_counter() >= self.deadline and state.global_step < state.max_steps
        # Every rank must stop at the same step: one that stopped alone would enter save_model
        # (a collective under ZeRO-3) while the others start the next step's collectives.
        if rank0_decision(expired):
            control.should_training_stop = True
            self.stopped_early = True
        return control


class TimeSnapshots(TrainerCallback):
    """Saves the policy the first time training wall time passes each of ``marks`` minutes.

    Checked after each optimizer step but the last; the snapshots go to
    ``<run_dir>/snapshots/`` (see :mod:`agents.snapshots`). Single process only
    (``GRPOReflectConfig`` checks it). Register it after :class:`TimeBudget`.

    Args:
        marks: Minutes, strictly increasing.
        started: ``time.perf_counter()`` at the start of the budgeted work (e.g. collection).
        run_dir: The run's output folder.
        tokenizer: Saved with each snapshot.
        spent: Training seconds spent before a resumed run's checkpoint: marks it passed were
            taken by the earlier run.
    """

    def __init__(
        self,
        marks: Sequence[float],
        started: float,
        run_dir: Path,
        tokenizer: Any,
        spent: float = 0.0,
    ) -> None:
        self.schedule = SnapshotSchedule(marks, run_dir, spent)
        self.started, self.tokenizer = started, tokenizer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        spent = time.perf_counter() - self.started
        # The final policy is saved anyway (TimeBudget, before this callback, may stop it).
        final = control.should_training_stop or state.global_step >= state.max_steps
        # The run's adapter scope goes with each snapshot (rrr_policy.json), as with the final.
        scope = getattr(args, "adapter_scope", None)
        model, step = kwargs["model"], state.global_step
        self.schedule.after(spent, final, model, self.tokenizer, adapter_scope=scope, step=step)
        return control


#: Older checkpoints (before the time went into ``trainer_state.json``) hold the training wall
#: time in this file; :func:`resume_checkpoint` still reads it.
SPENT_FILE = "rrr_train_seconds.json"


class RecordSpentTime(TrainerCallback, ExportableState):
    """Records the training wall time spent in every checkpoint's ``trainer_state.json``.

    The time is the callback's exported state (transformers' ``stateful_callbacks``), which
    the trainer writes into ``trainer_state.json``, the file it writes last: a checkpoint holds
    its time exactly when it is complete (:func:`last_complete_checkpoint`), whatever moment a
    kill comes. A resumed run reads it back with :func:`resume_checkpoint`, so that
    ``max_minutes`` and ``snapshot_minutes`` count the earlier process's time too.

    Args:
        started: ``time.perf_counter()`` at the start of the budgeted work, moved back by the
            seconds spent before a resumed checkpoint (default: now).
    """

    def __init__(self, started: float | None = None) -> None:
        self.started = time.perf_counter() if started is None else started

    @property
    def train_seconds(self) -> float:
        """Seconds spent since ``started``; setting it moves ``started`` back by that much."""
        return time.perf_counter() - self.started

    @train_seconds.setter
    def train_seconds(self, value: float) -> None:
        # transformers' restore_callback_states_from_checkpoint sets the saved attribute.
        self.started = time.perf_counter() - float(value)

    def state(self) -> dict[str, Any]:
        """What transformers saves: no constructor arguments, the seconds spent so far."""
        return {"args": {}, "attributes": {"train_seconds": self.train_seconds}}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        # A state resumed from a checkpoint saved without this callback has no entry for it,
        # and transformers' save would fail on the missing key.
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())
        return control


def resume_checkpoint(args: GRPOReflectConfig) -> tuple[str | None, float]:
    """The checkpoint ``--resume_from_checkpoint`` names and the training seconds before it.

    ``true`` / ``last`` / ``latest`` pick the newest complete ``checkpoint-N`` in
    ``output_dir`` (:func:`last_complete_checkpoint`); a run with none starts afresh (logged).
    The seconds are those :class:`RecordSpentTime` saved in the checkpoint's
    ``trainer_state.json`` (or in :data:`SPENT_FILE`, where an older version saved them); a
    checkpoint with neither (saved by another tool) counts as 0 seconds spent, with a warning.

    Raises:
        ValueError: A named checkpoint folder does not exist.
    """
    value = _resume_value(args.resume_from_checkpoint)
    if value is None or value is False:
        return None, 0.0
    if value is True:
        output = Path(args.output_dir)
        value = last_complete_checkpoint(output)
        if value is None:
            logger.info("no checkpoint in %s to resume from: training starts afresh", output)
            return None, 0.0
    if not Path(value).is_dir():
        raise ValueError(f"--resume_from_checkpoint: no checkpoint folder at {value}")
    spent = _spent_seconds(Path(value))
    if spent is None:
        logger.warning("%s records no training time: its training time counts as 0", value)
        return str(value), 0.0
    return str(value), spent


def _spent_seconds(checkpoint: Path) -> float | None:
    from transformers.trainer import TRAINER_STATE_NAME

    state_file = checkpoint / TRAINER_STATE_NAME
    if state_file.is_file():
        saved = json.loads(state_file.read_text()).get("stateful_callbacks", {})
        record = saved.get(RecordSpentTime.__name__)
        if isinstance(record, dict) and "train_seconds" in record.get("attributes", {}):
            return float(record["attributes"]["train_seconds"])
    spent_file = checkpoint / SPENT_FILE
    if spent_file.is_file():
        return float(json.loads(spent_file.read_text())["train_seconds"])
    return None


def last_complete_checkpoint(output: Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output`` that the trainer finished writing.

    transformers writes ``trainer_state.json`` into a checkpoint after its model, optimizer
    and RNG state, and deletes older checkpoints only after that; a newer folder without it was
    cut by a kill while saving, and is passed over (with a warning) for the one before it.

    Returns:
        The checkpoint's path, or None when ``output`` holds no complete checkpoint.
    """
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    prefix = f"{PREFIX_CHECKPOINT_DIR}-"
    found = [
        (int(folder.name[len(prefix) :]), folder)
        for folder in (output.glob(f"{prefix}*") if output.is_dir() else ())
        if folder.is_dir() and folder.name[len(prefix) :].isdigit()
    ]
    for _, folder in sorted(found, reverse=True):
        if (folder / TRAINER_STATE_NAME).is_file():
            return str(folder)
        logger.warning("%s has no %s (cut while saving): passed over", folder, TRAINER_STATE_NAME)
    return None


def rank0_decision(flag: bool) -> bool:
    """``flag`` as rank 0 computed it, on every rank of the default process group.

    A collective when a group of several processes is initialized (every rank must call it at
    the same point); ``flag`` itself otherwise.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    decision = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.broadcast(decision, src=0)
    return bool(decision.item())


def _resume_value(value: str | bool | None) -> str | bool | None:
    if isinstance(value, str) and value.lower() in ("true", "last", "latest"):
        return True
    return value or None


__all__ = [
    "SPENT_FILE",
    "RecordSpentTime",
    "SkipStepsWithoutSignal",
    "StepChanges",
    "TimeBudget",
    "TimeSnapshots",
    "format_steps",
    "last_complete_checkpoint",
    "rank0_decision",
    "reflect_trainer_class",
    "resume_checkpoint",
    "step_line",
]
