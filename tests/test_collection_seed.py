"""Seeded collection is reproducible, and both collecting commands say what they did alike.

Issue 25: with ``seed: 42`` one run of ``python -m agents.grpo_reflect`` logged "15 failures
from 15 queries", the next "16 failures from 16 queries" (its collection backend was never
seeded), and ``agents.collect_failures`` printed the same counts in other words.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

import agents.collect_failures
from agents.backends import TransformersBackend
from agents.collect_failures import CollectArgs, collect, collection_summary, summary
from agents.grpo_reflect import GRPOReflectConfig, collect_failures
from agents.models import load_model_and_tokenizer

pytestmark = pytest.mark.slow

EASY = json.dumps({"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]})
SUMMARY = re.compile(r"(\d+) failures from (\d+) of (\d+) queries \((\d+) first attempts sampled\)")


@pytest.fixture(scope="module")
def smollm():
    return load_model_and_tokenizer("smollm2-135m", dtype="float32")


def collect_args(output_dir: Path, seed: int) -> CollectArgs:
    return CollectArgs(
        env="rrr/Countdown-v0",
        env_kwargs=EASY,
        n=4,
        samples_per_query=2,
        failures_per_query=2,
        round_size=2,
        chunk_queries=2,  # two chunks: two generate calls
        temperature=1.0,
        max_new_tokens=24,
        seed=seed,
        output_dir=str(output_dir),
    )


def sampled(rows: list[dict]) -> list[tuple]:
    return [(r["index"], r["attempt"], r["reason"], json.dumps(r["prompt"])) for r in rows]


def test_the_same_seed_collects_the_same_failures_and_another_seed_others(smollm, tmp_path):
    model, tokenizer = smollm

    def run(name: str, seed: int) -> list[dict]:
        torch.rand(7)  # the global generator's state must not matter
        backend = TransformersBackend(model, tokenizer, batch_size=8, seed=seed)
        return collect(collect_args(tmp_path / name, seed), backend, progress=False)

    first, again, other = run("a", 42), run("b", 42), run("c", 7)
    assert first, "SmolLM2 fails most 2-number problems at 24 tokens"
    assert sampled(first) == sampled(again)
    # 24 tokens sampled at T = 1 on every attempt: another seed gives other attempts.
    assert [r["attempt"] for r in first] != [r["attempt"] for r in other]


def test_the_main_jobs_collection_is_seeded(smollm, tmp_path, caplog):
    model, tokenizer = smollm

    def run(name: str, seed: int):
        config = GRPOReflectConfig(
            output_dir=str(tmp_path / name),
            env_kwargs=EASY,
            collect_n=4,
            samples_per_query=2,
            failures_per_query=2,
            attempt_max_tokens=24,
            bf16=False,
            report_to="none",
            seed=seed,
        )
        torch.rand(11)  # what ran before collection must not matter
        return collect_failures(config, model, tokenizer)

    with caplog.at_level(logging.INFO, logger="agents.grpo_reflect"):
        first = run("a", 42)
    logged = [r.getMessage() for r in caplog.records if "first attempts sampled" in r.getMessage()]
    again = run("b", 42)
    assert sampled(first.to_list()) == sampled(again.to_list())
    assert [r["attempt"] for r in run("c", 7).to_list()] != [r["attempt"] for r in first]

    # Its log line has the words and numbers of agents.collect_failures' summary.
    assert len(logged) == 1
    failures, kept, queries, attempts = map(int, SUMMARY.search(logged[0]).groups())
    assert failures == len(first) and kept == len(set(first["index"]))
    assert queries == 4 and attempts == 8  # 2 first attempts on each of 4 queries
    assert logged[0] == f"collected {collection_summary(tmp_path / 'a' / 'failures')}"


def test_the_collect_command_prints_the_same_summary(tmp_path, capsys):
    output = tmp_path / "failures"
    argv = [
        *("--env", "rrr/Countdown-v0", "--env-kwargs", EASY, "--model", "smollm2-135m"),
        *("--n", "3", "--samples-per-query", "3", "--failures-per-query", "1"),
        *("--round-size", "1", "--max-new-tokens", "16", "--dtype", "float32", "--seed", "5"),
        *("--output-dir", str(output)),
    ]
    rows = agents.collect_failures.main(argv)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    failures, kept, queries, attempts = map(int, SUMMARY.match(line).groups())
    assert (failures, kept, queries) == (len(rows), len({r["index"] for r in rows}), 3)
    # Rounds of 1 stop a query at its first failure: a query has 1 to 3 first attempts.
    progress = [json.loads(x) for x in (output / "progress.jsonl").read_text().splitlines()]
    assert attempts == sum(record["samples"] for record in progress)
    assert kept <= attempts <= 3 * queries
    assert line == f"{collection_summary(output)} -> {output}/failures.jsonl"


def test_summary_counts_rows_failed_queries_queries_and_attempts():
    records = [
        {"index": 0, "samples": 3, "successes": 3},
        {"index": 1, "samples": 1, "successes": 0},
        {"index": 2, "samples": 2, "successes": 1},
    ]
    rows = [{"index": 1}, {"index": 2}]
    assert summary(records, rows) == "2 failures from 2 of 3 queries (6 first attempts sampled)"
    assert summary(records, []) == "0 failures from 0 of 3 queries (6 first attempts sampled)"
