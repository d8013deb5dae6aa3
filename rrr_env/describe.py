"""Each environment id's keyword arguments: name, type, default and meaning, from one source.

The source is the code itself: the keyword-only parameters of :class:`ReflectRetryEnv` and of
each task class (their type annotations and defaults), the meanings from their docstrings
(``## Arguments`` of the env, ``Args:`` of the tasks), and the defaults that each id
registers in :data:`rrr_env.registration.ENV_IDS`. An argument whose meaning starts with
"Deprecated" is still accepted but listed nowhere. The error for an unknown keyword
(``gym.make("rrr/Countdown-v1", foo=1)``) lists the same options.

``rrr_env.describe`` is the function (the package exports it under this module's name); take
the rest with ``from rrr_env.describe import render_markdown, Option, ...``.

Example:
    >>> import rrr_env
    >>> d = rrr_env.describe("rrr/Countdown-v1")
    >>> d.option("validation_percent").default, d.option("max_attempts").default
    (10, 2)
    >>> "retry_context" in d.names() and "source" not in d.names()
    True
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from rrr_env.registration import ENV_IDS
from rrr_env.tasks import TASKS

#: Marks a required argument (no default).
REQUIRED = "required"
#: The env's own arguments that an id fixes rather than offers.
_FIXED_BY_ID = ("task",)


@dataclass(frozen=True)
class Option:
    """One keyword argument of an environment.

    Attributes:
        name: The keyword.
        type: Its type annotation, as written in the code (e.g. ``"int | tuple[int, int]"``).
        default: Its default (an id's registered default where it sets one), or
            :data:`REQUIRED`.
        meaning: What it does, from the docstring.
        owner: ``"env"`` for :class:`~rrr_env.ReflectRetryEnv`'s own arguments, else the
            task name.
        deprecated: Accepted for old code, but not listed (its meaning says "Deprecated").
    """

    name: str
    type: str
    default: Any
    meaning: str
    owner: str
    deprecated: bool = False


@dataclass(frozen=True)
class Description:
    """What :func:`describe` returns: an id's options, printable as a table.

    Attributes:
        env_id: The environment id.
        task: The task name the id poses.
        options: Every accepted, non-deprecated option, the env's first.
    """

    env_id: str
    task: str
    options: tuple[Option, ...]

    def names(self) -> list[str]:
        """The option names, in order."""
        return [o.name for o in self.options]

    def option(self, name: str) -> Option:
        """The option called ``name``."""
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(f"{self.env_id} has no option {name!r}; it has {self.names()}")

    def markdown(self) -> str:
        """The options as a markdown table."""
        return _table(self.options, lambda o: _cell(_show_default(o.default)))

    def __str__(self) -> str:
        lines = [f"{self.env_id} (task {self.task!r}): gym.make({self.env_id!r}, **options)"]
        for o in self.options:
            lines.append(f"  {o.name}: {o.type} = {_show_default(o.default)}")
            lines.append(f"      {o.meaning}")
        return "\n".join(lines)


def _doc_of(cls: type) -> str:
    return "\n".join(inspect.getdoc(k) or "" for k in cls.__mro__ if k is not object)


def _google_args(doc: str) -> dict[str, str]:
    """``name -> meaning`` of every ``Args:`` section of a Google-style docstring."""
    found: dict[str, str] = {}
    lines = doc.splitlines()
    for start, line in enumerate(lines):
        if line.strip() != "Args:":
            continue
        indent = len(line) - len(line.lstrip())
        name = None
        for entry in lines[start + 1 :]:
            depth = len(entry) - len(entry.lstrip())
            if entry.strip() and depth <= indent:
                break  # the section ended
            match = re.match(r"\s*(\w+)(?: \(.*?\))?: (.*)", entry)
            if match and depth == indent + 4:
                name = match.group(1)
                found.setdefault(name, "")
                if found[name]:
                    name = None  # documented by a subclass already: keep that text
                    continue
                found[name] = match.group(2).strip()
            elif name is not None and entry.strip():
                found[name] += " " + entry.strip()
    return found


def _markdown_list_args(doc: str) -> dict[str, str]:
    """``name -> meaning`` of the ``- ``name``: meaning`` items of a ``## Arguments`` section."""
    section = doc.split("## Arguments", 1)[1].split("\n##", 1)[0] if "## Arguments" in doc else ""
    found: dict[str, str] = {}
    name = None
    for entry in section.splitlines():
        match = re.match(r"- ``(\w+)``: (.*)", entry.strip())
        if match:
            name = match.group(1)
            found[name] = match.group(2).strip()
        elif entry.strip().startswith("- "):
            name = None
        elif name is not None and entry.strip():
            found[name] += " " + entry.strip()
    return found


def _options_of(cls: type, owner: str, meanings: Mapping[str, str]) -> tuple[Option, ...]:
    options = []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind not in kinds:
            continue
        meaning = meanings.get(parameter.name, "")
        options.append(
            Option(
                name=parameter.name,
                type=_annotation(parameter.annotation),
                default=REQUIRED if parameter.default is parameter.empty else parameter.default,
                meaning=meaning,
                owner=owner,
                deprecated=meaning.startswith("Deprecated"),
            )
        )
    return tuple(options)


def _annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "Any"
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


@cache
def env_options() -> tuple[Option, ...]:
    """The keyword arguments of :class:`~rrr_env.ReflectRetryEnv` itself (``task`` included)."""
    from rrr_env.env import ReflectRetryEnv

    meanings = _markdown_list_args(inspect.getdoc(ReflectRetryEnv) or "")
    return _options_of(ReflectRetryEnv, "env", meanings)


@cache
def task_options(task: str) -> tuple[Option, ...]:
    """The keyword arguments of the task called ``task`` (deprecated ones flagged).

    Raises:
        ValueError: for an unknown task name.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
    module_name, class_name = TASKS[task].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return _options_of(cls, task, _google_args(_doc_of(cls)))


def accepted(task: str) -> list[str]:
    """Every keyword that ``ReflectRetryEnv(task, ...)`` lists: the env's, then the task's."""
    options = (*env_options(), *task_options(task))
    return [o.name for o in options if not o.deprecated and o.name not in _FIXED_BY_ID]


def check_options(task: str, options: Iterable[str]) -> None:
    """Raise ``TypeError`` for a keyword that neither the env nor the task ``task`` takes.

    Raises:
        TypeError: naming the unknown keywords and listing the accepted ones.
    """
    every = {o.name for o in (*env_options(), *task_options(task))}
    unknown = sorted(set(options) - every)
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown} for task {task!r}; accepted: {accepted(task)} "
            f"(rrr_env.describe(env_id) says what each one means)"
        )


def describe(env_id: str) -> Description:
    """The keyword arguments that ``gym.make(env_id, ...)`` takes, with the id's defaults.

    Args:
        env_id: A registered id, e.g. ``"rrr/Countdown-v1"`` (see :data:`rrr_env.ENV_IDS`).

    Raises:
        KeyError: for an id that the package does not register.
    """
    if env_id not in ENV_IDS:
        raise KeyError(f"unknown environment id {env_id!r}; the ids are {sorted(ENV_IDS)}")
    registered = ENV_IDS[env_id]
    task = str(registered["task"])
    options = []
    for option in (*env_options(), *task_options(task)):
        if option.deprecated or option.name in _FIXED_BY_ID:
            continue
        if option.name in registered:
            option = Option(**{**vars(option), "default": registered[option.name]})
        options.append(option)
    return Description(env_id, task, tuple(options))


def render_markdown(env_ids: Iterable[str] | None = None) -> str:
    """Markdown tables of the keyword arguments of ``env_ids`` (default: every id).

    One table for the arguments every id shares (the env's), then one per task, whose default
    column names the ids that register another default. This is the README's table, between
    its ``<!-- describe:start -->`` and ``<!-- describe:end -->`` markers.
    """
    env_ids = list(ENV_IDS) if env_ids is None else list(env_ids)
    descriptions = [describe(env_id) for env_id in env_ids]
    if not descriptions:
        return ""
    shared = [o for o in env_options() if o.name not in _FIXED_BY_ID]
    blocks = [
        "Every id takes these (`ReflectRetryEnv`'s own arguments):",
        "",
        _table(shared, _defaults(descriptions)),
    ]
    for task in dict.fromkeys(d.task for d in descriptions):
        ids = [d for d in descriptions if d.task == task]
        names = ", ".join(f"`{d.env_id}`" for d in ids)
        own = [o for o in task_options(task) if not o.deprecated]
        blocks += ["", f"Task `{task}` ({names}):", "", _table(own, _defaults(ids))]
    return "\n".join(blocks) + "\n"


def _defaults(descriptions: list[Description]) -> Any:
    # The code's default, then each id that registers another one.
    def cell(option: Option) -> str:
        shown = _show_default(option.default)
        others = [
            f"`{d.env_id}`: {_cell(_show_default(d.option(option.name).default))}"
            for d in descriptions
            if d.option(option.name).default != option.default
        ]
        return _cell(shown) + ("" if not others else f" ({'; '.join(others)})")

    return cell


def _table(options: Iterable[Option], default: Any) -> str:
    rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for o in options:
        rows.append(f"| `{o.name}` | {_cell(o.type)} | {default(o)} | {_markdown(o.meaning)} |")
    return "\n".join(rows)


def _show_default(value: Any) -> str:
    return REQUIRED if value is REQUIRED else repr(value)


def _cell(text: str) -> str:
    """``text`` as code in a table cell (``|`` escaped), or the bare word ``required``."""
    return text if text == REQUIRED else "`" + text.replace("|", "\\|") + "`"


def _markdown(text: str) -> str:
    # reStructuredText roles and double backticks -> markdown code; pipes escaped for tables.
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`").replace("|", "\\|")


__all__ = [
    "REQUIRED",
    "Description",
    "Option",
    "accepted",
    "check_options",
    "describe",
    "env_options",
    "render_markdown",
    "task_options",
]
