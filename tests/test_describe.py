"""rrr_env.describe: each id's keyword arguments, from the source the unknown-option error uses."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import gymnasium as gym
import pytest

import rrr_env
from rrr_env import ENV_IDS, ReflectRetryEnv
from rrr_env.describe import REQUIRED, accepted, describe, env_options, render_markdown
from rrr_env.tasks import TASKS

gym.register_envs(rrr_env)

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- describe:start -->", "<!-- describe:end -->"
SAMPLE = str(Path(__file__).parent / "fixtures" / "xlam_sample.jsonl")


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_every_option_of_every_id_has_a_type_a_default_and_a_meaning(env_id):
    description = describe(env_id)
    assert description.options, env_id
    for option in description.options:
        assert option.type and option.type != "Any" or option.name == "data", option
        assert option.meaning and not option.meaning.startswith("Deprecated"), option
        assert option.default is REQUIRED or option.default is None or option.default != ""


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_the_unknown_option_error_lists_what_describe_lists(env_id):
    options = {"data": SAMPLE} if "FunctionCalling" in env_id else {}
    with pytest.raises(TypeError) as caught:
        gym.make(env_id, bogus_option=1, **options)
    listed = str(caught.value).split("accepted: ", 1)[1].split("(rrr_env.describe", 1)[0]
    assert re.findall(r"'(\w+)'", listed) == describe(env_id).names()


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_the_defaults_are_those_the_id_makes(env_id):
    # Every listed option is accepted by gym.make with its listed default.
    description = describe(env_id)
    kwargs = {o.name: o.default for o in description.options if o.default is not REQUIRED}
    if "FunctionCalling" in env_id:
        kwargs["data"] = SAMPLE
    env = gym.make(env_id, **kwargs).unwrapped
    assert env.max_attempts == description.option("max_attempts").default
    for name, registered in ENV_IDS[env_id].items():
        if name != "task":
            assert description.option(name).default == registered


def test_describe_covers_every_keyword_of_the_env_and_the_tasks_but_not_deprecated_ones():
    env_keywords = {
        p.name
        for p in inspect.signature(ReflectRetryEnv).parameters.values()
        if p.kind is not p.VAR_KEYWORD
    }
    assert {o.name for o in env_options()} == env_keywords
    assert "retry_context" in accepted("countdown")
    for task in TASKS:
        assert not {"source", "path"} & set(accepted(task)), task
    countdown = describe("rrr/Countdown-v1")
    assert countdown.option("validation_percent").default == 10
    assert describe("rrr/Countdown-v0").option("validation_percent").default == 0
    assert countdown.option("num_count").type == "int | tuple[int, int]"
    with pytest.raises(KeyError, match="no option"):
        countdown.option("source")
    with pytest.raises(KeyError, match="unknown environment id"):
        describe("rrr/Chess-v0")


def test_describe_prints_a_readable_listing():
    text = str(rrr_env.describe("rrr/Countdown-v1"))
    assert text.startswith("rrr/Countdown-v1 (task 'countdown')")
    assert "  validation_percent: int = 10" in text
    assert "  retry_context: str = 'conversation'" in text


def test_the_markdown_tables_cover_every_id_and_escape_pipes():
    text = render_markdown()
    for env_id in ENV_IDS:
        assert f"`{env_id}`" in text
    for line in text.splitlines():
        if line.startswith("| `"):
            # Four columns: escaped pipes (\|) in types such as `str \| None` do not count.
            assert len(re.split(r"(?<!\\)\|", line)) == 6, line
    assert "`0` (`rrr/Countdown-v1`: `10`" in text  # the code's default, then the ids'
    assert describe("rrr/GSM8K-v0").markdown().startswith("| option | type | default |")


def test_the_readme_table_is_the_rendered_one():
    # The README holds render_markdown()'s output between the markers; regenerate it with
    # python -c "import rrr_env; print(rrr_env.render_markdown(), end='')"
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"README.md has no {START} ... {END} block"
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == render_markdown().strip()
