"""Screen a dataset of failures for reward variance: keep the failures a reflection can fix.

    python -m agents.screen_failures --model qwen2.5-coder-0.5b --env rrr/Countdown-v0 \\
        --env_kwargs '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}' \\
        --split train --queries 256 --group_size 16 --engine openvino \\
        --output_dir runs/screened/countdown-n2-easy

GRPO learns only from a group whose rewards differ. On a failure the untrained model almost
never fixes, every retry fails and the group gives no gradient (``benchmarks/results/
signal_search.md``: 8 of 10 groups of the CPU demo's setting had none). This command measures,
for each failure, how often the untrained model's retry succeeds after a sampled reflection,
and keeps the failures whose rate lies in a band (default 0.25 to 0.75): on those a GRPO
group of 4 has rewards that differ with probability 0.68 to 0.88.

Steps, each resumable (a killed run continues where it stopped):

1. Failures are collected exactly as ``python -m agents.grpo_reflect --collect`` collects
   them (:func:`agents.collect_failures.collect`, seeded, first attempts at temperature 1)
   into ``<output_dir>/failures/``.
2. Each failure gets ``--group_size`` reflections, each followed by a retry graded by the env,
   sampled by the trainer's own rollout code (:func:`agents.reflection_rollout.
   reflect_and_retry`) at the trainer's token limits and temperatures. With ``--prescreen
   K``, a failure whose first K retries all got the same reward is not sampled further (its
   rate is over K retries and it stays out of the band). Every failure's rate is appended to
   ``rates.jsonl``.
3. ``screened.jsonl`` holds the failures in the band (rows with ``prompt`` and ``index``, as
   ``agents.grpo_reflect --failures_path`` loads them) and ``screened.meta.json`` what they
   were screened with: model, env, options, split, token limits, sampling, group size, band,
   seed, the command line and the counts. Both are rewritten after every chunk; a rerun with
   another band selects again from ``rates.jsonl`` and samples only failures not rated yet.

The bundled screened sets (``agents/data/screened/``, made by this command) are what the
no-argument ``python -m agents.grpo_reflect`` trains on: :func:`find_bundled` matches a run's
settings against their metadata.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Where the bundled screened sets live (``<name>.jsonl`` with ``<name>.meta.json``).
BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "screened"
META_SUFFIX = ".meta.json"
#: ``kind`` of a screened set's metadata.
META_KIND = "rrr-screened-failures"
#: The demo's env options (``GRPOReflectConfig.env_kwargs``' default).
DEMO_ENV_KWARGS = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'


@dataclass
class ScreenArgs:
    """Options of ``python -m agents.screen_failures``.

    The defaults are those of ``python -m agents.grpo_reflect`` with no arguments: the same
    model, env, options, split, seed, token limits and sampling.
    """

    model: str = field(default="qwen2.5-coder-0.5b", metadata={"help": "Model name, id or path."})
    env: str = field(default="rrr/Countdown-v0", metadata={"help": "Environment id."})
    env_kwargs: str = field(
        default=DEMO_ENV_KWARGS, metadata={"help": "More env options as a JSON object."}
    )
    split: str | None = field(default="train", metadata={"help": "Env split of the failures."})
    queries: int = field(
        default=64, metadata={"help": "Queries (the split's first) whose attempts are sampled."}
    )
    samples_per_query: int = field(
        default=1, metadata={"help": "Most first attempts per query (the trainer's default)."}
    )
    failures_per_query: int = field(default=1, metadata={"help": "Failures kept per query."})
    min_successes: int = field(
        default=0, metadata={"help": "Keep a query's failures only with this many successes."}
    )
    attempt_max_tokens: int = field(default=192, metadata={"help": "Token limit of an attempt."})
    reflection_max_tokens: int = field(
        default=64, metadata={"help": "Token limit of a reflection (--max_completion_length)."}
    )
    retry_max_tokens: int = field(default=192, metadata={"help": "Token limit of a retry."})
    temperature: float = field(default=1.0, metadata={"help": "Temperature of reflections."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus mass of reflections."})
    top_k: int = field(default=0, metadata={"help": "Top-k of reflections and retries (0: off)."})
    retry_temperature: float | None = field(
        default=None, metadata={"help": "Temperature of retries (None: --temperature)."}
    )
    retry_top_p: float | None = field(
        default=None, metadata={"help": "Nucleus mass of retries (None: --top_p)."}
    )
    group_size: int = field(
        default=16, metadata={"help": "Reflections (each with a retry) sampled per failure."}
    )
    prescreen: int = field(
        default=8,
        metadata={
            "help": "Sample this many retries of a failure first; if their rewards are all equal "
            "it is not sampled further and stays out of the band (0: always --group_size)."
        },
    )
    confirm: int = field(
        default=0,
        metadata={
            "help": "Sample this many more retries, with fresh seeds, of each failure in the band "
            "and judge the band on them alone (the first group picked the failure, so its rate "
            "runs high: the winner's curse). 0: no confirmation."
        },
    )
    min_rate: float = field(default=0.25, metadata={"help": "Lowest retry success kept."})
    max_rate: float = field(default=0.75, metadata={"help": "Highest retry success kept."})
    max_failures: int | None = field(
        default=None, metadata={"help": "Screen at most this many failures (None: all)."}
    )
    enough: int | None = field(
        default=None, metadata={"help": "Stop once this many failures lie in the band."}
    )
    chunk_failures: int = field(
        default=8, metadata={"help": "Failures whose groups are generated together."}
    )
    seed: int = field(default=42, metadata={"help": "Seed (the trainer's default)."})
    dtype: str = field(default="auto", metadata={"help": "auto, bfloat16 or float32."})
    engine: str = field(
        default="torch",
        metadata={"help": "Generation engine: torch or openvino (pip install -e '.[cpu-engine]')."},
    )
    output_dir: str = field(
        default="runs/screened", metadata={"help": "Where the failures and rates go."}
    )

    def __post_init__(self) -> None:
        from agents.cli import json_object
        from agents.engines import check_engine
        from agents.models import DTYPES

        positive = (
            "queries",
            "samples_per_query",
            "attempt_max_tokens",
            "reflection_max_tokens",
            "retry_max_tokens",
            "group_size",
            "chunk_failures",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be an integer >= 1, got {getattr(self, name)}")
        json_object(self.env_kwargs, "--env_kwargs")
        check_engine(self.engine)
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 1 <= self.failures_per_query <= self.samples_per_query:
            raise ValueError("need 1 <= --failures_per_query <= --samples_per_query")
        if not 0 <= self.min_successes < self.samples_per_query:
            raise ValueError("need 0 <= --min_successes < --samples_per_query")
        if not 0 <= self.min_rate <= self.max_rate <= 1:
            raise ValueError(
                f"need 0 <= --min_rate <= --max_rate <= 1, got {self.min_rate}, {self.max_rate}"
            )
        if self.confirm < 0:
            raise ValueError(f"--confirm must be >= 0, got {self.confirm}")
        if not 0 <= self.prescreen < self.group_size:
            raise ValueError(
                f"need 0 <= --prescreen < --group_size ({self.group_size}), got {self.prescreen}"
            )
        if self.prescreen and (self.min_rate == 0 or self.max_rate == 1):
            # A failure stopped after K equal rewards has rate 0 or 1: it must lie outside.
            raise ValueError(
                "--prescreen drops failures whose first retries all agree (rate 0 or 1), so the "
                "band must exclude 0 and 1 (--min_rate > 0, --max_rate < 1); or --prescreen 0"
            )
        for name in ("temperature", "retry_temperature"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"--{name} must be >= 0, got {value}")
        for name in ("top_p", "retry_top_p"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"--{name} must be in (0, 1], got {value}")
        if self.top_k < 0:
            raise ValueError(f"--top_k must be >= 0, got {self.top_k}")
        for name in ("max_failures", "enough"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1 or None, got {value}")

    def env_options(self) -> dict[str, Any]:
        """Keyword arguments of ``gym.make``: the episodes the trainer replays."""
        from agents.reflection_rollout import EPISODE_OPTIONS

        options = {**json.loads(self.env_kwargs), **EPISODE_OPTIONS}
        if self.split is not None:
            options["split"] = self.split
        return options

    def rollout_settings(self) -> dict[str, Any]:
        """What decides a failure's retry success rate, as a run's settings are matched."""
        return run_settings(
            model=self.model,
            env_id=self.env,
            env_kwargs=self.env_kwargs,
            split=self.split,
            attempt_max_tokens=self.attempt_max_tokens,
            reflection_max_tokens=self.reflection_max_tokens,
            retry_max_tokens=self.retry_max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            retry_temperature=self.retry_temperature,
            retry_top_p=self.retry_top_p,
        )


def run_settings(
    *,
    model: str,
    env_id: str,
    env_kwargs: str | dict[str, Any],
    split: str | None,
    attempt_max_tokens: int,
    reflection_max_tokens: int,
    retry_max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int | None,
    retry_temperature: float | None,
    retry_top_p: float | None,
    collect_temperature: float = 1.0,
) -> dict[str, Any]:
    """The settings a screened set must share with a run to stand for its failures.

    The retry's sampling defaults to the reflection's (``None``), as in the trainer; the
    failures' first attempts are sampled at ``collect_temperature`` (this command: 1).

    >>> a = run_settings(model="m", env_id="e", env_kwargs='{"x": 1}', split="train",
    ...     attempt_max_tokens=1, reflection_max_tokens=2, retry_max_tokens=3, temperature=1.0,
    ...     top_p=1.0, top_k=0, retry_temperature=None, retry_top_p=None)
    >>> b = run_settings(model="m", env_id="e", env_kwargs={"x": 1}, split="train",
    ...     attempt_max_tokens=1, reflection_max_tokens=2, retry_max_tokens=3, temperature=1.0,
    ...     top_p=1.0, top_k=None, retry_temperature=1.0, retry_top_p=1.0)
    >>> a == b
    True
    """
    kwargs = json.loads(env_kwargs) if isinstance(env_kwargs, str) else dict(env_kwargs)
    return {
        "model": model,
        "env_id": env_id,
        "env_kwargs": kwargs,
        "split": split,
        "attempt_max_tokens": attempt_max_tokens,
        "reflection_max_tokens": reflection_max_tokens,
        "retry_max_tokens": retry_max_tokens,
        "temperature": float(temperature),
        "top_p": float(top_p),
        "top_k": int(top_k or 0),
        "retry_temperature": float(temperature if retry_temperature is None else retry_temperature),
        "retry_top_p": float(top_p if retry_top_p is None else retry_top_p),
        "collect_temperature": float(collect_temperature),
    }


# -- bundled sets ----------------------------------------------------------------------------


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """The metadata beside a screened set's JSONL file, or None if it has none."""
    path = Path(path)
    meta = path.with_name(path.name.removesuffix(".jsonl") + META_SUFFIX)
    if not path.is_file() or not meta.is_file():
        return None
    data = json.loads(meta.read_text(encoding="utf-8"))
    return data if data.get("kind") == META_KIND else None


def bundled_sets(directory: Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """The screened sets in ``directory`` (default :data:`BUNDLED_DIR`): ``(jsonl, metadata)``."""
    found = []
    for jsonl in sorted((directory or BUNDLED_DIR).glob("*.jsonl")):
        meta = read_meta(jsonl)
        if meta is not None:
            found.append((jsonl, meta))
    return found


def find_bundled(settings: dict[str, Any], directory: Path | None = None) -> Path | None:
    """The bundled screened set made with exactly these :func:`run_settings`, or None."""
    for jsonl, meta in bundled_sets(directory):
        if meta.get("settings") == settings:
            return jsonl
    return None


def describe(meta: dict[str, Any]) -> str:
    """One line on what a screened set holds and how it was made (for the trainer's log)."""
    n = meta["rollout"]["group_size"]
    low, high = math.ceil(meta["band"][0] * n - 1e-9), math.floor(meta["band"][1] * n + 1e-9)
    return (
        f"{meta['counts']['in_band']} failures screened for reward variance: the untrained "
        f"model's retry succeeded after {low} to {high} of {n} sampled reflections (of "
        f"{meta['counts']['screened']} failures screened); made by: {meta['command']}"
    )


# -- screening -------------------------------------------------------------------------------


def screen_groups(
    rows: Sequence[dict[str, Any]],
    run_groups: Callable[[Sequence[dict[str, Any]], int], list[list[float]]],
    *,
    group_size: int,
    prescreen: int = 0,
) -> list[dict[str, Any]]:
    """Each row with its retry success rate: ``retries``, ``retry_successes``, ``retry_rate``.

    ``run_groups(rows, n)`` samples ``n`` reflections and retries for each row and returns
    their rewards, one list per row. With ``prescreen`` K, every row gets K first; only rows
    whose K rewards differ get the other ``group_size - K``.
    """
    first = prescreen or group_size
    rewards = run_groups(rows, first) if rows else []
    if prescreen:
        more = [i for i, r in enumerate(rewards) if len(set(r)) > 1]
        extra = run_groups([rows[i] for i in more], group_size - prescreen) if more else []
        for i, r in zip(more, extra, strict=True):
            rewards[i] = [*rewards[i], *r]
    out = []
    for row, r in zip(rows, rewards, strict=True):
        successes = sum(1 for value in r if value > 0)
        rate = successes / len(r)
        out.append({**row, "retries": len(r), "retry_successes": successes, "retry_rate": rate})
    return out


def in_band(row: dict[str, Any], args: ScreenArgs) -> bool:
    """Whether a screened row was sampled ``group_size`` times with a rate in the band.

    With ``confirm`` N, its N confirmation retries must also have a rate in the band.
    """
    rate = row["retry_rate"]
    first = row["retries"] == args.group_size and args.min_rate <= rate <= args.max_rate
    if not first or not args.confirm:
        return first
    confirmed = row.get("confirm_retries") == args.confirm
    return confirmed and args.min_rate <= row["confirm_rate"] <= args.max_rate


def confirm_rows(
    rows: Sequence[dict[str, Any]],
    run_groups: Callable[[Sequence[dict[str, Any]], int], list[list[float]]],
    count: int,
) -> list[dict[str, Any]]:
    """Each row with ``count`` more retries: ``confirm_retries``, ``_successes``, ``_rate``."""
    rewards = run_groups(rows, count) if rows else []
    out = []
    for row, r in zip(rows, rewards, strict=True):
        successes = sum(1 for value in r if value > 0)
        out.append(
            {
                **row,
                "confirm_retries": len(r),
                "confirm_successes": successes,
                "confirm_rate": successes / len(r),
            }
        )
    return out


def rollout_groups(
    args: ScreenArgs,
    make_env: Callable[[], Any],
    all_rows: Sequence[dict[str, Any]],
    generate: Any,
    retry_generate: Any,
    tokenizer: Any,
    eos_ids: set[int],
) -> Callable[[Sequence[dict[str, Any]], int], list[list[float]]]:
    """``run_groups`` for :func:`screen_groups`: the trainer's rollout on these generators."""
    from agents.reflection_rollout import EpisodeReplayer, reflect_and_retry

    replayer = EpisodeReplayer(make_env, all_rows)

    def run_groups(rows: Sequence[dict[str, Any]], n: int) -> list[list[float]]:
        prompts = [row["prompt"] for row in rows for _ in range(n)]
        batch = reflect_and_retry(
            prompts,
            replayer,
            generate,
            tokenizer,
            eos_ids,
            reflection_max_tokens=args.reflection_max_tokens,
            retry_max_tokens=args.retry_max_tokens,
            group_size=n,
            retry_generate=retry_generate,
        )
        return [batch.rewards[k * n : (k + 1) * n] for k in range(len(rows))]

    return run_groups


def read_rates(path: Path) -> dict[int, dict[str, Any]]:
    """Screened rows by their position in the dataset of failures; a torn last line is ignored."""
    rows: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["failure"]] = row
    return rows


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def metadata(
    args: ScreenArgs, rated: Sequence[dict[str, Any]], kept: int, command: str, seconds: float
) -> dict[str, Any]:
    """The screened set's metadata (``screened.meta.json``)."""
    histogram: dict[str, int] = {}
    confirmed: dict[str, int] = {}
    for row in rated:
        key = f"{row['retry_successes']}/{row['retries']}"
        histogram[key] = histogram.get(key, 0) + 1
        if "confirm_retries" in row:
            key = f"{row['confirm_successes']}/{row['confirm_retries']}"
            confirmed[key] = confirmed.get(key, 0) + 1
    return {
        "kind": META_KIND,
        "settings": args.rollout_settings(),
        "model": args.model,
        "env_id": args.env,
        "env_kwargs": json.loads(args.env_kwargs),
        "split": args.split,
        "collection": {
            "queries": args.queries,
            "samples_per_query": args.samples_per_query,
            "failures_per_query": args.failures_per_query,
            "min_successes": args.min_successes,
            "attempt_max_tokens": args.attempt_max_tokens,
            "temperature": 1.0,
            "seed": args.seed,
        },
        "rollout": {
            "group_size": args.group_size,
            "prescreen": args.prescreen,
            "confirm": args.confirm,
            "reflection_max_tokens": args.reflection_max_tokens,
            "retry_max_tokens": args.retry_max_tokens,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "top_k": args.top_k,
            "retry_temperature": args.retry_temperature,
            "retry_top_p": args.retry_top_p,
            "engine": args.engine,
            "dtype": args.dtype,
        },
        "band": [args.min_rate, args.max_rate],
        "seed": args.seed,
        "counts": {
            "screened": len(rated),
            "in_band": kept,
            "retries_sampled": sum(row["retries"] + row.get("confirm_retries", 0) for row in rated),
            "by_successes": dict(sorted(histogram.items(), key=lambda kv: _ratio(kv[0]))),
            "confirmed_by_successes": dict(sorted(confirmed.items(), key=lambda kv: _ratio(kv[0]))),
        },
        "command": command,
        "cpu": _cpu(),
        "seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _ratio(key: str) -> tuple[float, int]:
    k, n = (int(x) for x in key.split("/"))
    return (k / n, n)


def write_screened(
    output: Path, args: ScreenArgs, rated: dict[int, dict[str, Any]], command: str, seconds: float
) -> list[dict[str, Any]]:
    """Write ``screened.jsonl`` (the band, in failure order) and its metadata; return the band."""
    ordered = [rated[i] for i in sorted(rated)]
    kept = [row for row in ordered if in_band(row, args)]
    jsonl = output / "screened.jsonl"
    tmp = jsonl.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    tmp.replace(jsonl)
    meta = metadata(args, ordered, len(kept), command, seconds)
    (output / f"screened{META_SUFFIX}").write_text(json.dumps(meta, indent=2) + "\n")
    return kept


#: Added to a failure's position to seed its confirmation retries apart from its first group.
CONFIRM_OFFSET = 1_000_000


def screen(
    args: ScreenArgs,
    failures: Sequence[dict[str, Any]],
    run_groups: Callable[[Sequence[dict[str, Any]], int], list[list[float]]],
    *,
    command: str = "",
    progress: bool = True,
    before_chunk: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Screen ``failures`` (resuming ``<output_dir>/rates.jsonl``); return the band's rows.

    ``before_chunk(position)`` runs before each chunk (the CLI seeds its sampling there, so a
    resumed run samples what an uninterrupted one would).
    """
    from agents.evaluate import append_lines
    from agents.rollout import progress_bar

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    # Free on a resume: limits, and the band (a rerun with another one re-selects the rated).
    limits = (
        "output_dir",
        "enough",
        "max_failures",
        "chunk_failures",
        "min_rate",
        "max_rate",
        "confirm",
    )
    config = {k: v for k, v in asdict(args).items() if k not in limits}
    config_path = output / "screen_config.json"
    if config_path.exists() and json.loads(config_path.read_text()) != config:
        raise ValueError(f"{output} holds another screening; pass another --output_dir")
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    rates_path = output / "rates.jsonl"
    rated = read_rates(rates_path)
    limit = len(failures) if args.max_failures is None else min(args.max_failures, len(failures))
    todo = [i for i in range(limit) if i not in rated]
    started = time.perf_counter()
    kept = write_screened(output, args, rated, command, 0.0)
    bar = progress_bar(
        limit, initial=limit - len(todo), desc="failures", unit="failure", enabled=progress
    )
    with bar:
        for start in range(0, len(todo), args.chunk_failures):
            if args.enough is not None and len(kept) >= args.enough:
                break
            chunk = todo[start : start + args.chunk_failures]
            if before_chunk is not None:
                before_chunk(chunk[0])
            rows = [{"failure": i, **failures[i]} for i in chunk]
            done = screen_groups(
                rows, run_groups, group_size=args.group_size, prescreen=args.prescreen
            )
            append_lines(rates_path, done)
            rated.update({row["failure"]: row for row in done})
            kept = write_screened(output, args, rated, command, time.perf_counter() - started)
            bar.update(len(chunk))
            bar.set_postfix_str(f"{len(kept)} in the band")
    if args.confirm:
        # Candidates: in the band by their first group, not yet confirmed with this many.
        first = dataclasses.replace(args, confirm=0)
        todo = [
            i
            for i in sorted(rated)
            if in_band(rated[i], first) and rated[i].get("confirm_retries") != args.confirm
        ]
        for start in range(0, len(todo), args.chunk_failures):
            chunk = todo[start : start + args.chunk_failures]
            if before_chunk is not None:
                before_chunk(CONFIRM_OFFSET + chunk[0])  # other seeds than the first groups'
            done = confirm_rows([rated[i] for i in chunk], run_groups, args.confirm)
            append_lines(rates_path, done)  # a later line of a failure replaces the earlier
            rated.update({row["failure"]: row for row in done})
        kept = write_screened(output, args, rated, command, time.perf_counter() - started)
    return kept


def command_line(argv: Sequence[str] | None) -> str:
    """The command as typed (``python -m agents.screen_failures ...``)."""
    words = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", "agents.screen_failures", *words])


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; every option is checked before the model loads."""
    import gymnasium as gym
    import torch

    import rrr_env
    from agents.backends import eos_token_ids
    from agents.cli import check_env, check_model, parse_trl, preflight
    from agents.collect_failures import CollectArgs, collect, collection_summary
    from agents.engines import EngineGenerator, make_backend, make_engine
    from agents.models import load_model_and_tokenizer
    from agents.reflection_rollout import HFGenerator, with_sampling

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    gym.register_envs(rrr_env)
    (args,) = parse_trl((ScreenArgs,), argv)
    options = args.env_options()
    preflight(lambda: check_env(args.env, options, env_flag="--env"))
    preflight(lambda: check_model(args.model))
    command = command_line(argv)
    output = Path(args.output_dir)

    model, tokenizer = load_model_and_tokenizer(args.model, dtype=args.dtype)
    # 1. Failures, as the trainer collects them (agents.grpo_reflect.collect_failures).
    collect_args = CollectArgs(
        env=args.env,
        model=args.model,
        split=args.split,
        env_kwargs=args.env_kwargs,
        n=args.queries,
        samples_per_query=args.samples_per_query,
        failures_per_query=args.failures_per_query,
        min_successes=args.min_successes,
        round_size=min(8, args.samples_per_query),
        temperature=1.0,
        max_new_tokens=args.attempt_max_tokens,
        batch_size=64,
        seed=args.seed,
        output_dir=str(output / "failures"),
        engine=args.engine,
    )
    backend = make_backend(args.engine, model, tokenizer, batch_size=64, seed=args.seed)
    failures = collect(collect_args, backend)
    logger.info("collected %s", collection_summary(collect_args.output_dir))
    del backend

    # 2. Groups of reflections and retries, by the trainer's rollout code.
    eos = eos_token_ids(model, tokenizer)
    engine = None
    if args.engine != "torch":
        try:
            engine = make_engine(args.engine, model, tokenizer)
        except RuntimeError as error:
            logger.warning("--engine %s is unavailable (%s); using torch", args.engine, error)
    state: dict[str, Any] = {}

    def before_chunk(position: int) -> None:
        seed = args.seed + 1_000_003 * (position + 1)
        torch.manual_seed(seed)
        if engine is not None:
            state["generate"] = EngineGenerator(
                engine, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=seed
            )
        else:
            state["generate"] = HFGenerator(
                model,
                eos_ids=sorted(eos),
                pad_id=tokenizer.pad_token_id,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
            )
        state["retry"] = with_sampling(state["generate"], args.retry_temperature, args.retry_top_p)

    run_groups = rollout_groups(
        args,
        lambda: gym.make(args.env, **options),
        failures,
        _Late(state, "generate"),
        _Late(state, "retry"),
        tokenizer,
        eos,
    )
    with torch.inference_mode():
        kept = screen(args, failures, run_groups, command=command, before_chunk=before_chunk)
    meta = json.loads((output / f"screened{META_SUFFIX}").read_text())
    print(
        f"{len(kept)} of {meta['counts']['screened']} failures in the band "
        f"[{args.min_rate:g}, {args.max_rate:g}] -> {output / 'screened.jsonl'}"
    )
    return kept


@dataclasses.dataclass
class _Late:
    """A generator looked up at call time (each chunk makes a freshly seeded one)."""

    state: dict[str, Any]
    name: str

    def __call__(self, prompt_ids: Any, max_new_tokens: int, group_size: int = 1) -> Any:
        return self.state[self.name](prompt_ids, max_new_tokens, group_size)


__all__ = [
    "BUNDLED_DIR",
    "ScreenArgs",
    "bundled_sets",
    "describe",
    "find_bundled",
    "in_band",
    "main",
    "read_meta",
    "run_settings",
    "screen",
    "screen_groups",
]


if __name__ == "__main__":
    main()
