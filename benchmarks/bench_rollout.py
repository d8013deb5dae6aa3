"""Rollout throughput: lockstep batched generation vs one episode at a time.

    python -m benchmarks.bench_rollout            # SmolLM2-135M, bf16 and fp32
    python -m benchmarks.bench_rollout --quick    # a smoke run, written under /tmp

The same Countdown episodes (attempt -> reflection -> retry, greedy, fixed token limits) are
rolled out twice per dtype: with every phase of all episodes as one batched ``generate`` call
(``TransformersBackend(batch_size=N)``), and episode by episode (``batch_size=1``, the
baseline). Generated tokens per second of wall time, and their ratio, go to
``benchmarks/results/rollout_speed.{jsonl,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import rrr_env
from agents.backends import TransformersBackend
from agents.models import load_model_and_tokenizer
from agents.rollout import PhaseSampling, SamplingParams, rollout
from benchmarks.common import QUICK_RESULTS, RESULTS, command_line, machine_info, machine_line

gym.register_envs(rrr_env)
#: The code whose speed is measured; uncommitted changes to it are flagged in the results.
MEASURED_CODE = (
    "agents/backends.py",
    "agents/models.py",
    "agents/rollout.py",
    "rrr_env",  # the Countdown env, its task and verifier
    "benchmarks/__init__.py",
    "benchmarks/common.py",
    "benchmarks/bench_rollout.py",
)
PACKAGES = ("sympy", "gymnasium", "numpy")  # reported with the machine


def measure(model: Any, tokenizer: Any, episodes: int, batch_size: int, tokens: int) -> dict:
    """Roll out ``episodes`` Countdown episodes and time them."""
    sampling = PhaseSampling.same(SamplingParams(max_new_tokens=tokens, temperature=0.0))
    backend = TransformersBackend(model, tokenizer, batch_size=batch_size)
    start = time.perf_counter()
    result = rollout(
        lambda: gym.make("rrr/Countdown-v0", split="test"),
        backend,
        list(range(episodes)),
        sampling=sampling,
    )
    seconds = time.perf_counter() - start
    generated = sum(t.completion_tokens for e in result for t in e.turns)
    return {
        "batch_size": batch_size,
        "episodes": episodes,
        "generate_calls": sum(len(e.turns) for e in result) if batch_size == 1 else None,
        "generated_tokens": generated,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(generated / seconds, 1),
        "texts": [[t.text for t in e.turns] for e in result],
    }


def render(rows: list[dict], command: str) -> str:
    """Markdown table of the measured rows."""
    lines = [
        "# Rollout throughput: lockstep batched vs batch-1",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_line(rows[0]['machine'])}",
        "",
        "| model | dtype | episodes | batched tok/s | batch-1 tok/s | ratio | same greedy text |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['dtype']} | {row['episodes']} | "
            f"{row['batched']['tokens_per_second']} | {row['single']['tokens_per_second']} | "
            f"**{row['ratio']:.1f}x** | {row['same_text']} |"
        )
    lines += [
        "",
        "Tokens are the completion tokens of attempts, reflections and retries (greedy, "
        f"{rows[0]['max_new_tokens']} tokens at most per response). Goal (issue 3): ratio >= 3.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--quick", action="store_true", help="4 episodes, 16 tokens, to /tmp")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.max_new_tokens = 4, 16
        args.out_dir = QUICK_RESULTS
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = args.out_dir / "rollout_speed.jsonl"
    command = command_line("benchmarks.bench_rollout", argv)
    rows = []
    jsonl.write_text("")
    for dtype in args.dtypes:
        model, tokenizer = load_model_and_tokenizer(args.model, dtype=dtype)
        print(f"{args.model} {dtype}: batched ...", flush=True)
        batched = measure(model, tokenizer, args.episodes, args.episodes, args.max_new_tokens)
        print(f"  {batched['tokens_per_second']} tok/s; batch-1 ...", flush=True)
        single = measure(model, tokenizer, args.episodes, 1, args.max_new_tokens)
        print(f"  {single['tokens_per_second']} tok/s", flush=True)
        row = {
            "model": args.model,
            "dtype": dtype,
            "episodes": args.episodes,
            "max_new_tokens": args.max_new_tokens,
            "torch_threads": torch.get_num_threads(),
            "batched": batched,
            "single": single,
            "ratio": batched["tokens_per_second"] / single["tokens_per_second"],
            "same_text": batched.pop("texts") == single.pop("texts"),
            "command": command,
            "machine": machine_info(MEASURED_CODE, PACKAGES),
        }
        rows.append(row)
        with jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        del model
    markdown = render(rows, command)
    (args.out_dir / "rollout_speed.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
