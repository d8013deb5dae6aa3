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
import dataclasses
import json
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
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


def group_own_options(
    parser: argparse.ArgumentParser, own: Iterable[str], title: str, rest: str
) -> None:
    """List the options whose ``dest`` is in ``own`` first, under ``title``; the others after.

    A config that subclasses TRL's inherits about a hundred and fifty options; argparse would
    list the subclass's own after all of them. ``rest`` titles the inherited ones.
    """
    own = set(own)
    group = parser.add_argument_group(title)
    for action in parser._actions:
        if action.dest not in own:
            continue
        for other in parser._action_groups:
            if other is not group and action in other._group_actions:
                other._group_actions.remove(action)
        group._group_actions.append(action)
    parser._action_groups.remove(group)
    parser._action_groups.insert(0, group)
    parser._optionals.title = rest


def parse_trl(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None,
    *,
    prog: str | None = None,
    own: type | None = None,
) -> tuple[Any, ...]:
    """TRL's parser (``--config`` YAML included), with every bad option reported in one line.

    Unknown flags, bad values and the dataclasses' own checks (``__post_init__`` raising
    ``ValueError``) all end in :func:`fail`. ``own``: a dataclass among ``dataclass_types``
    whose own fields (those its parent classes lack) ``--help`` lists first, with a short
    usage line instead of argparse's list of every option.
    """
    from trl import TrlParser

    parser = TrlParser(tuple(dataclass_types))
    one_line_errors(parser, prog)
    if own is not None:
        inherited = {f.name for base in own.__mro__[1:] for f in _fields(base)}
        mine = [f.name for f in _fields(own) if f.name not in inherited]
        parser.usage = f"{prog or _prog()} [--config YAML] [OPTIONS]"
        parser.description = (
            f"Options set on the command line override those of the --config YAML file. "
            f"{own.__name__}'s own options come first, then those of the TRL / transformers "
            "classes it builds on."
        )
        group_own_options(
            parser,
            [*mine, "help"],
            f"{own.__name__} options",
            "TRL and transformers options (GRPOConfig, TrainingArguments, ModelConfig)",
        )
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


def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no hub access (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "true", "yes")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds.

    ``False`` at once under ``HF_HUB_OFFLINE``. The name lookup runs in a thread so that a
    hanging resolver costs ``timeout`` too, not the minute of retries a download would take.
    """
    if hub_offline():
        return False
    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    address = (url.hostname or "huggingface.co", url.port or 443)
    answered: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def hub_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether ``filename`` of the hub model ``repo_id`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except ValueError:  # not a valid repo id
        return False


def check_hub_model(name: str, *, option: str = "--model") -> None:
    """Raise ``ValueError`` (one line) if hub id ``name`` can be neither read locally nor fetched.

    Instant for bundled names, local paths and models in the local cache; otherwise one
    connection attempt of a few seconds, instead of transformers' minute of retries ending in
    chained tracebacks.
    """
    from agents.models import BUNDLED_MODELS, resolve_model

    if name in BUNDLED_MODELS or not resolve_model(name).is_hub_id or hub_cached(name):
        return
    if hub_reachable():
        return
    why = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub is not reachable from here"
    names = ", ".join(sorted(BUNDLED_MODELS))
    raise ValueError(
        f"{option} {name}: not in the local Hugging Face cache and {why}; use a bundled "
        f"offline model ({names}), a local folder or a .gguf file, or run where the hub is "
        "reachable"
    )


def preflight(check: Callable[[], T], *, prog: str | None = None) -> T:
    """Run ``check`` (env building, model-name checks); a ``ValueError`` ends in :func:`fail`."""
    try:
        return check()
    except ValueError as error:
        fail(str(error), prog=prog)


__all__ = [
    "USAGE_ERROR",
    "check_env",
    "check_hub_model",
    "check_model",
    "fail",
    "group_own_options",
    "hub_cached",
    "hub_offline",
    "hub_reachable",
    "json_object",
    "one_line_errors",
    "parse_trl",
    "preflight",
]
