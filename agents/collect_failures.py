"""Build the RRR paper's dataset of failures.

    python -m agents.collect_failures --env rrr/Countdown-v0 --model smollm2-135m \\
        --split train --n 512 --output-dir runs/failures/countdown

For each query, first attempts are sampled (up to ``--samples-per-query``, in rounds of
``--round-size``) until ``--failures-per-query`` failures are found. Each kept row is the
conversation up to and including the reflection request, which is exactly the prompt that
RRR-GRPO trains on, plus the item and the query's pass rate.

Progress is one JSON line per finished query in ``progress.jsonl``; a killed run resumes
from it with no row lost or duplicated. The dataset is written as ``failures.jsonl`` and as a
``datasets.Dataset`` (``save_to_disk``) in ``dataset/``.

Sampling is seeded: ``--seed`` seeds the backend's generator (and the envs), so a rerun with
the same seed, model and options on the same machine keeps the same failures. The command
ends with one line, in the same words as ``python -m agents.grpo_reflect``'s collection
(:func:`summary`): ``N failures from K of Q queries (A first attempts sampled)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

import rrr_env
from agents.cli import check_env, check_model, json_object, parse_trl, preflight
from agents.engines import check_engine
from agents.evaluate import append_lines
from agents.models import DTYPES
from agents.rollout import Backend, PhaseSampling, SamplingParams, progress_bar, rollout

logger = logging.getLogger(__name__)
gym.register_envs(rrr_env)


@dataclass
class CollectArgs:
    """Options of ``python -m agents.collect_failures``."""

    env: str = field(default="rrr/Countdown-v0", metadata={"help": "Environment id."})
    model: str = field(default="smollm2-135m", metadata={"help": "Model name, id or path."})
    split: str | None = field(default="train", metadata={"help": "Data split of the env."})
    env_kwargs: str = field(default="{}", metadata={"help": "More env options as JSON."})
    n: int = field(default=256, metadata={"help": "Number of queries (the first n)."})
    samples_per_query: int = field(
        default=64, metadata={"help": "Most first attempts sampled per query (paper: 64)."}
    )
    failures_per_query: int = field(
        default=4, metadata={"help": "Stop sampling a query once this many failures are kept."}
    )
    min_successes: int = field(
        default=0,
        metadata={
            "help": "Keep a query's failures only if at least this many of its sampled first "
            "attempts were correct (0: every failed query, the paper). With 1 the dataset holds "
            "failures the model can fix, whose retries a reflection can change."
        },
    )
    round_size: int = field(default=8, metadata={"help": "First attempts per query per round."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=512, metadata={"help": "Token limit of an attempt."})
    batch_size: int = field(default=16, metadata={"help": "Conversations per generate call."})
    chunk_queries: int = field(default=16, metadata={"help": "Queries per resumable chunk."})
    dtype: str = field(default="auto", metadata={"help": "auto, bfloat16 or float32."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling."})
    output_dir: str = field(default="runs/failures", metadata={"help": "Where results go."})
    engine: str = field(
        default="torch",
        metadata={
            "help": "Generation engine: torch or openvino (CPU; pip install -e "
            "'.[cpu-engine]'; falls back to torch with a warning when it cannot start)."
        },
    )

    def __post_init__(self) -> None:
        for name in ("n", "samples_per_query", "round_size", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be an integer >= 1, got {getattr(self, name)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        check_engine(self.engine)
        json_object(self.env_kwargs, "--env-kwargs")
        if not 1 <= self.failures_per_query <= self.samples_per_query:
            raise ValueError("need 1 <= --failures-per-query <= --samples-per-query")
        if not 0 <= self.min_successes < self.samples_per_query:
            raise ValueError(
                "need 0 <= --min-successes < --samples-per-query (a kept query also needs a "
                f"failure), got {self.min_successes}"
            )
        if self.round_size < 1 or self.chunk_queries < 1 or self.n < 1:
            raise ValueError("--round-size, --chunk-queries and --n must be >= 1")
        if self.temperature == 0 and self.samples_per_query > 1:
            raise ValueError("greedy sampling repeats one attempt; set --temperature > 0")

    def env_options(self) -> dict[str, Any]:
        """Keyword arguments for ``gym.make``: attempt, then a reflection request on failure."""
        options: dict[str, Any] = {"max_attempts": 2, "reflect": True, "feedback": "binary"}
        if self.split is not None:
            options["split"] = self.split
        return {**json.loads(self.env_kwargs), **options}


def collect_query_records(
    make_env: Callable[[], gym.Env],
    backend: Backend,
    indices: Sequence[int],
    *,
    samples_per_query: int,
    failures_per_query: int,
    round_size: int,
    sampling: SamplingParams,
    seed: int = 0,
    min_successes: int = 0,
    on_query_end: Callable[[dict[str, Any]], None] | None = None,
    on_round_end: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Sample first attempts for ``indices`` and return one record per query.

    A query is sampled until it has ``failures_per_query`` failures and ``min_successes``
    successes, or ``samples_per_query`` attempts. A record holds ``index``, ``item_id``,
    ``samples``, ``successes``, ``pass_rate`` and ``failures``: rows with the ``prompt``
    (conversation up to the reflection request), the failed ``attempt`` and its ``reason``.
    ``on_query_end`` gets each record as soon as its query is done (for progress), before
    the other queries' next rounds; ``on_round_end`` the number of attempts each round drew.
    """
    records = {i: {"index": i, "samples": 0, "successes": 0, "failures": []} for i in indices}
    active = list(indices)
    round_number = 0
    while active:
        size = min(round_size, *(samples_per_query - records[i]["samples"] for i in active))
        episodes = rollout(
            make_env,
            backend,
            active,
            group_size=size,
            sampling=PhaseSampling.same(sampling),
            seed=seed + round_number * 1_000_003,
            max_steps=1,
        )
        for episode in episodes:
            record = records[episode.index]
            record["item_id"] = episode.item_id
            record["samples"] += 1
            first = episode.turns[0]
            if first.correct:
                record["successes"] += 1
            elif len(record["failures"]) < failures_per_query:
                record["failures"].append(
                    {"prompt": episode.messages, "attempt": first.text, "reason": first.reason}
                )
        still = [
            i
            for i in active
            if records[i]["samples"] < samples_per_query
            and (
                len(records[i]["failures"]) < failures_per_query
                or records[i]["successes"] < min_successes
            )
        ]
        if on_round_end is not None:
            on_round_end(len(episodes))
        if on_query_end is not None:
            for i in active:
                if i not in still:
                    on_query_end(records[i])
        active = still
        round_number += 1
    for record in records.values():
        record["pass_rate"] = record["successes"] / record["samples"]
    return [records[i] for i in indices]


def read_progress(path: Path) -> dict[int, dict[str, Any]]:
    """Finished query records by index; a torn last line is ignored."""
    records: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("ignoring an unreadable line of %s (interrupted write?)", path)
                continue
            records[record["index"]] = record
    return records


def failure_rows(records: Sequence[dict[str, Any]], min_successes: int = 0) -> list[dict[str, Any]]:
    """Flatten query records into dataset rows, one per kept failure.

    Queries with fewer than ``min_successes`` correct attempts are left out.
    """
    return [
        {
            "prompt": failure["prompt"],
            "index": record["index"],
            "item_id": record["item_id"],
            "pass_rate": record["pass_rate"],
            "attempt": failure["attempt"],
            "reason": failure["reason"],
        }
        for record in records
        if record["successes"] >= min_successes
        for failure in record["failures"]
    ]


def summary(records: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> str:
    """One line on a collection, in the words both collecting commands print.

    ``N failures from K of Q queries (A first attempts sampled)``: ``N`` dataset rows (kept
    failures), ``K`` queries with at least one kept failure, ``Q`` queries sampled, ``A`` first
    attempts sampled over all of them.

    >>> records = [{"index": 0, "samples": 8, "successes": 8}, {"index": 1, "samples": 4}]
    >>> summary(records, [{"index": 1}, {"index": 1}])
    '2 failures from 1 of 2 queries (12 first attempts sampled)'
    """
    queries = len({row["index"] for row in rows})
    attempts = sum(record["samples"] for record in records)
    return (
        f"{len(rows)} failures from {queries} of {len(records)} queries "
        f"({attempts} first attempts sampled)"
    )


def collection_summary(output_dir: str | Path) -> str:
    """:func:`summary` of the collection written in ``output_dir`` (by :func:`collect`)."""
    output = Path(output_dir)
    records = read_progress(output / "progress.jsonl")
    jsonl = output / "failures.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line]
    return summary(list(records.values()), rows)


def write_dataset(rows: list[dict[str, Any]], output: Path) -> Any:
    """Write ``failures.jsonl`` and a ``datasets.Dataset`` in ``output/dataset``."""
    import datasets

    jsonl = output / "failures.jsonl"
    tmp = jsonl.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(jsonl)
    dataset = datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({})
    dataset.save_to_disk(str(output / "dataset"))
    return dataset


def collect(args: CollectArgs, backend: Backend, *, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) the collection described by ``args`` and write the dataset.

    ``args.seed`` seeds the envs; the responses are as reproducible as ``backend``'s sampling:
    seed it too (``TransformersBackend(..., seed=args.seed)``, as both commands do).

    Returns:
        The dataset rows, one per kept failure, in query order.
    """
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in asdict(args).items() if k not in ("output_dir", "batch_size")}
    if config.get("engine") == "torch":  # as folders written before --engine existed
        del config["engine"]
    config_path = output / "config.json"
    if config_path.exists() and json.loads(config_path.read_text()) != config:
        raise ValueError(f"{output} holds a different collection; pass another --output-dir")
    config_path.write_text(json.dumps(config, indent=2))

    options = args.env_options()
    size = len(gym.make(args.env, **options).unwrapped.task)
    indices = list(range(min(args.n, size)))
    progress_path = output / "progress.jsonl"
    done = read_progress(progress_path)
    todo = [i for i in indices if i not in done]
    sampling = SamplingParams(args.max_new_tokens, args.temperature, args.top_p)
    bar = progress_bar(
        len(indices),
        initial=len(indices) - len(todo),
        desc="queries",
        unit="query",
        enabled=progress,
    )
    attempts = 0

    def round_end(count: int) -> None:
        nonlocal attempts
        attempts += count
        bar.set_postfix_str(f"{attempts} first attempts sampled")

    with bar:
        for start in range(0, len(todo), args.chunk_queries):
            chunk = todo[start : start + args.chunk_queries]
            records = collect_query_records(
                lambda: gym.make(args.env, **options),
                backend,
                chunk,
                samples_per_query=args.samples_per_query,
                failures_per_query=args.failures_per_query,
                round_size=args.round_size,
                sampling=sampling,
                seed=args.seed + chunk[0],
                min_successes=args.min_successes,
                on_query_end=lambda record: bar.update(1),
                on_round_end=round_end,
            )
            append_lines(progress_path, records)
    done = read_progress(progress_path)
    rows = failure_rows([done[i] for i in indices], args.min_successes)
    write_dataset(rows, output)
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; options, env and ``--model`` are checked before the model loads."""
    from agents.engines import make_backend
    from agents.models import load_model_and_tokenizer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (args,) = parse_trl((CollectArgs,), argv)
    preflight(lambda: check_env(args.env, args.env_options()))
    preflight(lambda: check_model(args.model))
    model, tokenizer = load_model_and_tokenizer(args.model, dtype=args.dtype)
    backend = make_backend(
        args.engine, model, tokenizer, batch_size=args.batch_size, seed=args.seed
    )
    rows = collect(args, backend)
    print(f"{collection_summary(args.output_dir)} -> {args.output_dir}/failures.jsonl")
    return rows


if __name__ == "__main__":
    main()
