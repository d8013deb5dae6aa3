"""Shared fixtures: paths to the real data that sits beside the repository in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Offline machines read GSM8K from the shared copy of the original files (the hub otherwise).
if (SHARED_DATA / "gsm8k").is_dir():
    os.environ.setdefault("RRR_GSM8K_DIR", str(SHARED_DATA / "gsm8k"))


@pytest.fixture(scope="session")
def tinyzero_test_path() -> Path:
    path = SHARED_DATA / "countdown" / "tinyzero_test.jsonl"
    if not path.is_file():
        pytest.skip(f"TinyZero Countdown test set not found at {path}")
    return path
