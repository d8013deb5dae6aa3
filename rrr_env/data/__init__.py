"""Bundled data and the one reader behind every env's ``data=`` argument.

The package ships the real data its envs and tests need, so that it works offline:

- ``gsm8k/{train,test}.jsonl.gz``: GSM8K (openai/grade-school-math, MIT, ``gsm8k/LICENSE``),
  7,473 / 1,319 rows, byte-identical to the original files once decompressed.
- ``countdown/tinyzero_test.jsonl.gz``: TinyZero's Countdown test set (the test split of
  ``Jiayi-Pan/Countdown-Tasks-3to4``, Apache-2.0, ``countdown/LICENSE``), 2,001 rows.

Each file's SHA-256 is pinned in :data:`SHA256` and checked when it is read.

Every env takes its data the same way, through :func:`records`: ``data=`` is a path to a
JSON or JSON Lines file (``.gz`` too), a ``datasets.Dataset`` or any iterable of dicts, or a
Hugging Face hub id (needs the ``datasets`` package and the network; fails within seconds with
a hint when the hub is unreachable).

A ``str`` is a local path (see :func:`is_path_like`) when it names something that exists, starts
with ``/``, ``./``, ``../`` or ``~``, ends in ``.json``, ``.jsonl`` or ``.gz``, is not of the
form ``owner/name``, or its first folder exists (``"mydata/countdown"`` with a ``mydata``
folder here); a local path that does not exist raises ``FileNotFoundError``. Any other
``owner/name`` is a hub id, and its error says that no local file of that name exists either.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import socket
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: The folder of the bundled files.
ROOT = Path(__file__).resolve().parent
GSM8K_TRAIN = ROOT / "gsm8k" / "train.jsonl.gz"
GSM8K_TEST = ROOT / "gsm8k" / "test.jsonl.gz"
COUNTDOWN_TINYZERO_TEST = ROOT / "countdown" / "tinyzero_test.jsonl.gz"

#: Bundled file (relative to :data:`ROOT`) -> SHA-256 of its bytes (the compressed file).
SHA256: dict[str, str] = {
    "gsm8k/train.jsonl.gz": "d52a31668743a4f18e4a284514e54eea07a06ae31fcf4293af2506c198c05bda",
    "gsm8k/test.jsonl.gz": "bb13a52c31b1fa4805ebab294dce067e337ccd4b61c3e6461c85c92965282c62",
    "countdown/tinyzero_test.jsonl.gz": (
        "ddce121e1934e4458c342dc6b344d37ad97ccef3caf45bc389c4573058c77981"
    ),
}

#: What a hub id looks like (``owner/name``), as opposed to a file name.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
#: Suffixes that make a ``str`` a file name even when the file does not exist.
DATA_SUFFIXES = (".json", ".jsonl", ".gz")
#: Seconds a reachability probe of the hub may take before the hub counts as unreachable.
PROBE_TIMEOUT_S = 1.5
_DEFAULT_ENDPOINT = "https://huggingface.co"


def check_bundled(path: Path) -> None:
    """Raise if ``path`` is a bundled file whose bytes do not match the pinned SHA-256."""
    try:
        name = path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return
    if name in SHA256:
        _check_sha256(name, path.stat().st_mtime_ns, path.stat().st_size)


@cache
def _check_sha256(name: str, mtime_ns: int, size: int) -> None:
    # Cached by (name, mtime, size): a file changed on disk is hashed again.
    digest = hashlib.sha256((ROOT / name).read_bytes()).hexdigest()
    if digest != SHA256[name]:
        raise ValueError(
            f"bundled data file {ROOT / name} is corrupted (SHA-256 {digest}, expected "
            f"{SHA256[name]}); reinstall the package"
        )


def is_path_like(data: Any) -> bool:
    """True when ``data`` names a local file or folder rather than a hub id (or is a path).

    A ``str`` is a path when it exists; starts with ``/``, ``./``, ``../`` or ``~`` (each a
    path ``Path`` would anchor: not a hub id's shape); has a data-file suffix (``.json``,
    ``.jsonl``, ``.gz``); is not of the form ``owner/name``; or its first component is an
    existing folder (``"mydata/countdown"`` when ``mydata/`` exists). Any other ``owner/name``
    (``"Jiayi-Pan/Countdown-Tasks-3to4"``) is a hub id.

    >>> is_path_like("Jiayi-Pan/Countdown-Tasks-3to4"), is_path_like("./mydata/countdown")
    (False, True)
    """
    if isinstance(data, os.PathLike):
        return True
    if not isinstance(data, str):
        return False
    path = Path(data).expanduser()
    if path.exists() or path.suffix in DATA_SUFFIXES or not HUB_ID.fullmatch(data):
        return True
    return Path(data.split("/", 1)[0]).is_dir()


def local_path(data: str | os.PathLike[str]) -> Path:
    """``data`` as a :class:`~pathlib.Path`, with ``~`` expanded."""
    return Path(data).expanduser()


def read_file(path: str | os.PathLike[str]) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for every record of a JSON list or JSON Lines file (``.gz`` ok).

    ``where`` is ``"<path>:<line>"`` for JSON lines and ``"<path>[<i>]"`` for a JSON list, so
    that an error about a row names its file and line. A generator: rows are read lazily.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: for a line that is not JSON (naming file and line), or a bundled file whose
            checksum does not match.
    """
    path = local_path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        kind = "a folder, not a file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"data file {kind}: {path}{where}")
    check_bundled(path)
    opener = gzip.open if path.suffix == ".gz" else open
    inner = path.with_suffix("") if path.suffix == ".gz" else path
    with opener(path, "rt", encoding="utf-8") as handle:
        first = True
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if first and inner.suffix != ".jsonl" and line.lstrip().startswith("["):
                # A JSON list (a .json file); its errors report the line within the file.
                yield from _json_list(path, "\n" * (number - 1) + line + handle.read())
                return
            first = False
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
            yield f"{path}:{number}", row


def _json_list(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not JSON ({error.msg})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of records or JSON lines")
    for index, row in enumerate(rows):
        yield f"{path}[{index}]", row


def _probe_target() -> tuple[str, int]:
    # Through a proxy if one is configured, else to the endpoint itself.
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(var):
            url = urlsplit(os.environ[var] if "//" in os.environ[var] else f"//{os.environ[var]}")
            return url.hostname or "", url.port or 80
    url = urlsplit(os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT)
    return url.hostname or "", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (or the configured proxy) opens within ``timeout``.

    Name resolution runs in a thread, so a machine without DNS answers within ``timeout`` too.
    """
    host, port = _probe_target()
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _offline_env() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _cache_roots() -> list[Path]:
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    datasets_cache = os.environ.get("HF_DATASETS_CACHE") or os.path.join(home, "datasets")
    hub_cache = (
        os.environ.get("HF_HUB_CACHE")
        or os.environ.get("HUGGINGFACE_HUB_CACHE")
        or os.path.join(home, "hub")
    )
    return [Path(datasets_cache), Path(hub_cache)]


def cached_locally(dataset_id: str) -> bool:
    """Whether the local Hugging Face caches may hold ``dataset_id`` (names compared loosely).

    ``datasets`` keeps ``<owner>___<name>`` folders, the hub cache ``datasets--<owner>--<name>``.
    """
    owner, _, name = dataset_id.lower().partition("/")
    wanted = {f"{owner}___{name}", f"datasets--{owner}--{name}"}
    for root in _cache_roots():
        try:
            if any(entry.name.lower() in wanted for entry in root.iterdir()):
                return True
        except OSError:
            continue
    return False


def read_hub(
    dataset_id: str, *, config: str | None, split: str, offline_hint: str
) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for every row of one split of a hub dataset, via ``datasets``.

    Fails fast: when the hub does not answer within :data:`PROBE_TIMEOUT_S`, it raises at
    once rather than letting ``datasets`` retry for half a minute. With ``HF_HUB_OFFLINE=1``
    (or ``HF_DATASETS_OFFLINE=1``) it reads the local cache, and raises at once, before
    importing ``datasets``, when the cache has no folder for ``dataset_id``.

    Raises:
        ImportError: when ``datasets`` is not installed.
        ConnectionError: when the hub is unreachable or the load fails, with ``offline_hint``
            and a note that no local file of that name exists either.
    """
    offline_hint = f"{offline_hint} {_not_local_note(dataset_id)}".strip()
    if _offline_env():
        if not cached_locally(dataset_id):
            raise ConnectionError(
                f"cannot load {dataset_id!r}: HF_HUB_OFFLINE is set and the local Hugging Face "
                f"caches ({', '.join(map(str, _cache_roots()))}) hold no copy. {offline_hint}"
            )
    elif not hub_reachable():
        host, port = _probe_target()
        raise ConnectionError(
            f"cannot load {dataset_id!r} from the Hugging Face hub: {host}:{port} is "
            f"unreachable. {offline_hint} (With a copy in the local datasets cache, set "
            "HF_HUB_OFFLINE=1 to use it.)"
        )
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            f"loading {dataset_id!r} from the Hugging Face hub needs the datasets package "
            f"(pip install datasets). {offline_hint}"
        ) from error
    try:
        names = () if config is None else (config,)
        dataset = datasets.load_dataset(dataset_id, *names, split=split)
    except Exception as error:  # network, cache and hub errors have no common base class
        raise ConnectionError(
            f"could not load {dataset_id!r} (config {config!r}, split {split!r}) from the "
            f"Hugging Face hub: {type(error).__name__}: {error}. {offline_hint}"
        ) from error
    return ((f"{dataset_id}[{split}][{i}]", row) for i, row in enumerate(dataset))


def _not_local_note(dataset_id: str) -> str:
    return (
        f"(There is no local file or folder {dataset_id!r} either, in {Path.cwd()}: a str "
        "that does not exist is a local path only when it starts with /, ./, ../ or ~, ends "
        "in .json, .jsonl or .gz, or its first folder exists.)"
    )


def read_iterable(data: Any, label: str = "data") -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for a ``datasets.Dataset`` or any iterable of dicts.

    Raises:
        TypeError: when ``data`` is a single dict, a str / bytes, or not iterable.
    """
    if isinstance(data, Mapping | str | bytes) or not isinstance(data, Iterable):
        raise TypeError(
            f"{label} must be a path, a hub id, a datasets.Dataset or an iterable of dicts, "
            f"got {type(data).__name__}"
        )
    return ((f"{label}[{i}]", row) for i, row in enumerate(data))


def records(
    data: Any,
    *,
    hub_config: str | None = None,
    hub_split: str = "train",
    offline_hint: str = "",
) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for every record of ``data``, whatever form it takes.

    Args:
        data: A path (``str`` or ``os.PathLike``) to a JSON / JSON Lines file, gzipped or
            not; a hub id ``"owner/name"`` (a ``str`` that :func:`is_path_like` does not take
            for a path); or a ``datasets.Dataset`` / iterable of dicts.
        hub_config: The hub dataset's config name, if it has several.
        hub_split: The hub split to read.
        offline_hint: Appended to hub errors: how to get the data offline.
    """
    if is_path_like(data):
        return read_file(data)
    if isinstance(data, str):
        return read_hub(data, config=hub_config, split=hub_split, offline_hint=offline_hint)
    return read_iterable(data)


def describe(data: Any) -> str:
    """A short name of ``data`` for messages."""
    if isinstance(data, str | os.PathLike):
        return str(data)
    return type(data).__name__


def deprecated_source(
    task: str, data: Any, source: str | None, path: Any, sources: Mapping[str, Any], hint: str
) -> Any:
    """The ``data=`` that a task's deprecated ``source=`` / ``path=`` keywords spell.

    Args:
        task: The task class, for the warning.
        data: The ``data=`` argument (must be ``None`` when the old keywords are used).
        source: The old ``source=``; ``"jsonl"`` means ``path``.
        path: The old ``path=``, only with ``source="jsonl"`` or ``None``.
        sources: Each accepted ``source`` and the ``data`` it means (``"jsonl"``: ignored).
        hint: The ``data=`` spellings to use instead, for the warning.

    Raises:
        ValueError: A combination the old keywords never accepted.
    """
    if source is None and path is None:
        return data
    if source is not None and source not in sources:
        raise ValueError(f"source must be one of {tuple(sources)}, got {source!r}; prefer data=")
    if data is not None:
        raise ValueError("pass data= alone; source= and path= are its deprecated spellings")
    if source == "jsonl" and path is None:
        raise ValueError("source='jsonl' needs path=; prefer data='<path>'")
    if source not in (None, "jsonl") and path is not None:
        raise ValueError(f"path is only allowed with source='jsonl', not {source!r}")
    if path is not None and not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    from rrr_env.tasks.base import caller_stacklevel  # the tasks import this module

    warnings.warn(
        f"{task}(source=..., path=...) is deprecated: pass {hint}",
        DeprecationWarning,
        stacklevel=caller_stacklevel(),
    )
    return path if source in (None, "jsonl") else sources[source]


__all__ = [
    "deprecated_source",
    "COUNTDOWN_TINYZERO_TEST",
    "GSM8K_TEST",
    "GSM8K_TRAIN",
    "ROOT",
    "SHA256",
    "cached_locally",
    "check_bundled",
    "describe",
    "hub_reachable",
    "is_path_like",
    "local_path",
    "read_file",
    "read_hub",
    "read_iterable",
    "records",
]
