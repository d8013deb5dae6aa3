"""The README's facts about where things go: the model cache and the main job's results.

Issue 27 found the README silent on both; these tests tie its sentences to the code's own
defaults, so a change of either shows up here.
"""

from __future__ import annotations

import re
from pathlib import Path

from agents.grpo_reflect import GRPOReflectConfig
from agents.models import default_cache_dir

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_readme_names_the_model_cache_and_its_variable(monkeypatch):
    monkeypatch.delenv("RRR_CACHE_DIR", raising=False)
    home_relative = "~/" + str(default_cache_dir().relative_to(Path.home()))
    assert f"`{home_relative}`" in README
    assert "`$RRR_CACHE_DIR`" in README
    monkeypatch.setenv("RRR_CACHE_DIR", "/tmp/elsewhere")
    assert default_cache_dir() == Path("/tmp/elsewhere")


def test_the_readme_says_where_the_main_job_writes_its_results():
    output_dir = GRPOReflectConfig.__dataclass_fields__["output_dir"].default
    assert f"`{output_dir}/`" in README
    for written in ("result.json", "eval_before", "eval_after", "failures"):
        assert f"`{written}" in README, written


def test_the_readme_states_the_test_suites_time_and_peak_memory():
    line = next((s for s in README.splitlines() if "test suite" in s and "GB" in s), "")
    assert re.search(r"\d+(\.\d+)? min", line) and re.search(r"\d+(\.\d+)? GB", line), line
