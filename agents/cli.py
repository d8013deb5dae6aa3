"""Command-line checks shared by every script: fail fast, in one line, before any model loads.

Every command line (``agents.evaluate``, ``agents.collect_failures``, ``agents.grpo_reflect``,
``agents.rise_awr``, ``benchmarks.rrr_vs_rise``) parses its options, builds its env and checks
the ``--model`` string before it loads a model. A bad option prints one line,
``<prog>: error: <what is wrong and what is accepted>``, and exits with status 2 (argparse's
convention), without a traceback.

Example:
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     try:
    ...         fail("--n must be >= 1, got 0", prog="evaluate")
    ...     except SystemExit as exit:
    ...         code = exit.code
    >>> code, err.getvalue()
    (2, 'evaluate: error: --n must be >= 1, got 0\\n')
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import gymnasium as gym

import rrr_env

gym.register_envs(rrr_env)

#: Exit status of a bad command line (argparse's).
USAGE_ERROR = 2

T = TypeVar("T")


def fail(message: str, *, prog: str | None = None) -> NoReturn:
    """Print ``<prog>: error: <message>`` (one line) to stderr and exit with status 2."""
    prog = prog or _prog()
    line = " ".join(str(message).split())  # one line, whatever the message held
    print(f"{prog}: error: {line}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


def _prog() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return f"python -m {spec.name}" if spec is not None else "rrr"


def one_line_errors(parser: argparse.ArgumentParser, prog: str | None = None) -> None:
    """Make ``parser.error`` print one line (no usage block) and exit with status 2."""
    parser.error = lambda message: fail(message, prog=prog)  # type: ignore[method-assign]


def parse_trl(
    dataclass_types: Sequence[type], argv: Sequence[str] | None, *, prog: str | None = None
) -> tuple[Any, ...]:
    """TRL's parser (``--config`` YAML included), with every bad option reported in one line.

    Unknown flags, bad values and the dataclasses' own checks (``__post_init__`` raising
    ``ValueError``) all end in :func:`fail`.
    """
    from trl import TrlParser

    parser = TrlParser(tuple(dataclass_types))
    one_line_errors(parser, prog)
    try:
        return tuple(parser.parse_args_and_config(None if argv is None else list(argv)))
    except ValueError as error:
        message = str(error)
        marker = "Some specified arguments are not used by the HfArgumentParser: "
        if message.startswith(marker):
            try:
                unknown = " ".join(ast.literal_eval(message.removeprefix(marker)))
            except (ValueError, SyntaxError, TypeError):
                unknown = message.removeprefix(marker)
            message = f"unrecognized arguments: {unknown} (see --help for the accepted options)"
        fail(message, prog=prog)
    except (TypeError, FileNotFoundError, OSError) as error:  # e.g. a --config that is missing
        fail(str(error), prog=prog)


def json_object(value: str, option: str) -> dict[str, Any]:
    """``value`` parsed as a JSON object; raises ``ValueError`` naming ``option`` otherwise."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{option} is not valid JSON ({error.msg} at character {error.pos}): {value!r}; "
            "pass a JSON object such as '{\"num_count\": 3}'"
        ) from None
    if not isinstance(parsed, dict):
        raise ValueError(
            f"{option} must be a JSON object such as '{{\"num_count\": 3}}', got {value!r}"
        )
    return parsed


def check_env(env_id: str, options: dict[str, Any], *, env_flag: str = "--env") -> gym.Env:
    """Build ``env_id`` with ``options`` (loading its data); raise ``ValueError`` in one line.

    Unknown ids name the registered ``rrr/*`` ids; a bad option (``feedback``, ``split``, an
    unknown task option) keeps the env's own message, which names the option and its values.
    """
    if env_id not in gym.registry:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("rrr/")))
        raise ValueError(f"{env_flag}: unknown environment id {env_id!r}; registered: {known}")
    try:
        return gym.make(env_id, **options)
    except (ValueError, TypeError, KeyError, gym.error.Error) as error:
        message = str(error).split(" was raised from the environment creator")[0]
        raise ValueError(f"{env_flag} {env_id}: {message}") from None


def check_model(name: str, *, option: str = "--model") -> None:
    """Raise ``ValueError`` if ``name`` is none of the forms ``--model`` accepts.

    Cheap: bundled names are only looked up (not fetched), paths only checked for existence,
    and hub ids only checked for their form (whether the hub has them is known only online).
    """
    from agents.models import BUNDLED_MODELS, resolve_model

    if name in BUNDLED_MODELS:
        return
    try:
        resolve_model(name)
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"{option}: {error}") from None


def preflight(check: Callable[[], T], *, prog: str | None = None) -> T:
    """Run ``check`` (env building, model-name checks); a ``ValueError`` ends in :func:`fail`."""
    try:
        return check()
    except ValueError as error:
        fail(str(error), prog=prog)


__all__ = [
    "USAGE_ERROR",
    "check_env",
    "check_model",
    "fail",
    "json_object",
    "one_line_errors",
    "parse_trl",
    "preflight",
]
