"""Step time of RRR-GRPO vs plain TRL GRPO, with the same generated tokens per step.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_grpo_step
    OMP_NUM_THREADS=1 python -m benchmarks.bench_grpo_step --quick   # smoke run, temp dir

Both trainers get the same failure prompts, model (SmolLM2-135M, fp32), batch and GRPO
options. Lengths are forced with ``generation_kwargs={"min_new_tokens": L}`` and
``max_completion_length = L`` so that the generated tokens per step are equal:

- plain TRL GRPO: one completion of ``2L`` tokens per sequence (TRL's own generation);
- RRR-GRPO: a reflection of ``L`` tokens, the env's retry prompt, a retry of ``L`` tokens
  (our ``rollout_func``), in both credit modes: ``reflection`` (the loss sees ``L`` tokens,
  fewer than plain GRPO's ``2L``) and ``reflection+retry`` (``2L`` trained tokens plus the
  masked retry prompt: the like-for-like comparison).

Everything runs in fp32 because TRL's own generation does not autocast: bf16 would speed up
only our side. Steps alternate between the trainers (round-robin over ``--rounds``), the first
step of each trainer is a warm-up and is dropped, and wall and CPU time (``process_time``) are
recorded per step. Results: ``benchmarks/results/grpo_step.{jsonl,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import gymnasium as gym
import torch
from transformers import TrainerCallback

import rrr_env
from agents.grpo_reflect import GRPOReflectConfig, build_trainer
from agents.models import load_model_and_tokenizer
from benchmarks.common import QUICK_RESULTS, RESULTS, command_line, machine_line
from benchmarks.common import machine_info as _machine_info

gym.register_envs(rrr_env)
MEASURED_CODE = [
    "agents/grpo_reflect.py",
    "agents/grpo_rollout.py",
    "agents/grpo_callbacks.py",
    "agents/reflection_rollout.py",
    "benchmarks/bench_grpo_step.py",
]
PACKAGES = ["torch", "transformers", "trl", "gymnasium"]


def machine_info() -> dict[str, Any]:
    return _machine_info(MEASURED_CODE, PACKAGES)


EASY = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'


class StepClock(TrainerCallback):
    """Wall and CPU seconds of every optimizer step."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, float]] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        wall, cpu = self._start
        self.steps.append((time.perf_counter() - wall, time.process_time() - cpu))


def failures(config: GRPOReflectConfig, count: int) -> datasets.Dataset:
    env = gym.make(config.env_id, **config.env_options())
    rows = []
    for index in range(count):
        env.reset(options={"index": index})
        obs, *_ = env.step("I do not know.")
        rows.append({"prompt": obs, "index": index})
    return datasets.Dataset.from_list(rows)


def make_trainer(kind: str, args: argparse.Namespace, dataset, steps: int, out: Path) -> Any:
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
    common = {
        "output_dir": str(out / kind),
        "num_generations": args.group_size,
        "per_device_train_batch_size": args.prompts * args.group_size,
        "gradient_accumulation_steps": 1,  # the same batch on both sides, whatever the defaults
        "max_steps": steps,
        "learning_rate": 1e-6,
        "beta": 0.001,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": 0,
        "use_cpu": True,
    }
    if kind == "trl":
        config = GRPOConfig(
            **common,
            max_completion_length=2 * args.tokens,
            generation_kwargs={"min_new_tokens": 2 * args.tokens},
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[
                lambda completions, **kw: [float(i % 2) for i in range(len(completions))]
            ],
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    else:
        config = GRPOReflectConfig(
            **common,
            env_kwargs=EASY,
            failures_path="unused",
            credit=kind,
            max_completion_length=args.tokens,
            retry_max_tokens=args.tokens,
            generation_kwargs={"min_new_tokens": args.tokens},
        )
        trainer = build_trainer(config, model, tokenizer, dataset)
    clock = StepClock()
    trainer.add_callback(clock)
    return trainer, clock


def run(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    dataset = failures(GRPOReflectConfig(env_kwargs=EASY, failures_path="unused"), 16)
    kinds = ["trl", "reflection", "reflection+retry"]
    rows = []
    for round_number in range(args.rounds):
        for kind in kinds:
            torch.manual_seed(round_number)
            trainer, clock = make_trainer(kind, args, dataset, args.steps + 1, out)
            trainer.train()
            generated = trainer.state.num_input_tokens_seen
            for step, (wall, cpu) in enumerate(clock.steps[1:], start=2):  # step 1: warm-up
                rows.append(
                    {
                        "kind": kind,
                        "round": round_number,
                        "step": step,
                        "wall_s": round(wall, 3),
                        "cpu_s": round(cpu, 3),
                        "tokens_seen": generated,
                    }
                )
            print(kind, [round(c, 1) for _, c in clock.steps], flush=True)
            del trainer
    return rows


def render(rows: list[dict[str, Any]], header: str, args: dict[str, Any]) -> str:
    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["kind"] == kind)

    lines = [
        "# RRR-GRPO step time vs plain TRL GRPO (same generated tokens per step)",
        "",
        header,
        "",
        f"{args['prompts']} failures x {args['group_size']} generations per step; plain GRPO "
        f"generates {2 * args['tokens']} tokens per sequence, RRR-GRPO a {args['tokens']}-token "
        f"reflection and a {args['tokens']}-token retry (lengths forced with min_new_tokens). "
        f"fp32, SmolLM2-135M, beta 0.001 (reference model forward included). Medians over "
        f"{args['steps']} steps x {args['rounds']} rounds, warm-up step dropped.",
        "",
        "| trainer | median CPU s / step | ratio to TRL (CPU) | median wall s / step | "
        "ratio to TRL (wall) |",
        "|---|---|---|---|---|",
    ]
    names = {
        "trl": "plain TRL GRPO",
        "reflection": "RRR-GRPO, credit=reflection",
        "reflection+retry": "RRR-GRPO, credit=reflection+retry",
    }
    for kind, name in names.items():
        if not any(r["kind"] == kind for r in rows):
            continue
        cpu, wall = median(kind, "cpu_s"), median(kind, "wall_s")
        lines.append(
            f"| {name} | {cpu:.2f} | {cpu / median('trl', 'cpu_s'):.3f} | {wall:.2f} | "
            f"{wall / median('trl', 'wall_s'):.3f} |"
        )
    lines += [
        "",
        "Goal: ratio <= 1.15. CPU time (``process_time``, one OpenMP thread) is the comparison: "
        "wall time here depends on what else ran on this shared 2-core machine (in the round "
        "where RRR and TRL steps took equal CPU, wall ranged from 1x to 3x CPU with the load).",
        "",
        "Why reflection+retry costs more: its completion is reflection + the env's retry prompt "
        "(the task posed again, masked out of the loss) + retry, so the policy, old-policy and "
        "reference forward passes cover more tokens than plain GRPO's completion.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=2, help="Failures per step.")
    parser.add_argument("--group-size", type=int, default=4, help="Generations per failure.")
    parser.add_argument("--tokens", type=int, default=64, help="L: tokens per phase.")
    parser.add_argument("--steps", type=int, default=3, help="Measured steps per trainer run.")
    parser.add_argument("--rounds", type=int, default=2, help="Round-robin repetitions.")
    parser.add_argument("--quick", action="store_true", help="Tiny smoke run under /tmp.")
    parser.add_argument("--render", action="store_true", help="Only rewrite the markdown.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    results = RESULTS
    if args.quick:
        args.tokens, args.steps, args.rounds, args.group_size = 8, 1, 1, 2
        results = QUICK_RESULTS
    results.mkdir(parents=True, exist_ok=True)
    keys = ("prompts", "group_size", "tokens", "steps", "rounds")
    if args.render:
        rows = [json.loads(line) for line in (results / "grpo_step.jsonl").read_text().splitlines()]
        settings = {k: rows[0][k] for k in keys}
        meta = {"command": rows[0]["command"], "machine": rows[0]["machine"]}
    else:
        rows = run(args, Path("/tmp/bench_grpo_step/runs"))
        settings = {k: getattr(args, k) for k in keys}
        meta = {
            "command": command_line("benchmarks.bench_grpo_step", argv),
            "machine": machine_info(),
        }
        with (results / "grpo_step.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({**row, **settings, **meta}) + "\n")
    header = f"Command: `OMP_NUM_THREADS=1 {meta['command']}`  \nMachine: " + machine_line(
        meta["machine"]
    )
    markdown = render(rows, header, settings)
    (results / "grpo_step.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
