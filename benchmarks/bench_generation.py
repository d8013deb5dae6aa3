"""CPU generation paths side by side: tokens per second at one batch size, in one run.

    python -m benchmarks.bench_generation                 # Qwen2.5-Coder-0.5B, batch 32
    python -m benchmarks.bench_generation --quick         # SmolLM2-135M, a smoke run, to /tmp

Every path decodes the same Countdown prompts for exactly ``--new-tokens`` tokens
(``min_new_tokens`` = ``max_new_tokens``, so that every path does the same work), ``--reps``
times, greedily unless the path says it samples; the first repetition warms caches (and
compiles, where a path compiles) and is reported apart. Paths:

- ``fp32``: fp32 weights, no autocast (what ``dtype="auto"`` picks on CPUs without AMX);
- ``fp32+autocast``: fp32 weights under bf16 autocast, as the trainers' own model generates
  (TRL / accelerate mixed precision);
- ``bf16``: a bf16 copy of the weights, transformers' default dynamic KV cache (what
  ``agents.evaluate`` and RISE-AWR's generation copy use on AMX CPUs);
- ``bf16+static``: bf16 weights, a static KV cache;
- ``bf16+static+compile``: the same, with transformers' ``torch.compile`` of the decoding
  step (``CompileConfig``, on a CPU too);
- ``bf16+sample-multinomial``: bf16, sampling at temperature 1 the way transformers does it
  (``do_sample=True``: ``torch.multinomial`` over the vocabulary);
- ``bf16+sample-inverse-cdf``: bf16, sampling at temperature 1 through
  ``agents.sampling.InverseCDFSampler`` (what the project's backends use): the same
  distribution, one uniform draw per row.

Rows go to ``benchmarks/results/generation_speed.jsonl`` (appended as each path finishes; a
rerun skips finished paths of the same model and batch size) and the table to
``generation_speed.md``, with the speed-up of each path over ``bf16`` measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch

import rrr_env
from agents.backends import render_prompts
from benchmarks.common import (
    add_output_arguments,
    machine_info,
    machine_line,
    read_rows,
    resolve_out_dir,
    run_main,
    write_row,
)

gym.register_envs(rrr_env)
MEASURED_CODE = ("agents/backends.py", "agents/models.py", "benchmarks/bench_generation.py")
PACKAGES = ("torch", "transformers")
PATHS = (
    "fp32",
    "fp32+autocast",
    "bf16",
    "bf16+static",
    "bf16+static+compile",
    "bf16+sample-multinomial",
    "bf16+sample-inverse-cdf",
)
SAMPLED = ("bf16+sample-multinomial", "bf16+sample-inverse-cdf")
BASELINE = "bf16"


def prompts(tokenizer: Any, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded first-attempt prompts of ``batch_size`` easy Countdown test items."""
    env = gym.make(
        "rrr/Countdown-v0", split="test", num_count=2, number_range=(1, 99), target_range=(1, 100)
    )
    conversations = [env.reset(options={"index": i})[0] for i in range(batch_size)]
    rows = render_prompts(tokenizer, conversations, None)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    return ids, mask


def load(model_name: str, path: str) -> tuple[Any, Any]:
    from agents.models import load_model_and_tokenizer

    dtype = "float32" if path.startswith("fp32") else "bfloat16"
    return load_model_and_tokenizer(model_name, dtype=dtype)


def generate_kwargs(path: str) -> dict[str, Any]:
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if path == "bf16+sample-multinomial":
        return {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": None}
    if path == "bf16+sample-inverse-cdf":
        from agents.sampling import sampling_kwargs

        return sampling_kwargs(1.0)
    if path in ("fp32", "fp32+autocast", "bf16"):
        return greedy
    kwargs: dict[str, Any] = {**greedy, "cache_implementation": "static"}
    if path.endswith("+compile"):
        from transformers import CompileConfig

        config = CompileConfig(mode="default")  # "reduce-overhead" is CUDA graphs
        config._compile_all_devices = True  # transformers compiles on GPUs only, unless told
        kwargs["compile_config"] = config
    else:
        kwargs["disable_compile"] = True
    return kwargs


def measure(path: str, args: argparse.Namespace) -> dict[str, Any]:
    """Tokens per second of ``path`` over ``args.reps`` identical calls."""
    model, tokenizer = load(args.model, path)
    ids, mask = prompts(tokenizer, args.batch_size)
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if path == "fp32+autocast"
        else contextlib.nullcontext
    )
    seconds, texts = [], None
    for _ in range(args.reps):
        started = time.perf_counter()
        with torch.no_grad(), autocast():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **generate_kwargs(path),
            )
        seconds.append(time.perf_counter() - started)
        texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    tokens = args.batch_size * args.new_tokens
    warm = seconds[1:] or seconds
    return {
        "path": path,
        "model": args.model,
        "batch_size": args.batch_size,
        "new_tokens": args.new_tokens,
        "prompt_tokens": int(ids.shape[1]),
        "seconds": [round(s, 2) for s in seconds],
        "first_call_tokens_per_second": round(tokens / seconds[0], 1),
        "tokens_per_second": round(tokens / min(warm), 1),
        "texts": texts,
        "torch_threads": torch.get_num_threads(),
    }


def run(args: argparse.Namespace, jsonl: Any, command: str) -> None:
    done = set()
    if jsonl.exists():
        done = {(r["path"], r["model"], r["batch_size"]) for r in read_rows(jsonl)}
    with jsonl.open("a", encoding="utf-8") as handle:
        for path in args.paths:
            if (path, args.model, args.batch_size) in done:
                continue
            print(f"{path} ...", flush=True)
            row = measure(path, args)
            row["command"] = command
            row["machine"] = machine_info(MEASURED_CODE, PACKAGES)
            write_row(handle, row)
            print(f"  {row['tokens_per_second']} tok/s", flush=True)


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# CPU generation paths: tokens per second",
        "",
        f"Command: `{rows[-1]['command']}`  ",
        f"Machine: {machine_line(rows[-1]['machine'])}",
        "",
        "Same prompts (Countdown, 2 numbers in 1..99), greedy unless the path samples, every "
        "path decodes exactly the same number of tokens. Warm = best of the repetitions after "
        "the first; the first call includes warm-up (and compilation). Speed-up and identical "
        f"text (greedy paths only) are against the `{BASELINE}` row of the same model and "
        "batch size.",
        "",
        "| model | batch | path | new tokens | warm tok/s | first call tok/s | speed-up | "
        "same greedy text |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = next(
            (
                r
                for r in rows
                if r["path"] == BASELINE
                and r["model"] == row["model"]
                and r["batch_size"] == row["batch_size"]
            ),
            None,
        )
        ratio = f"{row['tokens_per_second'] / base['tokens_per_second']:.2f}x" if base else "-"
        sampled = row["path"] in SAMPLED
        same = "-" if base is None or sampled else str(row["texts"] == base["texts"])
        lines.append(
            f"| {row['model']} | {row['batch_size']} | {row['path']} | {row['new_tokens']} | "
            f"{row['tokens_per_second']} | {row['first_call_tokens_per_second']} | {ratio} | "
            f"{same} |"
        )
    for row in rows:
        if row["path"] != SAMPLED[1]:
            continue
        base = next(
            (
                r
                for r in rows
                if r["path"] == SAMPLED[0]
                and r["model"] == row["model"]
                and r["batch_size"] == row["batch_size"]
            ),
            None,
        )
        if base:
            lines += [
                "",
                f"Sampling at temperature 1, {row['model']}, batch {row['batch_size']}: "
                f"inverse CDF {row['tokens_per_second']} tok/s against multinomial "
                f"{base['tokens_per_second']} tok/s "
                f"({row['tokens_per_second'] / base['tokens_per_second']:.2f}x).",
            ]
    lines += ["", "Goal (issue 13): >= 2x tokens/s at batch 32 for Qwen2.5-Coder-0.5B.", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    add_output_arguments(parser, "SmolLM2-135M, batch 4, 8 tokens, 2 reps, to /tmp")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.batch_size, args.new_tokens, args.reps = "smollm2-135m", 4, 8, 2
    for name in ("batch_size", "new_tokens", "reps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    resolve_out_dir(args)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    run_main("benchmarks.bench_generation", "generation_speed", parse_args, run, render, argv)


if __name__ == "__main__":
    main()
