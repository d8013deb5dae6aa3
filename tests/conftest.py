"""Shared fixtures: paths to the real data bundled with the package (rrr_env/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rrr_env import data


@pytest.fixture(scope="session")
def tinyzero_test_path() -> Path:
    return data.COUNTDOWN_TINYZERO_TEST
