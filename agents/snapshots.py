"""Policy snapshots at fixed training wall times, for held-out learning curves.

A trainer given ``snapshot_minutes`` saves its policy (the LoRA adapter, or the whole model
without LoRA) the first time its training wall time passes each mark, into
``<run>/snapshots/<minutes>min/`` with a ``snapshot.json`` that records the exact training
seconds and the iteration or step. ``benchmarks.rrr_vs_rise`` evaluates them afterwards, so
a curve's points come from the same greedy held-out protocol as its end point.

A snapshot of a run with an adapter scope (``agents.grpo_reflect --adapter_scope``) records it
in ``rrr_policy.json``, as the run's final policy does, so that :func:`load_policy` loads it as
the run used it (a reflection-only adapter unmerged); a folder without that file is ``all``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "INFO_FILE",
    "POLICY_FILE",
    "SNAPSHOTS",
    "SnapshotSchedule",
    "check_marks",
    "due_marks",
    "list_snapshots",
    "load_policy",
    "load_snapshot",
    "read_adapter_scope",
    "save_snapshot",
    "write_adapter_scope",
]

#: Folder of a run's snapshots.
SNAPSHOTS = "snapshots"
#: Written next to a saved policy (and its snapshots) by ``agents.grpo_reflect``:
#: ``{"adapter_scope": ...}``.
POLICY_FILE = "rrr_policy.json"
#: What a snapshot records besides the weights: ``minutes`` (its mark), ``train_seconds``.
INFO_FILE = "snapshot.json"


def check_marks(marks: Sequence[float] | None, flag: str) -> None:
    """Raise ``ValueError`` unless ``marks`` are finite, positive and strictly increasing."""
    if not marks:
        return
    if not all(math.isfinite(m) and m > 0 for m in marks):
        raise ValueError(f"{flag} must be positive minutes, got {list(marks)}")
    if any(b <= a for a, b in zip(marks, marks[1:], strict=False)):
        raise ValueError(f"{flag} must be strictly increasing, got {list(marks)}")


def due_marks(marks: Sequence[float] | None, train_seconds: float, taken: int) -> list[float]:
    """The marks after the first ``taken`` that ``train_seconds`` of training have passed.

    Marks passed together (one long iteration) describe the same weights: the caller saves
    one snapshot, named after the last of them, and counts them all as taken.
    """
    return [m for m in (marks or [])[taken:] if train_seconds >= 60.0 * m]


class SnapshotSchedule:
    """When a trainer saves its snapshots: once per mark passed, never for the final policy.

    Args:
        marks: Minutes of training time, strictly increasing (``None``: no snapshots).
        run_dir: The run's folder; snapshots go to ``<run_dir>/snapshots/``.
        spent: Training seconds already spent (a resumed run): marks it passed are taken.
    """

    def __init__(self, marks: Sequence[float] | None, run_dir: Path, spent: float = 0.0):
        self.marks, self.run_dir = list(marks or []), Path(run_dir)
        self.taken = len(due_marks(self.marks, spent, 0))

    def after(
        self,
        spent: float,
        final: bool,
        policy: Any,
        tokenizer: Any,
        *,
        adapter_scope: str | None = None,
        **position: Any,
    ) -> Path | None:
        """Save a snapshot if ``spent`` seconds passed a mark not yet taken; return its folder.

        ``final``: the policy is the run's end point, saved anyway, so no snapshot is taken.
        ``adapter_scope``: the run's, recorded in ``rrr_policy.json`` (``None``: no file, as
        a run without scopes, e.g. RISE-AWR). ``position`` (``iteration=`` or ``step=``) goes
        to ``snapshot.json``.
        """
        due = due_marks(self.marks, spent, self.taken)
        if not due or final:
            return None
        self.taken += len(due)
        info = {"train_seconds": spent, **position}
        return save_snapshot(self.run_dir, due[-1], policy, tokenizer, info, adapter_scope)


def write_adapter_scope(path: str | Path, adapter_scope: str) -> None:
    """Record ``adapter_scope`` in ``<path>/rrr_policy.json`` (read by :func:`read_adapter_scope`).

    Raises:
        ValueError: An unknown scope.
    """
    from agents.backends import ADAPTER_SCOPES

    if adapter_scope not in ADAPTER_SCOPES:
        raise ValueError(f"adapter_scope must be one of {ADAPTER_SCOPES}, got {adapter_scope!r}")
    (Path(path) / POLICY_FILE).write_text(json.dumps({"adapter_scope": adapter_scope}) + "\n")


def save_snapshot(
    run_dir: Path,
    minutes: float,
    policy: Any,
    tokenizer: Any,
    info: dict[str, Any],
    adapter_scope: str | None = None,
) -> Path:
    """Save ``policy`` and ``tokenizer`` as the snapshot of mark ``minutes``; return its folder.

    ``info`` (at least ``train_seconds``) goes to ``snapshot.json``, written last, so a folder
    without it is an interrupted save and :func:`list_snapshots` ignores it. ``adapter_scope``
    (if given) goes to ``rrr_policy.json``, so that :func:`load_policy` loads the snapshot as
    its run used the adapter.

    Raises:
        ValueError: An unknown ``adapter_scope`` (checked before anything is written).
    """
    from agents.backends import ADAPTER_SCOPES

    if adapter_scope is not None and adapter_scope not in ADAPTER_SCOPES:
        raise ValueError(f"adapter_scope must be one of {ADAPTER_SCOPES}, got {adapter_scope!r}")
    path = Path(run_dir) / SNAPSHOTS / f"{minutes:g}min"
    shutil.rmtree(path, ignore_errors=True)
    policy.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if adapter_scope is not None:
        write_adapter_scope(path, adapter_scope)
    (path / INFO_FILE).write_text(json.dumps({"minutes": minutes, **info}, indent=2))
    return path


def list_snapshots(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The complete snapshots of a run, as (folder, info), in order of training time."""
    found = []
    for info_file in (Path(run_dir) / SNAPSHOTS).glob(f"*/{INFO_FILE}"):
        found.append((info_file.parent, json.loads(info_file.read_text())))
    return sorted(found, key=lambda item: item[1]["train_seconds"])


def load_snapshot(path: Path, base_model: str, dtype: str = "float32") -> tuple[Any, Any]:
    """The model and tokenizer of a snapshot: ``base_model`` plus its adapter, merged.

    A snapshot without ``adapter_config.json`` holds a whole model and is loaded as one.
    """
    from agents.models import load_model_and_tokenizer

    path = Path(path)
    if not (path / "adapter_config.json").exists():
        return load_model_and_tokenizer(str(path), dtype=dtype)
    from peft import PeftModel

    model, tokenizer = load_model_and_tokenizer(base_model, dtype=dtype)
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload(), tokenizer


def read_adapter_scope(path: str | Path) -> str:
    """The adapter scope a saved policy recorded in ``rrr_policy.json`` (``all`` without one).

    Raises:
        ValueError: The file names an unknown scope.
    """
    from agents.backends import ADAPTER_SCOPES

    file = Path(path) / POLICY_FILE
    if not file.is_file():
        return "all"
    scope = json.loads(file.read_text()).get("adapter_scope", "all")
    if scope not in ADAPTER_SCOPES:
        raise ValueError(f"{file}: adapter_scope must be one of {ADAPTER_SCOPES}, got {scope!r}")
    return scope


def load_policy(
    path: str | Path, base_model: str | None = None, dtype: str = "auto"
) -> tuple[Any, Any, str]:
    """A saved policy as its scope uses it: ``(model, tokenizer, adapter_scope)``.

    Under scope ``reflection`` the LoRA adapter stays a separate, unmerged PEFT adapter on its
    base model (``base_model``, default the adapter's ``base_model_name_or_path``), so that a
    :class:`agents.backends.ReflectionAdapterBackend` can switch it off for attempts and
    retries. Any other policy loads as before (a LoRA snapshot merged, see
    :func:`load_snapshot`, or whatever ``--model`` accepts).
    """
    from agents.models import load_model_and_tokenizer

    name, path = str(path), Path(path)
    scope = read_adapter_scope(path)
    adapter = path / "adapter_config.json"
    if scope == "all" or not adapter.exists():
        if scope == "reflection":
            raise ValueError(f"{path} records adapter_scope 'reflection' but holds no adapter")
        if base_model is not None and adapter.exists():
            model, tokenizer = load_snapshot(path, base_model, dtype)
        else:
            model, tokenizer = load_model_and_tokenizer(name, dtype=dtype)
        return model, tokenizer, scope
    from peft import PeftModel

    base = base_model or json.loads(adapter.read_text())["base_model_name_or_path"]
    model, tokenizer = load_model_and_tokenizer(base, dtype=dtype)
    return PeftModel.from_pretrained(model, str(path)).eval(), tokenizer, scope
