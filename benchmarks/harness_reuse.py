"""Rows of another head-to-head folder that a run can take as its own (``--reuse-from``).

Two kinds of finished results do not depend on a run's budget:

- the untrained controls (``vanilla``, ``retry``, ``fixed_reflection``, ``best_of_2``): their
  evaluation protocol alone fixes them;
- a trained seed's policy at a training time ``B``: both trainers run at a constant learning
  rate and stop after the step (RRR-GRPO) or iteration (RISE-AWR) during which their
  wall-clock budget runs out, and save a snapshot after the step during which its mark
  passes. So the snapshot of mark ``B`` of a run with the same seed and training options is
  the policy that a run with budget ``B`` ends with, evaluated by the same protocol; and a
  row of the same budget is that run's end point itself.

A reused row is copied with its episode files (``episodes/``), carries ``reused_from`` (the
folder, the row and, for a snapshot, its mark) and this run's command and budget, and is
scored like the rows the run makes itself. A folder evaluated by another protocol is refused:
its rows do not compare with this run's. A trained row with other training options, or
without a snapshot at this budget, is not reused, with a line saying why; the arm trains.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import rrr_vs_rise as harness

__all__ = ["Reused", "plan_reuse", "reuse_rows"]

#: Options that set where a run writes, what it runs and its schedule, not what one of its
#: rows measured: rows made under other values of these are comparable.
RUN_ONLY_OPTIONS = frozenset(
    {
        "budget_minutes",
        "curve_points",
        "seeds",
        "arms",
        "name",
        "out_dir",
        "runs_dir",
        "render_only",
        "reuse_from",
        "no_replay",  # replays are exact: the same episodes either way
        "quick",
    }
)
#: Options that fix an evaluation's episodes (``retry_max_tokens`` as resolved).
PROTOCOL_OPTIONS = (
    "env",
    "env_kwargs",
    "model",
    "retry_context",
    "eval_split",
    "eval_n",
    "attempt_max_tokens",
    "retry_max_tokens",
    "reflection_max_tokens",
    "sample_temperature",
    "eval_dtype",
    "engine",
    "batch_size",
)
#: Fields of a trained row that describe its end point, replaced by a snapshot's.
END_POINT_FIELDS = frozenset(
    {"held_out_curve", "curve", "train_seconds", "steps", "iterations", "updates", "run_dir"}
)


#: Fields of an evaluation that replayed the vanilla control's first attempts.
REPLAY_FIELDS = frozenset({"replay_from", "replayed_turns"})


@dataclass
class Reused:
    """What a run takes from ``--reuse-from``.

    Attributes:
        rows: The rows, as this run writes them.
        files: ``(source episode file, name in this run's episodes/)`` to copy.
        notes: One line per trained row of the source that is not reused, and why.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Every option of ``args`` in comparable form (task options parsed, retry limit resolved)."""
    options = dict(vars(args))
    options["env_kwargs"] = json.loads(args.env_kwargs)
    options["retry_max_tokens"] = harness.retry_tokens(args)
    return options


def _differences(
    theirs: argparse.Namespace, ours: argparse.Namespace, keys: Sequence[str]
) -> list[str]:
    """``--option theirs (this run: ours)`` for each of ``keys`` whose values differ."""
    a, b = _options(theirs), _options(ours)
    return [f"--{k.replace('_', '-')} {a[k]} (this run: {b[k]})" for k in keys if a[k] != b[k]]


def training_keys(arm: str, args: argparse.Namespace) -> list[str]:
    """The options that change ``arm``'s training: all but the run's own and the other's."""
    other = "rise_" if arm == "rrr" else "rrr_"
    skip = RUN_ONLY_OPTIONS | set(PROTOCOL_OPTIONS)
    return sorted(k for k in vars(args) if k not in skip and not k.startswith(other))


def _snapshot_files(source: Path, arm: str, seed: int) -> list[tuple[float, Path]]:
    """A trained seed's snapshot episode files in ``source`` (``<arm>__seed<s>__<m>min``),
    by mark."""
    found = []
    for path in (source / "episodes").glob(f"{arm}__seed{seed}__*min.jsonl"):
        mark = path.name.removesuffix("min.jsonl").rsplit("__", 1)[-1]
        try:
            found.append((float(mark), path))
        except ValueError:
            continue
    return sorted(found)


def _marked_points(row: dict[str, Any], source: Path) -> list[tuple[float, dict, Path]]:
    """``(mark, curve point, episode file)`` of each snapshot of a trained row.

    A point records its ``mark``; in rows from before it did, the points (in order of
    training time) pair with the snapshot files in order of mark, one file per point.

    Raises:
        ValueError: Points and snapshot files that do not pair up.
    """
    points = row.get("held_out_curve") or []
    files = _snapshot_files(source, row["arm"], row["seed"])
    by_mark = dict(files)
    if all("mark" in p for p in points):
        missing = [p["mark"] for p in points if p["mark"] not in by_mark]
        if missing:
            raise ValueError(f"{source}: no episode file of the {missing[0]:g}-min snapshot")
        return [(p["mark"], p, by_mark[p["mark"]]) for p in points]
    if len(files) != len(points):
        raise ValueError(
            f"{source}: {row['arm']} seed {row['seed']} has {len(points)} curve points and "
            f"{len(files)} snapshot episode files; they cannot be paired"
        )
    return [(mark, point, path) for (mark, path), point in zip(files, points, strict=True)]


def _snapshot_row(
    row: dict[str, Any], mark: float, point: dict[str, Any], earlier: list[dict[str, Any]]
) -> dict[str, Any]:
    """A trained row as the policy of its snapshot at ``mark`` (``point``) scores it."""
    # The end point's fields, its evaluation's replay counts included, give way to the
    # snapshot's.
    kept = {k: v for k, v in row.items() if k not in END_POINT_FIELDS | REPLAY_FIELDS}
    scores = {k: v for k, v in point.items() if k not in ("minutes", "mark", "step", "iteration")}
    out = {**kept, **scores, "train_seconds": point["minutes"] * 60, "held_out_curve": earlier}
    position = point.get("step", point.get("iteration"))
    curve = [c for c in row.get("curve") or [] if c.get("step", c.get("iteration")) <= position]
    out["curve"] = curve
    if row["arm"] == "rrr":
        out["steps"] = position
        out["updates"] = sum(not _skipped(c) for c in curve)
    else:
        out["iterations"] = position
        if curve and all("updates" in c for c in curve):
            out["updates"] = sum(c["updates"] for c in curve)
    if curve and all("generated_tokens" in c for c in curve):
        out["train_generated_tokens"] = sum(c["generated_tokens"] for c in curve)
    else:
        out.pop("train_generated_tokens", None)  # the end point's: not this policy's
    return out


def _skipped(entry: dict[str, Any]) -> bool:
    """Whether an RRR curve entry's step was skipped (recorded, or else no reward variance)."""
    if "skipped" in entry:
        return bool(entry["skipped"])
    return entry.get("zero_variance") == 1.0


def plan_reuse(
    args: argparse.Namespace, source: Path, done: set[tuple[str, int]], command: str
) -> Reused:
    """The rows of ``source`` that this run (``args``) takes, with their episode files.

    Args:
        args: This run's options.
        source: A finished folder of this harness (``results.jsonl``, ``episodes/``).
        done: ``(arm, seed)`` already in this run's folder: not taken again.
        command: This run's command, which the reused rows record (with ``--reuse-from``,
            it reproduces them).

    Raises:
        ValueError: ``source`` has no rows, or rows this run would take were evaluated by
            another protocol, or snapshot files that do not match its rows.
    """
    rows = harness.read_rows(source / "results.jsonl")
    if not rows:
        raise ValueError(f"--reuse-from {source}: no rows in {source / 'results.jsonl'}")
    plan = Reused()
    seeds = range(1, args.seeds + 1)
    taken = set(done)
    for row in rows:
        arm, seed = row["arm"], row["seed"]
        wanted = arm in args.arms and (seed == 0 if arm in harness.CONTROL_ARMS else seed in seeds)
        if not wanted or (arm, seed) in taken:
            continue
        taken.add((arm, seed))
        theirs = harness.row_args(row)
        changed = _differences(theirs, args, PROTOCOL_OPTIONS)
        if changed:
            raise ValueError(
                f"--reuse-from {source}: its {arm} rows were evaluated with {'; '.join(changed)}"
            )
        name = f"{arm}__seed{seed}.jsonl"
        origin = {"folder": str(source), "arm": arm, "seed": seed}
        if arm in harness.CONTROL_ARMS:
            plan.files.append((source / "episodes" / name, name))
            plan.rows.append(_as_ours(row, args, command, origin))
            continue
        changed = _differences(theirs, args, training_keys(arm, args))
        if changed:
            plan.notes.append(
                f"{arm} seed {seed} of {source} is not reused: trained with {'; '.join(changed)}"
            )
            continue
        points = _marked_points(row, source)
        if math.isclose(row.get("budget_minutes", theirs.budget_minutes), args.budget_minutes):
            plan.files.append((source / "episodes" / name, name))
            plan.files += [(path, path.name) for _, _, path in points]
            plan.rows.append(_as_ours(row, args, command, origin))
            continue
        at = [i for i, (mark, _, _) in enumerate(points) if math.isclose(mark, args.budget_minutes)]
        if not at:
            plan.notes.append(
                f"{arm} seed {seed} of {source} is not reused: no snapshot at "
                f"{args.budget_minutes:g} min (marks: "
                f"{', '.join(f'{m:g}' for m, _, _ in points) or 'none'})"
            )
            continue
        mark, point, path = points[at[0]]
        earlier = points[: at[0]]
        plan.files.append((path, name))
        plan.files += [(p, p.name) for _, _, p in earlier]
        snapshot = _snapshot_row(row, mark, point, [p for _, p, _ in earlier])
        origin |= {"snapshot_minutes": mark, "budget_minutes": theirs.budget_minutes}
        plan.rows.append(_as_ours(snapshot, args, command, origin))
    return plan


def _as_ours(
    row: dict[str, Any], args: argparse.Namespace, command: str, origin: dict[str, Any]
) -> dict[str, Any]:
    """``row`` as this run writes it: its command and budget, and where it came from."""
    return {
        **row,
        "budget_minutes": args.budget_minutes,
        "command": command,
        "reused_from": {**origin, "command": row["command"]},
    }


def reuse_rows(plan: Reused, results: Path) -> list[dict[str, Any]]:
    """Copy ``plan``'s episode files into this run's folder, then append its rows.

    Files first: a kill in between leaves episode files that the arm's own evaluation
    would resume from, and no row that lacks its episodes.
    """
    episodes = results.parent / "episodes"
    episodes.mkdir(parents=True, exist_ok=True)
    for path, name in plan.files:
        shutil.copyfile(path, episodes / name)
    harness.append_lines(results, plan.rows)
    for row in plan.rows:
        origin = row["reused_from"]
        what = (
            f"its {origin['snapshot_minutes']:g}-min snapshot"
            if "snapshot_minutes" in origin
            else "its row"
        )
        print(f"{row['arm']} seed {row['seed']}: reused {what} from {origin['folder']}")
    for note in plan.notes:
        print(note)
    return plan.rows
