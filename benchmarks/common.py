"""What the benchmark scripts share: machine info, the command line, CPU pinning, JSONL rows.

Each script keeps what it measures and how it renders it; this module holds the plumbing
around that: the output arguments (``--out-dir``, ``--quick``, ``--render-only``), timing
summaries, and ``run_main``, the ``main()`` of a script with ``--render-only``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

try:
    from tqdm import tqdm
except ImportError:  # progress bars are optional

    def tqdm(iterable, **_kwargs):
        return iterable


REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
QUICK_RESULTS = Path(tempfile.gettempdir()) / "rrr-benchmarks"


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


#: CPU features that set the speed of the bundled models on a CPU: bf16 matrix units (AMX,
#: AVX-512 BF16; see ``agents.models.FAST_BF16_CPU_FLAGS``) and the vector width.
SPEED_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def machine_info(measured_code: Sequence[str], packages: Sequence[str]) -> dict[str, Any]:
    """What the numbers were measured on.

    ``measured_code``: repository paths whose uncommitted changes are flagged (``git_dirty``);
    ``packages``: the distributions whose versions are reported, in this order.
    ``cpu_flags`` lists the ``SPEED_CPU_FLAGS`` the CPU has: two CPUs with the same model
    name can differ there, and with them what a wall-clock budget buys.
    """
    cpu_model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu_model is None:
                cpu_model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    cpu_model = cpu_model or platform.processor()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *measured_code],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.rstrip("\n")  # not strip(): a line starts with the 2-letter status, " M"
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, ""
    return {
        "processor": platform.processor(),
        "cpu_model": cpu_model,
        "cpu_flags": [flag for flag in SPEED_CPU_FLAGS if flag in flags],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in packages},
        "git_commit": commit,
        "git_dirty": bool(dirty),
        "git_dirty_files": [line[3:] for line in dirty.splitlines()],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def cpu_features(machine: dict[str, Any]) -> str | None:
    """A record's ``cpu_flags`` as text (``None`` in records from before the field)."""
    flags = machine.get("cpu_flags")
    return None if flags is None else ", ".join(flags) or "no AVX2"


def cpu_name(machine: dict[str, Any]) -> str:
    """A record's CPU: its model and speed features (``unknown features`` in older records)."""
    return f"{machine['cpu_model']} ({cpu_features(machine) or 'unknown features'})"


def machine_line(machine: dict[str, Any]) -> str:
    """One markdown line describing the machine of a run."""
    commit = (machine["git_commit"] or "unknown")[:12]
    if machine["git_dirty"]:
        commit += " (uncommitted changes)"
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    features = cpu_features(machine)
    features = f"{features}; " if features else ""
    return (
        f"{machine['cpu_model']} ({features}{machine['cpu_count']} CPUs, affinity "
        f"{machine['cpu_affinity']}, load {machine['load_average_1m']} at start), "
        f"{machine['platform']}, Python {machine['python']}, {packages}; "
        f"commit {commit}; {machine['date']}"
    )


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command that reproduces this run."""
    return " ".join(["python", "-m", module, *map(shlex.quote, argv)])


def pin_cpu(cpu: int | None) -> None:
    """Run on one given core (``--cpu``); the measured code is single-threaded anyway."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def write_row(handle, row: dict[str, Any]) -> None:
    """Append one JSON row and flush, so an interrupted run keeps what it measured."""
    handle.write(json.dumps(row, sort_keys=True) + "\n")
    handle.flush()


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def summary_us(
    samples_ns: Sequence[int], digits: int = 3, with_min: bool = True
) -> dict[str, float]:
    """Median, 10th / 90th percentile, mean (and minimum) of per-call timings, in microseconds."""
    deciles = statistics.quantiles(samples_ns, n=10) if len(samples_ns) > 1 else [samples_ns[0]] * 9
    summary = {
        "median": round(statistics.median(samples_ns) / 1e3, digits),
        "p10": round(deciles[0] / 1e3, digits),
        "p90": round(deciles[-1] / 1e3, digits),
        "mean": round(statistics.fmean(samples_ns) / 1e3, digits),
    }
    if with_min:
        summary["min"] = round(min(samples_ns) / 1e3, digits)
    return summary


def add_output_arguments(
    parser: argparse.ArgumentParser, quick_help: str, render_only: bool = True
) -> None:
    """``--out-dir``, ``--quick`` and ``--render-only``; ``resolve_out_dir`` fills the default."""
    parser.add_argument("--out-dir", type=Path, default=None, help=f"default {RESULTS}")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if render_only:
        parser.add_argument(
            "--render-only", action="store_true", help="rewrite the markdown from the JSONL"
        )


def resolve_out_dir(args: argparse.Namespace) -> None:
    """No ``--out-dir``: ``QUICK_RESULTS`` with ``--quick``, else ``RESULTS``."""
    if args.out_dir is None:
        args.out_dir = QUICK_RESULTS if args.quick else RESULTS


def run_main(
    module: str,
    name: str,
    parse_args: Callable[[Sequence[str]], argparse.Namespace],
    run: Callable[[argparse.Namespace, Path, str], None],
    render: Callable[[list[dict[str, Any]]], str],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse the arguments, measure (unless ``--render-only``), render and print the markdown.

    ``run(args, jsonl, command)`` writes ``<out-dir>/<name>.jsonl``; ``render(rows)`` returns
    the markdown of its rows, written to ``<out-dir>/<name>.md``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jsonl, markdown = args.out_dir / f"{name}.jsonl", args.out_dir / f"{name}.md"
    if not args.render_only:
        pin_cpu(args.cpu)
        run(args, jsonl, command_line(module, argv))
    text = render(read_rows(jsonl))
    markdown.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {jsonl} and {markdown}")
