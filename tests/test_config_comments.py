"""The CPU config's header says how it differs from the no-argument run, and says it truly.

Issue 25 found its comment claiming the no-argument run "uses exactly these" values while it
set 4 steps, groups of 8, 128/256-token limits and 16 eval items against 2, 4, 64/192 and 8.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from agents.grpo_reflect import GRPOReflectConfig

CONFIG = Path(__file__).resolve().parents[1] / "agents" / "configs" / "grpo_reflect_countdown.yaml"
#: Options whose default is None and resolved at run time (collect: iff no failures_path and
#: no bundled screened set matches; cpu_recipe: iff no CUDA GPU); the YAML writes out what
#: they resolve to for its settings on a CPU.
RESOLVED_AT_RUN_TIME = {"collect": True, "cpu_recipe": True}


def _default(field: dataclasses.Field) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def _normalised(value: object) -> object:
    # report_to: "none", ["none"] and [] all log nowhere.
    return [] if value in ("none", ["none"]) else value


def test_every_value_the_cpu_config_changes_is_named_in_its_header_with_the_demo_value():
    text = CONFIG.read_text(encoding="utf-8")
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    fields = {f.name: f for f in dataclasses.fields(GRPOReflectConfig)}
    changed = {}
    for key, value in yaml.safe_load(text).items():
        if key in RESOLVED_AT_RUN_TIME:
            assert value == RESOLVED_AT_RUN_TIME[key], key
            continue
        default = _default(fields[key])
        if _normalised(value) != _normalised(default):
            changed[key] = (value, default)
    assert changed, "the CPU config should differ from the demo somewhere"
    for key, (value, default) in changed.items():
        assert key in header, f"{key}: {value!r} here, {default!r} in the demo; header silent"
    assert "exactly these" not in header


def test_the_cpu_config_collects_because_no_bundled_screened_set_matches_it(tmp_path):
    settings = dict(yaml.safe_load(CONFIG.read_text(encoding="utf-8")))
    settings.pop("collect")
    resolved = GRPOReflectConfig(**{**settings, "output_dir": str(tmp_path)})
    assert resolved.collect is True and not resolved.bundled_failures
