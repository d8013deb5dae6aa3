"""A killed engine's temporary export folder is removed by the next engine (no disk leak).

A 1.5B model's GGUF export is 3.4 GB; a process killed by a signal or the out-of-memory
killer runs no finalizer, and its folder used to stay in the temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from agents.engines.openvino import WORKDIR_PREFIX, new_workdir


def test_folders_of_dead_processes_go_and_the_others_stay(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = tmp_path / f"{WORKDIR_PREFIX}{int(child.stdout)}-abc"
    alive = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-def"
    unnamed = tmp_path / f"{WORKDIR_PREFIX}xyz"  # an older folder: its owner is unknown
    other = tmp_path / "someone-else-123-x"
    for folder in (dead, alive, unnamed, other):
        folder.mkdir()
        (folder / "policy-1.gguf").write_bytes(b"\0" * 16)
    made = new_workdir()
    assert not dead.exists()
    assert alive.exists() and unnamed.exists() and other.exists()
    assert made.parent == tmp_path and made.name.startswith(f"{WORKDIR_PREFIX}{os.getpid()}-")
