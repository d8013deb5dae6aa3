"""Prove that the ``gpu`` extra resolves with the base install: pip's resolver, no install.

    python -m benchmarks.resolve_gpu_extra            # runs pip, needs PyPI (a few minutes)
    python -m benchmarks.resolve_gpu_extra --report /tmp/gpu.json   # trim a report pip wrote

Runs ``pip install --dry-run --ignore-installed --report - ".[train,gpu]" torch==<README's>``
and writes the versions pip would install, with the requirement strings it resolved, to
``benchmarks/results/gpu_extra_resolution.json``. ``tests/test_gpu_extra.py`` checks that file
against ``pyproject.toml`` and TRL's supported vLLM window, offline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS

OUTPUT = RESULTS / "gpu_extra_resolution.json"
#: The README's set-up line installs this torch first; the resolution is pinned to it too.
TORCH = "torch==2.13.0"
EXTRAS = ("train", "gpu")
#: Distributions whose resolved versions the tests read.
KEY_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "vllm",
    "deepspeed",
    "accelerate",
    "peft",
    "datasets",
    "tensorboard",
    "tokenizers",
)


def requirements() -> dict[str, list[str]]:
    """The extras' requirement strings in ``pyproject.toml``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return {"base": project["dependencies"], **{name: extras[name] for name in EXTRAS}}


def command() -> list[str]:
    """The pip command (the report goes to a file given later)."""
    target = f"{REPO}[{','.join(EXTRAS)}]"
    return [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q"] + [
        target,
        TORCH,
    ]


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The resolution: every distribution pip would install and its version."""
    installs = {
        item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]
    }
    installs.pop("rrr", None)
    return {
        "command": "pip install --dry-run --ignore-installed --report - "
        f'".[{",".join(EXTRAS)}]" {TORCH}',
        "date": dt.date.today().isoformat(),
        "python": platform.python_version(),
        "pip": report.get("pip_version"),
        "note": "torch shows the local build pip picked (+cpu on a CPU-only index); PyPI's "
        "torch wheel of the same version is the CUDA build",
        "requirements": requirements(),
        "key_versions": {name: installs.get(name) for name in KEY_PACKAGES},
        "installs": dict(sorted(installs.items())),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, help="a report pip already wrote (--report)")
    args = parser.parse_args(argv)
    path = args.report
    if path is None:
        path = Path(tempfile.mkdtemp()) / "report.json"
        subprocess.run([*command(), "--report", str(path)], check=True)
    summary = summarize(json.loads(path.read_text()))
    OUTPUT.write_text(json.dumps(summary, indent=2) + "\n")
    for name, version in summary["key_versions"].items():
        print(f"{name}=={version}")
    print(f"wrote {OUTPUT}")
    return summary


if __name__ == "__main__":
    main()
