"""Head-to-head: RRR-GRPO vs RISE-AWR at equal wall-clock budget, with controls.

    python -m benchmarks.rrr_vs_rise --env rrr/Countdown-v0 --model qwen2.5-coder-0.5b \\
        --budget-minutes 10 --seeds 3
    python -m benchmarks.rrr_vs_rise --quick        # a smoke run of every arm, under /tmp
    python -m benchmarks.rrr_vs_rise --render-only --out-dir <run>   # rebuild a report

From the same base model, for each seed, both methods train on the env's train split for the
same wall-clock budget (collection included, evaluation excluded), with the same LoRA choice
and learning rate and a constant learning rate. Every arm is then evaluated greedily on the
same first ``--eval-n`` items of the held-out split, through one model path (LoRA merged, the
weights cast to bf16 or fp32 as ``--eval-dtype`` says), so that differences are the method's.
With ``--rrr-adapter-scope reflection`` RRR-GRPO's LoRA adapter is used only for reflections
(``agents.grpo_reflect --adapter_scope reflection``): its policy and snapshots are loaded as
they record it (``rrr_policy.json``, :func:`agents.snapshots.load_policy`), the adapter kept
unmerged, cast to ``--eval-dtype``, and switched off for attempts and retries
(:func:`agents.backends.scoped_backend`), which therefore come from the base model. Rows of the
``rrr`` arm record ``rrr_adapter_scope``; a run refuses to add RRR rows of another scope.
Rows record ``eval_dtype``, and a run refuses to add rows to a ``results.jsonl`` evaluated in
another dtype (greedy text differs between them). Training runs under bf16 autocast where the
device multiplies bf16 in hardware (CUDA GPUs that support it, CPUs with AMX or AVX-512 BF16)
and in fp32 elsewhere, for both methods.

Arms (``arm`` in the JSONL):

- ``vanilla``: the base model; attempt, its own reflection, retry. Its 1st try is the
  vanilla model, its 2nd try the untrained self-reflection.
- ``retry``: the base model retries after "The answer is incorrect. Please try again."
  with no reflection (RISE's protocol).
- ``fixed_reflection``: the base model retries after a fixed, generic reflection.
- ``best_of_2``: two independent sampled first attempts (``--sample-temperature``); solved if
  either is right (an oracle picks, as the verifier does for a retry). Matched compute: two
  answers per item.
- ``rrr``: RRR-GRPO's policy (seed ``s``), evaluated like ``vanilla``.
- ``rise``: RISE-AWR's policy (seed ``s``), evaluated like ``retry``.

- ``shortcut`` (model-free, computed when the report is written, no row): the task's best
  fixed-form answer (:mod:`rrr_env.shortcuts`: for Countdown one operator folded over the
  numbers), chosen on the validation split (train where there is none, or where validation
  is the held-out split), scored on the same held-out problems; its 2nd answer is the form
  that adds the most to the first there. "Any form" (solved by at least one fixed form) is
  the upper bound of a fixed policy.

Statistics: seeds share the held-out problems, so the report counts each problem once
(:mod:`benchmarks.problem_stats`: per-problem mean over seeds, exact sign test, paired
permutation test, bootstrap interval), keeps the per-seed sign tests beside it, splits each
trained arm's gains into problems the shortcut solves and the rest, and counts the retries
that fix a failure or repeat the first answer (from ``episodes/``).

Results: ``<out-dir>/results.jsonl`` (one row per arm and seed, appended when the arm is done;
a rerun skips finished arms, and each evaluation resumes from its episode file), ``report.md``,
``accuracy.png`` and ``shortcut.json``; ``--render-only`` rebuilds the last three from the rows
and episodes without a model. Training checkpoints go under ``--runs-dir``.

Learning curves: each trainer also saves its policy when its training time first passes
``--curve-points`` evenly spaced marks inside the budget (15 and 30 minutes of 45 by
default); after the end point, each snapshot is evaluated with the same protocol, and the
points go to the row's ``held_out_curve``. A seed's row is written once all its evaluations
are done.

Resuming: a rerun of the same command continues where a killed one stopped. RRR-GRPO
checkpoints every optimizer step (``<runs-dir>/<setting>/rrr_seed<s>/checkpoint-N``, LoRA
adapter and optimizer state, the newest kept) and RISE-AWR every iteration (its newest run
folder's ``checkpoint/``); a killed training resumes from its checkpoint and keeps counting
the budget and the curve's marks from the training time recorded there. A training that
finished writes ``trained.json`` in its run folder; a seed killed after that (during its
evaluations) is not trained again: its saved policy and snapshots are evaluated, each
evaluation resuming from its episode file. A seed's episode files are removed only when it
trains (from scratch or from a checkpoint: evaluations start after training, so they came
from another policy). A run folder made with other training options (RRR:
``harness_options.json``; RISE: ``args.json``) is refused: pick another ``--runs-dir`` or
delete the folder. Rows record the options that change results (``eval_dtype``,
``eval_engine``, ``retry_max_tokens``; trained arms ``train_engine``, and
``train_engine_used``: torch where that engine could not start; RRR rows
``rrr_adapter_scope``, ``rrr_truncated_reflections``, ``rrr_collect_temperature``), and a
run refuses to add rows made with other values.

Reusing: ``--reuse-from DIR`` takes the finished rows of another folder evaluated by the same
protocol (its controls, and trained seeds with the same training options at this budget, from
their row or their snapshot at this many minutes) with their episode files, instead of
computing them again (:mod:`benchmarks.harness_reuse`).

Replayed first attempts: the ``retry`` and ``fixed_reflection`` controls, and ``rrr`` under
``--rrr-adapter-scope reflection`` (whose attempts come from the frozen base model), answer
their first attempt exactly as the ``vanilla`` control did: greedily, with the same weights.
Once the vanilla row is done, those answers are replayed from its episode file
(:class:`agents.replay.GreedyReplay`) instead of generated again: about half of such an
evaluation's generated tokens (the 1.5B retry control took 19.4 min against vanilla's 32.7 on a
2-core CPU). Only exact replays are made (same
conversation, greedy, a token limit under which the answer comes out the same); rows record
``replayed_turns``. ``--no-replay`` generates every turn.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch

import rrr_env
from agents.backends import ADAPTER_SCOPES
from agents.cli import check_env, check_model, json_object, one_line_errors, preflight
from agents.controls import FixedReflectionBackend
from agents.engines import ENGINES
from agents.evaluate import append_lines, evaluate
from agents.items import distinct_indices
from agents.models import resolve_dtype
from agents.replay import GreedyReplay
from agents.rollout import Episode, PhaseSampling, SamplingParams
from benchmarks.common import (
    QUICK_RESULTS,
    RESULTS,
    command_line,
    cpu_name,
    machine_info,
    machine_line,
)
from benchmarks.problem_stats import compare, per_problem, sign_test
from rrr_env.shortcuts import best_form, form_verdicts, forms_for

if TYPE_CHECKING:
    from benchmarks.harness_reuse import Reused

gym.register_envs(rrr_env)

CONTROL_ARMS = ("vanilla", "retry", "fixed_reflection", "best_of_2")
TRAINED_ARMS = ("rrr", "rise")
ARMS = CONTROL_ARMS + TRAINED_ARMS
#: ``GRPOReflectConfig.truncated_reflections``'s choices (agents.grpo_reflect_config's, named
#: here so that parsing the command line does not import TRL; a test checks they agree).
TRUNCATED_REFLECTIONS = ("keep", "mask", "penalize")
#: In a trained arm's run folder once its trainer returned: what the training cost (the row's
#: training fields); a rerun evaluates the saved policy instead of training again.
TRAINED_FILE = "trained.json"
#: In RRR-GRPO's run folder: the trainer options it was made with (a resumed run must match).
RRR_OPTIONS_FILE = "harness_options.json"
EASY_COUNTDOWN = '{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}'
#: Ids whose default ``--env-kwargs`` is :data:`EASY_COUNTDOWN` (others take none).
EASY_DEFAULT_ENVS = ("rrr/Countdown-v0", "rrr/Countdown-v1")
MEASURED_CODE = (
    "agents",
    "rrr_env",
    "benchmarks/common.py",
    "benchmarks/rrr_vs_rise.py",
)
PACKAGES = ("torch", "transformers", "trl", "peft", "gymnasium")
#: The papers' figures, for the report (both measured on GPUs with larger models).
PAPER_FIGURES = (
    "RRR (Bensal et al., 2025, arXiv 2505.24726; abstract): up to 34.7% improvement at math "
    "equation writing (Countdown) and 18.1% at function calling, with fine-tuned models of "
    "1.5B to 7B parameters outperforming models of the same family 10 times larger. RISE "
    "(Qu et al., 2024, arXiv 2407.18219; abstract): Llama2, Llama3 and Mistral models improve "
    "with more turns on math reasoning, beating single-turn strategies at equal inference "
    "compute, with larger benefits for more capable models. Neither paper trains models as "
    "small as ours on a CPU."
)


# -- options -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="rrr/Countdown-v0")
    parser.add_argument(
        "--env-kwargs",
        default=None,
        help="task options as JSON (default: the easy 2-number setting on rrr/Countdown-v0 and "
        "-v1, none on other ids, whose presets set their own)",
    )
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument(
        "--curve-points",
        type=int,
        default=2,
        help="policies saved at evenly spaced training times inside the budget and "
        "evaluated afterwards, for the learning curve (0: end points only)",
    )
    parser.add_argument(
        "--retry-context",
        default="conversation",
        choices=("conversation", "reflection"),
        help="what a retry after a reflection sees (the env's retry_context): the whole "
        "conversation (the paper), or the task and the reflection without the failed attempt; "
        "for RRR's training and the arms evaluated with a reflection",
    )
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="test")
    parser.add_argument("--eval-n", type=int, default=200)
    parser.add_argument("--attempt-max-tokens", type=int, default=256)
    parser.add_argument(
        "--retry-max-tokens",
        type=int,
        default=None,
        help="token limit of retries, in both methods' training and every evaluation "
        "(default: --attempt-max-tokens)",
    )
    parser.add_argument("--reflection-max-tokens", type=int, default=128)
    parser.add_argument("--sample-temperature", type=float, default=1.0, help="best-of-2")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="both methods (LoRA)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument(
        "--eval-dtype",
        choices=("auto", "bfloat16", "float32"),
        help="every arm (default bfloat16; with --quick, auto: bfloat16 where the device "
        "multiplies it in hardware, float32 elsewhere)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per generate")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help="generation engine of every held-out evaluation (openvino: pip install -e "
        "'.[cpu-engine]'; see benchmarks/results/engines.md)",
    )
    parser.add_argument(
        "--train-engine",
        choices=ENGINES,
        default="torch",
        help="generation engine of both methods' training rollouts (RRR-GRPO's collection and "
        "groups, RISE-AWR's rollouts and best-of-N), the same for both",
    )
    parser.add_argument("--rrr-collect-n", type=int, default=32, help="queries for failures")
    parser.add_argument(
        "--rrr-collect-temperature",
        type=float,
        default=None,
        help="temperature of the first attempts RRR-GRPO collects failures from (default: "
        "GRPOReflectConfig's, 1.0; 0: greedy, with --rrr-samples-per-query 1)",
    )
    parser.add_argument(
        "--rrr-truncated-reflections",
        choices=TRUNCATED_REFLECTIONS,
        default="keep",
        help="RRR-GRPO's reflections cut at the token limit: trained as they are (keep), "
        "without loss (mask), or with 1 subtracted from their reward (penalize)",
    )
    parser.add_argument(
        "--rrr-samples-per-query", type=int, default=1, help="first attempts sampled per query"
    )
    parser.add_argument(
        "--rrr-min-successes",
        type=int,
        default=0,
        help="keep failures of queries solved at least this often (0: every failed query)",
    )
    parser.add_argument("--rrr-num-generations", type=int, default=8, help="GRPO group size")
    parser.add_argument(
        "--rrr-adapter-scope",
        default="all",
        choices=ADAPTER_SCOPES,
        help="where RRR-GRPO's LoRA adapter is used, in training and evaluation: 'all' (the "
        "paper's shared weights) or 'reflection' (reflections only; attempts and retries "
        "come from the base model)",
    )
    parser.add_argument(
        "--rrr-groups-per-step",
        type=int,
        default=1,
        help="GRPO groups per optimizer step, generated in one batch (more groups per "
        "generate call use the CPU better)",
    )
    parser.add_argument(
        "--rrr-beta",
        type=float,
        default=None,
        help="KL coefficient (default: GRPOReflectConfig's, the paper's 0.001; 0 skips the "
        "reference-model pass)",
    )
    parser.add_argument(
        "--rrr-resample-groups",
        type=int,
        default=0,
        help="redraw a group without reward variance up to this many times (DAPO; 0: off)",
    )
    parser.add_argument(
        "--rrr-resample-batch",
        type=int,
        default=1,
        help="replacement groups generated together per round of --rrr-resample-groups (the "
        "first with variance is trained on, as one at a time would; fewer engine turns)",
    )
    parser.add_argument(
        "--rrr-temperature", type=float, default=1.0, help="reflections (and collection)"
    )
    parser.add_argument(
        "--rrr-retry-temperature",
        type=float,
        default=None,
        help="training retries (default: --rrr-temperature; 0: greedy)",
    )
    parser.add_argument("--rise-items", type=int, default=4, help="items per RISE iteration")
    parser.add_argument("--rise-samples-per-item", type=int, default=4)
    parser.add_argument("--rise-best-of", type=int, default=4)
    parser.add_argument("--rise-temperature", type=float, default=1.0, help="RISE rollouts")
    parser.add_argument(
        "--rise-best-of-temperature",
        type=float,
        default=None,
        help="RISE best-of-N samples (default: --rise-temperature)",
    )
    parser.add_argument(
        "--rise-update-epochs",
        type=int,
        default=1,
        help="passes over each RISE iteration's targets",
    )
    parser.add_argument(
        "--rise-train-on-failures",
        action="store_true",
        help="also train on groups with no correct response (the official code's default)",
    )
    parser.add_argument(
        "--no-replay",
        action="store_true",
        help="generate every first attempt, instead of replaying the vanilla control's greedy "
        "answers where an arm's first attempt is the same base model's",
    )
    parser.add_argument(
        "--name", default=None, help="results folder name (default: from env, kwargs and model)"
    )
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help="training run folders (default: runs/rrr_vs_rise; with --quick, under /tmp)",
    )
    parser.add_argument(
        "--reuse-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="take finished rows of another results folder evaluated by the same protocol: "
        "its controls, and trained seeds with the same training options at this budget (their "
        "row of this budget, or their snapshot at this many minutes; "
        "benchmarks/harness_reuse.py)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny budget and eval, under /tmp")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="no model: rewrite report.md, accuracy.png and shortcut.json of --out-dir from its "
        "results.jsonl and episodes, with the options of the rows' last command",
    )
    one_line_errors(parser)
    args = parser.parse_args(argv)
    positive = (
        "seeds",
        "eval_n",
        "batch_size",
        "rrr_collect_n",
        "rise_items",
        "rise_update_epochs",
        "lora_r",
    )
    positive += ("rrr_samples_per_query", "rrr_num_generations", "rrr_groups_per_step")
    positive += ("rrr_resample_batch",)
    positive += ("rise_samples_per_item", "rise_best_of")
    for name in positive:
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be an integer >= 1, got {getattr(args, name)}")
    if args.curve_points < 0:
        parser.error(f"--curve-points must be an integer >= 0, got {args.curve_points}")
    if args.budget_minutes <= 0:
        parser.error(f"--budget-minutes must be > 0, got {args.budget_minutes}")
    if args.attempt_max_tokens < 1 or args.reflection_max_tokens < 1:
        parser.error("--attempt-max-tokens and --reflection-max-tokens must be >= 1")
    if args.retry_max_tokens is not None and args.retry_max_tokens < 1:
        parser.error(f"--retry-max-tokens must be an integer >= 1, got {args.retry_max_tokens}")
    if args.env_kwargs is None:
        args.env_kwargs = EASY_COUNTDOWN if args.env in EASY_DEFAULT_ENVS else "{}"
    try:
        json_object(args.env_kwargs, "--env-kwargs")
    except ValueError as error:
        parser.error(str(error))
    if args.quick:
        args.model = "smollm2-135m" if args.model == "qwen2.5-coder-0.5b" else args.model
        args.budget_minutes, args.seeds, args.eval_n = 0.05, 1, 2
        args.attempt_max_tokens, args.reflection_max_tokens = 16, 8
        args.rrr_collect_n, args.rise_items = 4, 1
        args.runs_dir = args.runs_dir or QUICK_RESULTS / "rrr_vs_rise_runs"
    args.runs_dir = args.runs_dir or Path("runs/rrr_vs_rise")
    temperatures = ("rrr_temperature", "rrr_retry_temperature", "rise_temperature")
    for name in (*temperatures, "rrr_beta", "rrr_collect_temperature", "rrr_resample_groups"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if args.rrr_collect_temperature == 0 and args.rrr_samples_per_query > 1:
        parser.error(
            "--rrr-collect-temperature 0 repeats one greedy attempt per query; use "
            "--rrr-samples-per-query 1"
        )
    if args.eval_dtype is None:
        args.eval_dtype = "auto" if args.quick else "bfloat16"
    if args.eval_dtype == "auto":
        args.eval_dtype = str(resolve_dtype("auto")).removeprefix("torch.")
    if args.out_dir is None:
        base = QUICK_RESULTS if args.quick else RESULTS
        args.out_dir = base / "rrr_vs_rise" / setting_name(args)
    return args


def check_arms(args: argparse.Namespace) -> None:
    """Build the train and eval envs and check ``--model``, before any model loads.

    Raises:
        ValueError: An unknown env id, a bad env option or split, or an unknown model.
    """
    kwargs = json.loads(args.env_kwargs)
    check_env(args.env, {**kwargs, "split": args.eval_split})
    if any(protocol(arm)["env"]["reflect"] for arm in args.arms):
        check_env(args.env, {**kwargs, **reflect_options(args), "split": args.eval_split})
    if set(args.arms) & set(TRAINED_ARMS):
        check_env(args.env, {**kwargs, "split": args.train_split})
    check_model(args.model)


def check_resume(args: argparse.Namespace) -> None:
    """Check that the rows this run would join were evaluated like its own.

    Greedy text differs between bf16 and fp32 weights, so one report must not mix them.
    Rows written before ``eval_dtype`` was recorded were evaluated in bf16 (the default).

    Likewise, RRR rows of one report share their adapter scope (rows written before
    ``rrr_adapter_scope`` was recorded used ``all``, the only scope there was).

    Raises:
        ValueError: ``results.jsonl`` in ``--out-dir`` holds rows of another ``--eval-dtype``
            or ``--engine`` (rows without ``eval_engine`` were evaluated with torch),
            or (when this run trains ``rrr``) RRR rows of another ``--rrr-adapter-scope``.
    """
    rows = read_rows(args.out_dir / "results.jsonl")
    engines = {r.get("eval_engine", "torch") for r in rows}
    if engines - {args.engine}:
        raise ValueError(
            f"{args.out_dir / 'results.jsonl'} holds rows evaluated with --engine "
            f"{', '.join(sorted(engines))}; rerun with that engine or choose another --out-dir"
        )
    stored = {r.get("eval_dtype", "bfloat16") for r in rows}
    if stored - {args.eval_dtype}:
        raise ValueError(
            f"{args.out_dir / 'results.jsonl'} holds rows evaluated in {', '.join(sorted(stored))}"
            f"; rerun with --eval-dtype {min(stored)} or choose another --out-dir"
        )
    scopes = {r.get("rrr_adapter_scope", "all") for r in rows if r.get("arm") == "rrr"}
    if "rrr" in args.arms and scopes - {args.rrr_adapter_scope}:
        raise ValueError(
            f"{args.out_dir / 'results.jsonl'} holds RRR rows trained with adapter scope "
            f"{', '.join(sorted(scopes))}; rerun with --rrr-adapter-scope {min(scopes)} or "
            "choose another --out-dir"
        )
    # (row key, this run's value, the arms whose rows record it, the value of rows from before
    # it was recorded, the option). Rows of arms this run does not evaluate are not compared.
    recorded: list[tuple[str, Any, tuple[str, ...], Any, str]] = [
        (
            "retry_max_tokens",
            retry_tokens(args),
            ARMS,
            args.attempt_max_tokens,
            "--retry-max-tokens",
        ),
        ("train_engine", args.train_engine, TRAINED_ARMS, "torch", "--train-engine"),
        (
            "rrr_truncated_reflections",
            args.rrr_truncated_reflections,
            ("rrr",),
            "keep",
            "--rrr-truncated-reflections",
        ),
    ]
    if "rrr" in args.arms and any(r.get("arm") == "rrr" for r in rows):
        recorded.append(
            (
                "rrr_collect_temperature",
                rrr_collect_temperature(args),
                ("rrr",),
                rrr_collect_temperature(None),
                "--rrr-collect-temperature",
            )
        )
    for key, value, arms, old, flag in recorded:
        arms = tuple(a for a in arms if a in args.arms)
        stored = {r.get(key, old) for r in rows if r.get("arm") in arms}
        if stored - {value}:
            values = ", ".join(map(str, sorted(stored, key=str)))
            raise ValueError(
                f"{args.out_dir / 'results.jsonl'} holds rows made with {flag} {values}; "
                f"rerun with that value or choose another --out-dir"
            )


def setting_name(args: argparse.Namespace) -> str:
    """``--name``, or ``<env>__<model>``, plus ``-easy`` for the default easy Countdown setting.

    A reflection-only RRR adapter adds ``__rrr-reflection``: its results (and training runs)
    go apart from those of the shared-weights default.
    """
    if args.name:
        return args.name
    env = args.env.removeprefix("rrr/").removesuffix("-v0").lower()
    if json.loads(args.env_kwargs) == json.loads(EASY_COUNTDOWN):
        env += "-n2-easy"
    elif json.loads(args.env_kwargs):
        env += "-custom"
    scope = "" if args.rrr_adapter_scope == "all" else f"__rrr-{args.rrr_adapter_scope}"
    return f"{env}__{Path(args.model).name}{scope}"


# -- evaluation ----------------------------------------------------------------------------


def curve_marks(args: argparse.Namespace) -> list[float] | None:
    """Training times (minutes) of the learning curve's inner points, or ``None``."""
    n = args.curve_points
    return [args.budget_minutes * k / (n + 1) for k in range(1, n + 1)] or None


def reflect_options(args: argparse.Namespace) -> dict[str, Any]:
    """Env options of episodes with a reflection: ``retry_context`` unless it is the default."""
    return {} if args.retry_context == "conversation" else {"retry_context": args.retry_context}


def protocol(arm: str) -> dict[str, Any]:
    """Episode options and sampling of ``arm``'s evaluation."""
    if arm in ("vanilla", "fixed_reflection", "rrr"):
        return {"env": {"max_attempts": 2, "reflect": True, "feedback": "binary"}, "samples": 1}
    if arm in ("retry", "rise"):
        return {"env": {"max_attempts": 2, "reflect": False, "feedback": "binary"}, "samples": 1}
    if arm == "best_of_2":
        return {"env": {"max_attempts": 1, "reflect": False, "feedback": "binary"}, "samples": 2}
    raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}")


def arm_scores(arm: str, episodes: Sequence[Episode]) -> dict[str, Any]:
    """1st-try and 2nd-try accuracy of an arm, and which items it solved.

    ``second_try`` is solved by the first or second answer: after a reflection (``vanilla``,
    ``fixed_reflection``, ``rrr``), after "try again" (``retry``, ``rise``), or by either of
    two independent samples (``best_of_2``). For ``best_of_2``, ``first_try`` is the mean over
    both samples.
    """
    by_item: dict[int, list[Episode]] = {}
    for episode in episodes:
        by_item.setdefault(episode.index, []).append(episode)
    first, second, tokens = {}, {}, 0
    for index, group in sorted(by_item.items()):
        graded = [e.graded for e in group]
        tokens += sum(t.completion_tokens for e in group for t in e.turns)
        if arm == "best_of_2":
            first[index] = sum(bool(g and g[0].correct) for g in graded) / len(graded)
            second[index] = any(g and g[0].correct for g in graded)
        else:
            (turns,) = graded
            first[index] = float(bool(turns[0].correct))
            second[index] = any(t.correct for t in turns[:2])
    items = len(by_item)
    return {
        "items": items,
        "first_try": sum(first.values()) / items,
        "second_try": sum(second.values()) / items,
        "solved_second": sorted(i for i, ok in second.items() if ok),
        "eval_generated_tokens": tokens,
    }


def replays_vanilla(arm: str, adapter_scope: str = "all") -> bool:
    """Whether ``arm``'s first attempt is the base model's greedy answer, as ``vanilla``'s is."""
    return arm in ("retry", "fixed_reflection") or (arm == "rrr" and adapter_scope == "reflection")


def replay_source(
    arm: str, args: argparse.Namespace, rows: Sequence[dict[str, Any]], adapter_scope: str = "all"
) -> Path | None:
    """The vanilla control's episode file, where ``arm`` may replay its first attempts.

    ``None`` with ``--no-replay``, for arms whose first attempt is another model's or sampled,
    and until a vanilla row of the same model, engine and dtype is done (its episodes are
    complete then).
    """
    if args.no_replay or not replays_vanilla(arm, adapter_scope):
        return None
    done = any(
        r.get("arm") == "vanilla"
        and r.get("model") == args.model
        and r.get("eval_engine", "torch") == args.engine
        and r.get("eval_dtype", "bfloat16") == args.eval_dtype
        for r in rows
    )
    path = args.out_dir / "episodes" / "vanilla__seed0.jsonl"
    return path if done and path.exists() else None


def eval_env_options(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """Env options of ``arm``'s evaluation: the held-out split, the task and the protocol."""
    spec = protocol(arm)["env"]
    options = {"split": args.eval_split, **json.loads(args.env_kwargs), **spec}
    if spec["reflect"]:
        options.update(reflect_options(args))
    return options


def eval_sampling(arm: str, args: argparse.Namespace) -> PhaseSampling:
    """Token limits and temperature of ``arm``'s evaluation (greedy but ``best_of_2``)."""
    temperature = args.sample_temperature if arm == "best_of_2" else 0.0
    return PhaseSampling(
        attempt=SamplingParams(args.attempt_max_tokens, temperature),
        reflection=SamplingParams(args.reflection_max_tokens, temperature),
        retry=SamplingParams(retry_tokens(args), temperature),
    )


def run_eval(
    arm: str,
    model: Any,
    tokenizer: Any,
    args: argparse.Namespace,
    path: Path,
    seed: int,
    adapter_scope: str = "all",
    replay: Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` under ``arm``'s protocol; episodes go to (and resume from) ``path``.

    ``adapter_scope`` ``reflection``: ``model`` is an unmerged PEFT model whose adapter is on
    only while generating reflections (:func:`agents.backends.scoped_backend`).

    ``replay``: the vanilla control's episodes (:func:`replay_source`), whose greedy first
    attempts are replayed where they are exact; the row's ``replayed_turns`` counts them.
    """
    from agents.engines import make_backend

    spec = protocol(arm)
    options = eval_env_options(arm, args)
    # Distinct problems: a generator's small problem space repeats items.
    indices = distinct_indices(lambda: gym.make(args.env, **options), args.eval_n)
    env = gym.make(args.env, **options)
    sampling = eval_sampling(arm, args)
    backend: Any = make_backend(
        args.engine,
        model,
        tokenizer,
        batch_size=args.batch_size,
        seed=seed,
        adapter_scope=adapter_scope,
        reflection_request=env.unwrapped.task.reflection_request,
    )
    if arm == "fixed_reflection":
        backend = FixedReflectionBackend(backend, env.unwrapped.task.reflection_request)
    replayed: dict[str, Any] = {}
    if replay is not None:
        vanilla = eval_env_options("vanilla", args)
        backend = GreedyReplay.from_episodes(
            replay, lambda: gym.make(args.env, **vanilla), backend, tokenizer
        )
        replayed = {"replay_from": replay.name}
    started = time.perf_counter()
    episodes, _ = evaluate(
        lambda: gym.make(args.env, **options),
        backend,
        indices,
        samples=spec["samples"],
        sampling=sampling,
        seed=seed,
        episodes_path=path,
        chunk_items=max(1, args.batch_size // spec["samples"]),
        progress=True,
    )
    if replay is not None:
        # Turns of this call only: a resumed evaluation's earlier chunks are not counted.
        replayed["replayed_turns"] = backend.replayed
    seconds = time.perf_counter() - started
    return {**arm_scores(arm, episodes), "eval_seconds": seconds, **replayed}


def held_out_curve(
    arm: str,
    seed: int,
    run_dir: Path,
    args: argparse.Namespace,
    episodes_dir: Path,
    rows: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Scores of each policy snapshot in ``run_dir``, in order of training time.

    ``rows``: the finished rows, whose vanilla control's first attempts a snapshot replays
    where it may (:func:`replay_source`).
    """
    from agents.snapshots import list_snapshots

    points = []
    for path, info in list_snapshots(run_dir):
        model, tokenizer, scope = load_eval_policy(arm, path, args)
        episodes = episodes_dir / f"{arm}__seed{seed}__{info['minutes']:g}min.jsonl"
        replay = replay_source(arm, args, rows, scope)
        scores = run_eval(arm, model, tokenizer, args, episodes, seed, scope, replay)
        del model
        gc.collect()
        position = {k: info[k] for k in ("iteration", "step") if k in info}
        mark = {"mark": info["minutes"]}
        points.append({"minutes": info["train_seconds"] / 60, **mark, **position, **scores})
    return points


def eval_model(policy: Any, args: argparse.Namespace) -> Any:
    """The evaluation copy of ``policy``: LoRA merged, cast to ``--eval-dtype``."""
    from agents.models import generation_model

    return generation_model(policy, getattr(torch, args.eval_dtype))


def load_eval_policy(arm: str, path: Path, args: argparse.Namespace) -> tuple[Any, Any, str]:
    """A trained arm's saved policy (snapshot or end point) as it is evaluated.

    Loaded as its ``rrr_policy.json`` says (:func:`agents.snapshots.load_policy`) and cast to
    ``--eval-dtype``: under scope ``reflection`` the LoRA adapter stays unmerged, to be
    switched off for attempts and retries; otherwise merged, as :func:`eval_model` does.

    Returns:
        ``(model, tokenizer, adapter_scope)``.

    Raises:
        ValueError: The recorded scope is not the one the arm trained with (``rrr``:
            ``--rrr-adapter-scope``; ``rise``: ``all``), checked before any weights load.
    """
    from agents.snapshots import load_policy, read_adapter_scope

    expected = args.rrr_adapter_scope if arm == "rrr" else "all"
    recorded = read_adapter_scope(path)
    if recorded != expected:
        raise ValueError(
            f"{path} records adapter scope {recorded!r} but the {arm} arm trained with "
            f"{expected!r}; a policy evaluated with another scope would measure another model"
        )
    # Loaded in fp32 and then cast, as eval_model casts a trainer's policy: under ``all`` a
    # merged model, under ``reflection`` the PEFT model with its adapter weights cast too.
    policy, tokenizer, scope = load_policy(path, args.model, dtype="float32")
    return policy.to(getattr(torch, args.eval_dtype)).eval(), tokenizer, scope


# -- training ------------------------------------------------------------------------------


def retry_tokens(args: argparse.Namespace) -> int:
    """Token limit of retries: ``--retry-max-tokens``, by default ``--attempt-max-tokens``."""
    return args.retry_max_tokens or args.attempt_max_tokens


def rrr_collect_temperature(args: argparse.Namespace | None) -> float:
    """RRR-GRPO's collection temperature: ``--rrr-collect-temperature`` or the config's default.

    ``args`` ``None``: the default (what rows recorded before the option existed used).
    """
    value = None if args is None else args.rrr_collect_temperature
    if value is not None:
        return value
    from agents.grpo_reflect_config import GRPOReflectConfig

    return GRPOReflectConfig.__dataclass_fields__["collect_temperature"].default


def rrr_run_dir(args: argparse.Namespace, seed: int) -> Path:
    """RRR-GRPO's run folder (its ``output_dir``) for ``seed``."""
    return args.runs_dir / setting_name(args) / f"rrr_seed{seed}"


def rrr_options(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The ``GRPOReflectConfig`` options of RRR-GRPO's arm for ``seed`` (JSON values)."""
    pass_size = 2 if args.rrr_num_generations % 2 == 0 else 1
    options = dict(
        output_dir=str(rrr_run_dir(args, seed)),
        model=args.model,
        env_id=args.env,
        env_kwargs=json.dumps({**json.loads(args.env_kwargs), **reflect_options(args)}),
        train_split=args.train_split,
        seed=seed,
        max_steps=100_000,  # the budget stops it
        max_minutes=args.budget_minutes,
        snapshot_minutes=curve_marks(args),
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        collect=True,
        collect_n=args.rrr_collect_n,
        samples_per_query=args.rrr_samples_per_query,
        min_successes=args.rrr_min_successes,
        num_generations=args.rrr_num_generations,
        # --rrr-groups-per-step groups per optimizer step, in passes of 2 sequences (1 for odd
        # group sizes).
        per_device_train_batch_size=pass_size,
        gradient_accumulation_steps=args.rrr_groups_per_step
        * args.rrr_num_generations
        // pass_size,
        resample_groups=args.rrr_resample_groups,
        resample_batch=args.rrr_resample_batch,
        temperature=args.rrr_temperature,
        retry_temperature=args.rrr_retry_temperature,
        attempt_max_tokens=args.attempt_max_tokens,
        max_completion_length=args.reflection_max_tokens,
        retry_max_tokens=retry_tokens(args),
        eval_n=0,
        report_to="none",
        # A checkpoint (LoRA adapter and optimizer state) after every optimizer step, the
        # newest kept: a killed run resumes from it with the time it had spent.
        save_strategy="steps",
        save_steps=1,
        save_total_limit=1,
        resume_from_checkpoint="last",
        rollout_batch_size=args.batch_size,
        adapter_scope=args.rrr_adapter_scope,
        engine=args.train_engine,
        truncated_reflections=args.rrr_truncated_reflections,
    )
    # The config's own defaults (the paper's beta 0.001, collection at 1.0) unless given.
    if args.rrr_beta is not None:
        options["beta"] = args.rrr_beta
    if args.rrr_collect_temperature is not None:
        options["collect_temperature"] = args.rrr_collect_temperature
    return options


def rrr_model_options(args: argparse.Namespace) -> dict[str, Any]:
    """TRL ``ModelConfig`` options of RRR-GRPO's arm."""
    return {
        "dtype": "float32",
        "use_peft": True,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
    }


def rrr_config(args: argparse.Namespace, seed: int) -> Any:
    """The ``GRPOReflectConfig`` of RRR-GRPO's arm for ``seed``."""
    from agents.grpo_reflect import GRPOReflectConfig

    return GRPOReflectConfig(**rrr_options(args, seed))


def rise_options(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The ``agents.rise_awr.Args`` options of RISE-AWR's arm for ``seed`` (JSON values)."""
    return dict(
        exp_name="rise",
        seed=seed,
        output_dir=str(args.runs_dir / setting_name(args)),
        report_to="none",
        env_id=args.env,
        env_kwargs=args.env_kwargs,
        train_split=args.train_split,
        max_attempts=2,
        model=args.model,
        # Autocast where the device multiplies bf16 in hardware (as RRR-GRPO's trainer picks):
        # on an AVX2-only CPU bf16 is 3.5x slower than fp32.
        bf16=resolve_dtype("auto") == torch.bfloat16,
        use_peft=True,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        iterations=100_000,  # the budget stops it
        max_minutes=args.budget_minutes,
        snapshot_minutes=curve_marks(args),
        items_per_iteration=args.rise_items,
        samples_per_item=args.rise_samples_per_item,
        best_of=args.rise_best_of,
        temperature=args.rise_temperature,
        best_of_temperature=args.rise_best_of_temperature,
        train_on_failures=args.rise_train_on_failures,
        max_new_tokens=args.attempt_max_tokens,
        retry_max_new_tokens=retry_tokens(args),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        update_epochs=args.rise_update_epochs,
        minibatch_size=8,
        micro_batch_size=4,
        eval_n=0,
        engine=args.train_engine,
        save_every=1,  # a killed run resumes from its last iteration
    )


def rise_config(args: argparse.Namespace, seed: int, resume: Path | None = None) -> Any:
    """The ``agents.rise_awr.Args`` of RISE-AWR's arm for ``seed``, resuming ``resume``."""
    from agents.rise_awr import Args as RiseArgs

    return RiseArgs(**rise_options(args, seed), resume=None if resume is None else str(resume))


def rise_run_dirs(args: argparse.Namespace, seed: int) -> list[Path]:
    """RISE-AWR's run folders of ``seed`` (``<env>__rise__<seed>__<time>``), oldest first."""
    env_name = args.env.replace("/", "_")
    folders = (args.runs_dir / setting_name(args)).glob(f"{env_name}__rise__{seed}__*")
    stamped = [f for f in folders if f.is_dir() and f.name.rsplit("__", 1)[-1].isdigit()]
    return sorted(stamped, key=lambda f: int(f.name.rsplit("__", 1)[-1]))


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The keys of ``wanted`` whose (JSON) value ``saved`` records otherwise."""
    wanted = json.loads(json.dumps(wanted))
    return sorted(k for k in wanted if k in saved and saved[k] != wanted[k])


def _refuse(folder: Path, why: str) -> ValueError:
    return ValueError(
        f"{folder} {why}; it cannot be resumed by this command: pick another --runs-dir or "
        "delete the folder"
    )


def run_state(arm: str, args: argparse.Namespace, seed: int) -> tuple[str, Path | None]:
    """Where ``arm``'s training of ``seed`` stands in ``--runs-dir``, checked before it loads.

    Returns:
        ``("finished", run folder)`` (its trainer returned: :data:`TRAINED_FILE`),
        ``("resume", checkpoint)`` (killed during training) or ``("fresh", None)``.

    Raises:
        ValueError: The run folder was made with other training options (or records none).
    """
    if arm == "rrr":
        folder = rrr_run_dir(args, seed)
        checkpoints = [
            c for c in folder.glob("checkpoint-*") if c.is_dir() and c.name[11:].isdigit()
        ]
        finished = (folder / TRAINED_FILE).is_file()
        options_file = folder / RRR_OPTIONS_FILE
        wanted = {"config": rrr_options(args, seed), "model": rrr_model_options(args)}
        if options_file.is_file():
            saved = json.loads(options_file.read_text())
            changed = _differences(saved["config"], wanted["config"])
            changed += _differences(saved["model"], wanted["model"])
            if changed:
                raise _refuse(folder, f"was trained with other options ({', '.join(changed)})")
        elif checkpoints or finished:
            raise _refuse(folder, f"records no {RRR_OPTIONS_FILE}")
        if finished:
            return "finished", folder
        from agents.grpo_callbacks import last_complete_checkpoint

        complete = last_complete_checkpoint(folder)  # a folder cut while saving is not one
        return ("resume", Path(complete)) if complete else ("fresh", None)
    from agents.rise_awr import CHECKPOINT, TRAINER_STATE, finish_interrupted_save

    for folder in reversed(rise_run_dirs(args, seed)):
        finished = (folder / TRAINED_FILE).is_file()
        checkpoint = folder / CHECKPOINT
        finish_interrupted_save(checkpoint)
        if not (finished or (checkpoint / TRAINER_STATE).is_file()):
            continue  # killed before its first checkpoint: nothing to resume
        if not (folder / "args.json").is_file():
            raise _refuse(folder, "records no args.json")
        saved = json.loads((folder / "args.json").read_text())
        changed = _differences(saved, rise_options(args, seed))
        if changed:
            raise _refuse(folder, f"was trained with other options ({', '.join(changed)})")
        return ("finished", folder) if finished else ("resume", checkpoint)
    return "fresh", None


def check_runs(args: argparse.Namespace, done: set[tuple[str, int]] | None = None) -> None:
    """Check every run folder this command would resume (:func:`run_state`), before loading.

    ``done``: the ``(arm, seed)`` rows this run will not train (default: those of its
    ``results.jsonl``).
    """
    if done is None:
        done = {(r["arm"], r["seed"]) for r in read_rows(args.out_dir / "results.jsonl")}
    for seed in range(1, args.seeds + 1):
        for arm in TRAINED_ARMS:
            if arm in args.arms and (arm, seed) not in done:
                run_state(arm, args, seed)


def final_policy(arm: str, run_dir: Path) -> Path:
    """Where a trained arm's final policy is saved in its run folder.

    RRR-GRPO saves it in the folder (``trainer.save_model``); RISE-AWR's last checkpoint is
    its final policy (saved at the end of its last iteration).
    """
    return run_dir if arm == "rrr" else run_dir / "checkpoint"


def write_trained(run_dir: Path, trained: dict[str, Any]) -> None:
    """:data:`TRAINED_FILE`, atomically: a kill leaves the old state or the new one."""
    tmp = run_dir / (TRAINED_FILE + ".tmp")
    tmp.write_text(json.dumps(trained, indent=1) + "\n")
    tmp.replace(run_dir / TRAINED_FILE)


def train_rrr(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """RRR-GRPO for the budget (resumed from its newest checkpoint, if any); returns the
    trained policy and what the run cost."""
    from trl import ModelConfig

    from agents.grpo_reflect import train as grpo_train

    state, _ = run_state("rrr", args, seed)
    config = rrr_config(args, seed)
    model_args = ModelConfig(**rrr_model_options(args))
    run_dir = Path(config.output_dir)
    if state == "fresh":
        shutil.rmtree(run_dir / "snapshots", ignore_errors=True)  # of an older trajectory
    # else: the snapshots taken before the kill belong to the resumed trajectory.
    run_dir.mkdir(parents=True, exist_ok=True)
    options = {"config": rrr_options(args, seed), "model": rrr_model_options(args)}
    (run_dir / RRR_OPTIONS_FILE).write_text(json.dumps(options, indent=1) + "\n")
    result = grpo_train(config, model_args)
    per_step = config.generation_batch_size
    history = [h for h in result["log_history"] if "rrr/retry_success" in h]

    def step_tokens(h: dict[str, Any]) -> float:
        # Every drawn group's tokens: a step draws group_draws times its batch (resampling),
        # estimated at the trained batch's mean lengths.
        lengths = h.get("rrr/reflection_tokens", 0) + h.get("rrr/retry_tokens", 0)
        return per_step * h.get("rrr/group_draws", 1) * lengths

    tokens = sum(step_tokens(h) for h in history)
    skipped = sum(skipped_step(h) for h in history)
    return {
        "policy": result["model"],
        "tokenizer": result["tokenizer"],
        "train_seconds": result["train_seconds"],
        # Optimizer steps that moved the weights; steps: every batch, skipped ones included.
        "updates": result["steps"] - skipped,
        "steps": result["steps"],
        "train_generated_tokens": round(tokens),
        "curve": [
            {
                "step": h["step"],
                "skipped": skipped_step(h),
                "generated_tokens": round(step_tokens(h)),
                "retry_success": h["rrr/retry_success"],
                # TRL's fraction of groups whose rewards are all equal (no gradient).
                "zero_variance": h.get("frac_reward_zero_std"),
                # Groups drawn per trained group, and the share of all drawn groups without
                # variance (equal to zero_variance without --rrr-resample-groups).
                "group_draws": h.get("rrr/group_draws"),
                "drawn_zero_variance": h.get("rrr/drawn_zero_variance"),
                # Where the step's time went: TRL's step_time is the whole step; the rollout
                # (generation, every draw, and the engine's weight syncs) is part of it.
                "step_seconds": h.get("step_time"),
                "rollout_seconds": h.get("rrr/rollout_seconds"),
                "engine_sync_seconds": h.get("rrr/engine_sync_seconds"),
            }
            for h in history
        ],
        "failures": result["failures"],
        "train_engine_used": result["generation_engine"],
        "run_dir": str(run_dir),
    }


def skipped_step(logged: dict[str, Any]) -> bool:
    """Whether the RRR-GRPO step of a log entry (one step per entry) was skipped.

    ``rrr/step_skipped`` says so; an entry of an older run without it (but with
    ``rrr/skipped_steps``: the skip was on) was skipped if no group had reward variance.
    """
    if "rrr/step_skipped" in logged:
        return bool(logged["rrr/step_skipped"])
    return "rrr/skipped_steps" in logged and logged.get("frac_reward_zero_std") == 1.0


def train_rise(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """RISE-AWR for the budget (resumed from the seed's newest checkpoint, if any); returns
    the trained policy and what the run cost."""
    from agents.rise_awr import train as rise_train

    state, checkpoint = run_state("rise", args, seed)
    config = rise_config(args, seed, checkpoint if state == "resume" else None)
    result = rise_train(config)
    # A run killed after logging an iteration but before checkpointing it logged that
    # iteration twice: the resumed one counts.
    rows: dict[int, dict[str, Any]] = {}
    for line in (result.run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line from a kill
        if "rollout/generated_tokens" in row and row["iteration"] <= result.iteration:
            rows[row["iteration"]] = row
    tokens = sum(r["rollout/generated_tokens"] for r in rows.values())
    curve = [
        {
            "iteration": i,
            "updates": int(r.get("charts/optimizer_steps", 0)),
            "generated_tokens": round(r["rollout/generated_tokens"]),
        }
        for i, r in sorted(rows.items())
    ]
    return {
        "policy": result.policy,
        "tokenizer": result.tokenizer,
        "train_seconds": result.train_seconds,
        "updates": int(sum(r.get("charts/optimizer_steps", 0) for r in rows.values())),
        "iterations": result.iteration,
        "train_bf16": config.bf16,
        "train_generated_tokens": round(tokens),
        "train_engine_used": result.engine,
        "run_dir": str(result.run_dir),
        "curve": curve,
    }


# -- evidence: per-problem outcomes from the episodes, and the model-free shortcut arm -------


@dataclass
class Evidence:
    """What the report's problem-level statistics read, beside the rows.

    Attributes:
        outcomes: ``(arm, seed)`` -> item index -> :func:`episode_outcomes`'s record.
        key: The problem of an item index (items of one problem share it).
        shortcut: The model-free shortcut arm (:func:`shortcut_arm`), if computed.
        from_rows: True when built from the rows' ``solved_second`` alone (no episode files):
            2nd try only, and the problems no arm solved are anonymous ties.
    """

    outcomes: dict[tuple[str, int], dict[Any, dict[str, Any]]]
    key: Callable[[Any], Hashable] = lambda index: index
    shortcut: dict[str, Any] | None = None
    from_rows: bool = False


def episode_outcomes(path: Path) -> dict[int, dict[str, Any]]:
    """Per item of an episode file: 1st- and 2nd-try outcome and the answers given.

    Returns:
        Index -> ``first`` (1st try right; the mean over samples where an item has several,
        as ``best_of_2``), ``second`` (right by the 1st or 2nd answer, or by any sample),
        ``answers`` (the graded answers of the first sample, ``None`` where none parsed) and
        ``correct`` (their verdicts).
    """
    samples: dict[int, list[list[dict[str, Any]]]] = {}
    for line in path.read_text().splitlines():
        try:
            episode = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        graded = [t for t in episode["turns"] if t.get("correct") is not None]
        samples.setdefault(episode["index"], []).append(graded)
    outcomes = {}
    for index, group in samples.items():
        outcomes[index] = {
            "first": sum(bool(g and g[0]["correct"]) for g in group) / len(group),
            "second": float(any(t["correct"] for g in group for t in g[:2])),
            "answers": [t.get("answer") for t in group[0][:2]],
            "correct": [bool(t["correct"]) for t in group[0][:2]],
        }
    return outcomes


def evidence_from_rows(rows: Sequence[dict[str, Any]]) -> Evidence:
    """2nd-try outcomes from the rows' ``solved_second`` (rows without episode files).

    Every arm was scored on the same ``items`` problems, so the problems that no row solved
    are ties; they enter as anonymous problems.
    """
    solved = set().union(*(r["solved_second"] for r in rows))
    items = max(r["items"] for r in rows)
    universe = [*sorted(solved), *(("unsolved", k) for k in range(items - len(solved)))]
    outcomes = {}
    for row in rows:
        mine = set(row["solved_second"])
        outcomes[(row["arm"], row["seed"])] = {
            index: {"second": float(index in mine)} for index in universe
        }
    return Evidence(outcomes, from_rows=True)


def env_options(args: argparse.Namespace, split: str) -> dict[str, Any]:
    """The env options of ``split`` with the run's task options (no protocol options)."""
    return {**json.loads(args.env_kwargs), "split": split}


def selection_split(args: argparse.Namespace) -> str:
    """Where the shortcut form is chosen: the validation split, else train.

    Train where the task has no validation split, or where validation is the held-out split
    itself (a form chosen on the problems it is scored on would be an oracle).
    """
    if args.eval_split != "validation":
        try:
            check_env(args.env, env_options(args, "validation"))
            return "validation"
        except ValueError:
            pass
    return "train"


def shortcut_arm(args: argparse.Namespace, indices: Sequence[int]) -> dict[str, Any]:
    """The model-free shortcut arm on the held-out items ``indices``.

    Its 1st try is the task's best fixed form (:func:`rrr_env.shortcuts.best_form`) and its
    2nd answer the form that adds the most to it, both chosen on the first ``--eval-n``
    distinct problems of :func:`selection_split`; ``any_form`` is solved by at least one of
    the task's forms (an upper bound on what a fixed form can do, chosen with hindsight).
    """
    chooser = selection_split(args)
    make = lambda: gym.make(args.env, **env_options(args, chooser))  # noqa: E731
    choice = best_form(make().unwrapped.task, distinct_indices(make, args.eval_n))
    task = gym.make(args.env, **env_options(args, args.eval_split)).unwrapped.task
    verdicts = {form.name: form_verdicts(task, form, indices) for form in forms_for(task)}
    solved = {name: {i for i, v in by.items() if v.correct} for name, by in verdicts.items()}
    first, second = solved[choice.form.name], solved[choice.second.name]
    return {
        "form": choice.form.name,
        "second_form": choice.second.name,
        "chosen_on": chooser,
        "chosen_on_items": len(choice.indices),
        "chosen_on_first": len(choice.solved[choice.form.name]) / len(choice.indices),
        "chosen_on_second": len(choice.solved[choice.form.name] | choice.solved[choice.second.name])
        / len(choice.indices),
        "forms": len(verdicts),
        "families": {form.name: form.kind for form in forms_for(task)},
        "solved": {name: sorted(s) for name, s in solved.items()},
        "any_form": sorted(set().union(*solved.values())),
        "answers": {name: {i: v.answer for i, v in by.items()} for name, by in verdicts.items()},
        "outcomes": {
            i: {"first": float(i in first), "second": float(i in first | second)} for i in indices
        },
    }


def gather_evidence(
    rows: Sequence[dict[str, Any]], out: Path, args: argparse.Namespace
) -> Evidence:
    """Per-problem outcomes of every row from its episode file, and the shortcut arm.

    Rows whose episode file is missing fall back to :func:`evidence_from_rows` for all rows.
    """
    paths = {
        (r["arm"], r["seed"]): out / "episodes" / f"{r['arm']}__seed{r['seed']}.jsonl" for r in rows
    }
    if not all(path.exists() for path in paths.values()):
        return evidence_from_rows(rows)
    outcomes = {arm_seed: episode_outcomes(path) for arm_seed, path in paths.items()}
    task = gym.make(args.env, **env_options(args, args.eval_split)).unwrapped.task
    keys: dict[int, str] = {}

    def key(index: Any) -> Hashable:
        if index not in keys:
            keys[index] = task.problem_key(task[index])
        return keys[index]

    indices = sorted(set().union(*outcomes.values()))
    return Evidence(outcomes, key, shortcut_arm(args, indices))


# -- report --------------------------------------------------------------------------------


def _mean_sd(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.3f} ± {sd:.3f}"


#: The untrained control each trained arm starts from (same evaluation protocol).
CURVE_START = {"rrr": "vanilla", "rise": "retry"}
LABELS = {
    "vanilla": "vanilla (own reflection, untrained)",
    "retry": 'retry without reflection ("try again")',
    "fixed_reflection": "fixed generic reflection",
    "best_of_2": "best-of-2 samples (no feedback)",
    "rrr": "RRR-GRPO (trained reflection)",
    "rise": "RISE-AWR (trained retry)",
}


def curve_points(
    row: dict[str, Any], start: dict[str, Any] | None
) -> list[tuple[float, dict[str, Any]]]:
    """(training minutes, scores) of a trained row: its control at 0, snapshots, end point."""
    points = [(0.0, start)] if start else []
    points += [(p["minutes"], p) for p in row.get("held_out_curve", [])]
    return [*points, (row["train_seconds"] / 60, row)]


def other_cpus(rows: list[dict[str, Any]]) -> list[str]:
    """Report lines naming the rows run on another CPU than the first row's.

    Budgets are wall-clock minutes, so a CPU without bf16 units buys fewer updates in one.
    """
    first = cpu_name(rows[0]["machine"])
    cpus = [(r, cpu_name(r["machine"])) for r in rows]
    others = [f"{r['arm']} seed {r['seed']}: {cpu}" for r, cpu in cpus if cpu != first]
    if not others:
        return []
    return [
        "",
        f"Rows on another CPU than {first} (a wall-clock budget buys a different amount of "
        f"training there): {'; '.join(others)}.",
    ]


#: Pairs of arms compared problem by problem (the shortcut arm joins against every arm).
PAIRS = (
    ("rrr", "vanilla"),
    ("rise", "retry"),
    ("rrr", "rise"),
    ("vanilla", "retry"),
    ("vanilla", "fixed_reflection"),
    ("vanilla", "best_of_2"),
)
#: A gain whose gained problems lie at least this much in shortcut-solvable problems is
#: labelled as a shortcut's.
SHORTCUT_SHARE = 0.9
TRIES = (("second", "2nd"), ("first", "1st"))


def arm_problems(evidence: Evidence, arm: str, field: str) -> dict[Hashable, float] | None:
    """``arm``'s outcome (``first`` or ``second``) per problem, its seeds averaged."""
    if arm == "shortcut":
        seeds = [evidence.shortcut["outcomes"]] if evidence.shortcut else []
    else:
        seeds = [o for (a, _), o in sorted(evidence.outcomes.items()) if a == arm]
    if not seeds or any(field not in record for o in seeds for record in o.values()):
        return None
    return per_problem([{i: r[field] for i, r in o.items()} for o in seeds], evidence.key)


def _p(value: float) -> str:
    return f"{value:.2g}"


def problem_lines(evidence: Evidence, arms: Sequence[str]) -> list[str]:
    """The problem-level comparison table (see :mod:`benchmarks.problem_stats`)."""
    pairs = [(a, b) for a, b in PAIRS if a in arms and b in arms]
    if evidence.shortcut:
        against = [a for a in ("vanilla", *TRAINED_ARMS) if a in arms] or arms[:1]
        pairs += [(a, "shortcut") for a in against]
    lines = []
    for a, b in pairs:
        for field, label in TRIES:
            mine, theirs = arm_problems(evidence, a, field), arm_problems(evidence, b, field)
            if mine is None or theirs is None:
                continue
            c = compare(mine, theirs)
            lines.append(
                f"| {a} vs {b} | {label} | {c.problems} | {c.a:.3f} | {c.b:.3f} | "
                f"{c.difference:+.3f} [{c.interval[0]:+.3f}, {c.interval[1]:+.3f}] | "
                f"{c.gained} | {c.lost} | {_p(c.sign_p)} | {_p(c.permutation_p)} |"
            )
    if not lines:
        return []
    seeds = {arm: sum(a == arm for a, _ in evidence.outcomes) for arm in arms}
    several = ", ".join(f"{arm} {n}" for arm, n in seeds.items() if n > 1)
    note = (
        " The rows hold no episode files: 2nd try only, from `solved_second`."
        if evidence.from_rows
        else ""
    )
    if several and any(n == 1 for n in seeds.values()):
        note += (
            " Against a one-seed arm, read the permutation test: the sign test counts a problem "
            "that one of several seeds solves as gained, as fully as one that all of them "
            "solve, so seeds that disagree collect gains without a better mean."
        )
    return [
        "",
        "**Problem-level comparisons** (the unit is the held-out problem: an arm's outcome on "
        "a problem is its mean over seeds"
        + (f" ({several} seeds)" if several else "")
        + " and over repeated items of the problem; gained / lost: problems whose mean went "
        "up / down; exact two-sided sign test with ties dropped; paired permutation test of "
        "the mean difference (exact up to 16 changed problems, else 20,000 random sign flips, "
        "whose floor is 5e-05); 95% bootstrap interval over problems, seed 0)." + note,
        "",
        "| comparison | try | problems | A | B | A - B [95% CI] | gained | lost | sign p | "
        "permutation p |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *lines,
    ]


def gain_split_lines(evidence: Evidence, arms: Sequence[str]) -> list[str]:
    """Each trained arm's gains over its control, in problems the shortcut solves or not."""
    shortcut = evidence.shortcut
    if not shortcut:
        return []
    solvable = arm_problems(evidence, "shortcut", "first") or {}
    families: dict[str, set[Hashable]] = {}
    for name, solved in shortcut["solved"].items():
        families.setdefault(name, set()).update(evidence.key(i) for i in solved)
    lines = []
    for trained, control in CURVE_START.items():
        if trained not in arms or control not in arms:
            continue
        for field, label in TRIES:
            mine = arm_problems(evidence, trained, field)
            theirs = arm_problems(evidence, control, field)
            if mine is None or theirs is None:
                continue
            common = [p for p in mine if p in theirs]
            gained = {p for p in common if mine[p] > theirs[p]}
            lost = {p for p in common if mine[p] < theirs[p]}
            inside = {p for p in common if solvable.get(p, 0) > 0}
            share = len(gained & inside) / len(gained) if gained else 0.0
            cover, covered = max(
                ((name, len(gained & solved)) for name, solved in families.items()),
                key=lambda pair: pair[1],
            )
            if len(gained) <= len(lost):
                verdict = "no net gain"
            elif share >= SHORTCUT_SHARE:
                verdict = "**in shortcut-solvable problems" + (
                    "**" if share == 1 else " (mostly)**"
                )
            elif covered / len(gained) >= SHORTCUT_SHARE:
                verdict = f"**in problems that `{cover}` solves**"
            else:
                verdict = "not the shortcut's"
            lines.append(
                f"| {trained} vs {control} | {label} | {len(inside)}: +{len(gained & inside)} "
                f"/ -{len(lost & inside)} | {len(common) - len(inside)}: "
                f"+{len(gained - inside)} / -{len(lost - inside)} | "
                f"{share:.0%} | `{cover}` {covered}/{len(gained)} | {verdict} |"
            )
    if not lines:
        return []
    return [
        "",
        f"**Gains split by the shortcut** (problems the shortcut's 1st answer `{shortcut['form']}`"
        " solves, and the rest: problems, gained / lost against the control; a gain with >= "
        f"{SHORTCUT_SHARE:.0%} of its gained problems in shortcut-solvable ones is labelled so; "
        "the last form column is the fixed form that solves the most gained problems, found on "
        "the held-out problems, so descriptive only):",
        "",
        "| comparison | try | shortcut solves | shortcut does not | gains in shortcut problems "
        "| best-covering form | gain |",
        "|---|---|---|---|---|---|---|",
        *lines,
    ]


def retry_lines(evidence: Evidence) -> list[str]:
    """Per arm with a retry: failures fixed on the retry, and retries that repeat the answer."""
    lines = []
    for (arm, seed), outcomes in sorted(
        evidence.outcomes.items(), key=lambda kv: (ARMS.index(kv[0][0]), kv[0][1])
    ):
        if arm == "best_of_2" or evidence.from_rows:
            continue
        failed = [r for r in outcomes.values() if not r["correct"][0]]
        retried = [r for r in failed if len(r["answers"]) > 1]
        fixed = sum(r["correct"][1] for r in retried)
        same = sum(
            r["answers"][1] is not None and r["answers"][1] == r["answers"][0] for r in retried
        )
        none = sum(r["answers"][1] is None for r in retried)
        lines.append(
            f"| {arm} | {seed or '-'} | {len(failed)} | {fixed} | {same} of {len(retried)} | "
            f"{none} |"
        )
    if not lines:
        return []
    return [
        "",
        "**Retries** (greedy; failures of the 1st attempt, those fixed by the 2nd, and 2nd "
        "answers equal to the 1st attempt's answer, compared in the verifier's canonical form):",
        "",
        "| arm | seed | 1st-try failures | fixed on the retry | retries repeating the 1st answer "
        "| retries without an answer |",
        "|---|---|---|---|---|---|",
        *lines,
    ]


def answer_form_lines(evidence: Evidence) -> list[str]:
    """Per arm and seed: how many 1st answers are a fixed form's answer, by form family."""
    shortcut = evidence.shortcut
    if not shortcut or evidence.from_rows:
        return []
    lines = []
    for (arm, seed), outcomes in sorted(
        evidence.outcomes.items(), key=lambda kv: (ARMS.index(kv[0][0]), kv[0][1])
    ):
        counts: dict[str, int] = {}
        matched = 0
        for index, record in outcomes.items():
            answer = record["answers"][0] if record["answers"] else None
            kinds = {
                shortcut["families"][name]
                for name, answers in shortcut["answers"].items()
                if answer is not None and answers.get(index) == answer
            }
            matched += bool(kinds)
            for kind in kinds:
                counts[kind] = counts.get(kind, 0) + 1
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"`{kind}` {n}" for kind, n in top) or "-"
        lines.append(f"| {arm} | {seed or '-'} | {matched} of {len(outcomes)} | {shown} |")
    return [
        "",
        "**1st answers that are a fixed form's answer** (the same canonical answer as one of "
        f"the {shortcut['forms']} fixed forms on that problem; by form family):",
        "",
        "| arm | seed | fixed-form answers | most common families |",
        "|---|---|---|---|",
        *lines,
    ]


def rrr_scope(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    """The adapter scope of the RRR rows, else the run's ``--rrr-adapter-scope``.

    Rows from before ``rrr_adapter_scope`` was recorded used ``all``.
    """
    scopes = {r.get("rrr_adapter_scope", "all") for r in rows if r["arm"] == "rrr"}
    return ", ".join(sorted(scopes)) if scopes else args.rrr_adapter_scope


def resample_batch_sentence(rows: Sequence[dict[str, Any]]) -> str:
    """Which RRR seeds generated several replacement groups per round (``--rrr-resample-batch``).

    Empty where every seed drew them one at a time (rows from before the option: 1).
    """
    by_batch: dict[int, list[str]] = {}
    for row in rows:
        by_batch.setdefault(row.get("rrr_resample_batch", 1), []).append(str(row["seed"]))
    if set(by_batch) <= {1}:
        return ""
    parts = [
        f"seed {', '.join(seeds)}: "
        + ("one at a time" if batch == 1 else f"up to {batch} together")
        for batch, seeds in sorted(by_batch.items())
    ]
    return (
        " RRR-GRPO's replacement groups per round of dynamic sampling (`--rrr-resample-batch`; "
        "the group trained on is picked as one at a time would, with fewer engine loads): "
        + "; ".join(parts)
        + "."
    )


def reused_sentence(rows: Sequence[dict[str, Any]]) -> str:
    """Which rows came from another folder (``--reuse-from``), and as what."""
    by_folder: dict[str, list[str]] = {}
    for row in rows:
        origin = row.get("reused_from")
        if not origin:
            continue
        what = f"{row['arm']}" + (f" seed {row['seed']}" if row["seed"] else "")
        if "snapshot_minutes" in origin:
            what += (
                f" (the {origin['snapshot_minutes']:g}-min snapshot of its "
                f"{origin['budget_minutes']:g}-min run: a constant learning rate and a stop after "
                "the step that passes the budget make it the policy a run of this budget ends "
                "with)"
            )
        by_folder.setdefault(origin["folder"], []).append(what)
    return "".join(
        f" Reused from `{folder}` (`--reuse-from`, the same evaluation protocol and training "
        f"options): {', '.join(names)}."
        for folder, names in by_folder.items()
    )


def _per_seed(values: Iterable[Any]) -> str:
    """Per-seed figures joined by " / ", "-" for a missing one, or one "-" if all are."""
    shown = ["-" if v is None else str(v) for v in values]
    return "-" if all(v == "-" for v in shown) else " / ".join(shown)


def render(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    command: str,
    evidence: Evidence | None = None,
) -> str:
    """The markdown report.

    Args:
        rows: The rows of ``results.jsonl``.
        args: The run's options.
        command: The command that reproduces the rows.
        evidence: Per-problem outcomes and the shortcut arm (:func:`gather_evidence`);
            default: from the rows alone (:func:`evidence_from_rows`), without a shortcut.
    """
    evidence = evidence or evidence_from_rows(rows)
    shortcut = evidence.shortcut
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_arm.setdefault(row["arm"], []).append(row)
    machine = rows[0]["machine"]
    lines = [
        f"# RRR vs RISE: {args.model} on {args.env} {args.env_kwargs}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_line(machine)}",
        *other_cpus(rows),
        "",
        f"Budget per method and seed: {args.budget_minutes:g} wall-clock minutes of training "
        "(collection included, evaluation excluded), LoRA r "
        f"{args.lora_r} / alpha {args.lora_alpha}, learning rate {args.learning_rate:g} "
        "(constant) for both. Evaluation: greedy, the first "
        f"{args.eval_n} distinct problems of the `{args.eval_split}` split, "
        f"{args.attempt_max_tokens} tokens per answer"
        + (f" ({retry_tokens(args)} per retry, also in training)" if args.retry_max_tokens else "")
        + f", {args.reflection_max_tokens} per reflection, every model merged and cast "
        f"to {args.eval_dtype}"
        + (
            ", except RRR-GRPO's LoRA adapter, trained and used for reflections only "
            "(`--rrr-adapter-scope reflection`): kept unmerged and switched off for its "
            "attempts and retries, which come from the base model."
            if rrr_scope(rows, args) == "reflection"
            else "."
        )
        + (
            " A retry after a reflection sees the task and the reflection, not the failed "
            "attempt (`--retry-context reflection`), in RRR's training and evaluation."
            if reflect_options(args)
            else ""
        )
        + (
            f" Generation engine of every evaluation: {engine} (`--engine`)."
            if (engine := rows[-1].get("eval_engine", "torch")) != "torch"
            else ""
        )
        + (
            f" Generation engine of both methods' training rollouts: {args.train_engine} "
            "(`--train-engine`)."
            if args.train_engine != "torch"
            else ""
        )
        + "".join(
            f" {r['arm']} seed {r['seed']} trained with {r['train_engine_used']} rollouts "
            f"(`--train-engine {r['train_engine']}` could not start)."
            for r in rows
            if r.get("train_engine_used", r.get("train_engine")) != r.get("train_engine")
        )
        + (
            " RRR-GRPO's reflections cut at the token limit are trained "
            + {"mask": "without loss", "penalize": "with 1 subtracted from their reward"}[
                args.rrr_truncated_reflections
            ]
            + f" (`--rrr-truncated-reflections {args.rrr_truncated_reflections}`)."
            if args.rrr_truncated_reflections != "keep"
            else ""
        )
        + (
            f" RRR-GRPO collected its failures at temperature {args.rrr_collect_temperature:g} "
            "(`--rrr-collect-temperature`)."
            if args.rrr_collect_temperature is not None
            else ""
        )
        + resample_batch_sentence(by_arm.get("rrr", []))
        + (
            " Updates: optimizer steps that moved the weights (`u of s`: s batches, the rest "
            "skipped for lack of reward variance); train tokens: every generated token of "
            "every drawn group (RRR-GRPO: estimated at each step's trained-batch mean lengths)."
            if any(r.get("steps") is not None for r in rows)
            else ""
        )
        + reused_sentence(rows),
        "",
        "| arm | seeds | 1st try | 2nd try | train min | updates | train tokens | "
        "eval tokens / item |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        group = by_arm.get(arm)
        if not group:
            continue
        train_min = [r["train_seconds"] / 60 for r in group if "train_seconds" in r]
        # One entry per seed, in seed order, "-" where a seed lacks the figure (rows reused
        # from older runs may): a lone figure must not read as every seed's.
        seeded = sorted(group, key=lambda r: r["seed"])
        any_skipped = any(r.get("steps", r.get("updates")) != r.get("updates") for r in seeded)
        updates = _per_seed(
            (f"{r['updates']} of {r.get('steps', r['updates'])}" if any_skipped else r["updates"])
            if "updates" in r
            else None
            for r in seeded
        )
        tokens = _per_seed(r.get("train_generated_tokens") for r in seeded)
        lines.append(
            f"| {LABELS[arm]} | {len(group)} | {_mean_sd([r['first_try'] for r in group])} | "
            f"{_mean_sd([r['second_try'] for r in group])} | "
            f"{_mean_sd(train_min) if train_min else '-'} | "
            f"{updates} | {tokens} | "
            f"{sum(r['eval_generated_tokens'] for r in group) / sum(r['items'] for r in group):.0f}"
            " |"
        )
    if shortcut:
        outcomes = shortcut["outcomes"].values()
        lines.append(
            f"| shortcut: fixed form `{shortcut['form']}`, 2nd answer `{shortcut['second_form']}` "
            f"(model-free, chosen on {shortcut['chosen_on']}) | - | "
            f"{sum(o['first'] for o in outcomes) / len(outcomes):.3f} | "
            f"{sum(o['second'] for o in outcomes) / len(outcomes):.3f} | - | - | - | 0 |"
        )
        lines.append(
            f"| any of the {shortcut['forms']} fixed forms (upper bound, chosen with hindsight) "
            f"| - | - | {len(shortcut['any_form']) / len(outcomes):.3f} | - | - | - | 0 |"
        )
        lines += [
            "",
            f"The shortcut arm answers every problem with one fixed form, chosen on the first "
            f"{shortcut['chosen_on_items']} distinct problems of the `{shortcut['chosen_on']}` "
            f"split (1st try {shortcut['chosen_on_first']:.3f} there, with its 2nd answer "
            f"{shortcut['chosen_on_second']:.3f}), and is scored on the same held-out problems "
            "by the same verifier (`rrr_env.shortcuts`).",
        ]
    per_seed = []
    for a, b in PAIRS:
        for row in by_arm.get(a, []):
            others = [r for r in by_arm.get(b, []) if r["seed"] in (row["seed"], 0)]
            if not others:
                continue
            mine, theirs = set(row["solved_second"]), set(others[0]["solved_second"])
            gained, lost = len(mine - theirs), len(theirs - mine)
            per_seed.append(
                f"| {a} vs {b} | {row['seed'] or '-'} | {gained} | {lost} | "
                f"{sign_test(gained, lost):.2g} |"
            )
    arms = [arm for arm in ARMS if arm in by_arm]
    lines += problem_lines(evidence, arms)
    if per_seed:
        lines += [
            "",
            "Per seed, on the 2nd try (items solved by one seed against the control; exact "
            "two-sided sign test; seeds share the problems, so their counts are not added up: "
            "the problem-level table above is the evidence over seeds):",
            "",
            "| comparison | seed | gained | lost | p |",
            "|---|---|---|---|---|",
            *per_seed,
        ]
    lines += gain_split_lines(evidence, arms)
    lines += retry_lines(evidence)
    lines += answer_form_lines(evidence)
    traced = [r for arm in TRAINED_ARMS for r in by_arm.get(arm, []) if r.get("held_out_curve")]
    if traced:
        lines += [
            "",
            "Held-out accuracy during training (1st / 2nd try; policy snapshots evaluated with "
            "the same protocol; the first point is the arm's untrained control):",
            "",
        ]
        for row in traced:
            start = (by_arm.get(CURVE_START[row["arm"]]) or [None])[0]
            shown = ", ".join(
                f"{m:.1f} min {p['first_try']:.3f} / {p['second_try']:.3f}"
                for m, p in curve_points(row, start)
            )
            lines.append(f"- {row['arm']} seed {row['seed']}: {shown}")
    curves = [r for r in by_arm.get("rrr", []) if r.get("curve")]
    if curves:
        lines += ["", "RRR retry success of the sampled groups by step:", ""]
        for row in curves:
            points = ", ".join(f"{p['step']}: {p['retry_success']:.2f}" for p in row["curve"])
            lines.append(f"- seed {row['seed']}: {points}")
            flat = [p["zero_variance"] for p in row["curve"] if p.get("zero_variance") is not None]
            if flat:
                lines.append(
                    f"  (groups with no reward variance, hence no gradient: "
                    f"{sum(flat) / len(flat):.0%} over {len(flat)} steps)"
                )
            drawn = [p for p in row["curve"] if p.get("group_draws") is not None]
            if drawn and any(p["group_draws"] > 1 for p in drawn):
                total = sum(p["group_draws"] for p in drawn)
                draws = total / len(drawn)
                # Over all drawn groups: each step's share weighted by the groups it drew.
                share = sum(p["drawn_zero_variance"] * p["group_draws"] for p in drawn) / total
                lines.append(
                    f"  (dynamic sampling: {draws:.1f} groups drawn per trained group, "
                    f"{share:.0%} of drawn groups without reward variance)"
                )
    lines += [
        "",
        "![accuracy vs training wall time](accuracy.png)",
        "",
        "The papers, for scale: " + PAPER_FIGURES,
        "",
    ]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, shortcut: dict[str, Any] | None = None) -> None:
    """Accuracy vs training wall time: each method from the base model to its trained policy.

    The controls (and the model-free ``shortcut`` arm, if given) are horizontal lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = {r["arm"]: r for r in rows if r["seed"] == 0}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, title in zip(
        axes, ("first_try", "second_try"), ("1st try", "2nd try"), strict=True
    ):
        for arm, color in (("rrr", "C0"), ("rise", "C1")):
            start = base.get(CURVE_START[arm])
            for row in (r for r in rows if r["arm"] == arm):
                points = curve_points(row, start)
                xs, ys = [m for m, _ in points], [p[key] for _, p in points]
                ax.plot(xs, ys, "o-", color=color, label=f"{arm} seed {row['seed']}")
        for arm, style in (("fixed_reflection", ":"), ("best_of_2", "--")):
            if arm in base:
                ax.axhline(base[arm][key], color="grey", linestyle=style, label=LABELS[arm])
        if shortcut:
            outcomes = shortcut["outcomes"].values()
            level = sum(o[key.removesuffix("_try")] for o in outcomes) / len(outcomes)
            ax.axhline(level, color="C3", linestyle="-.", label=f"shortcut `{shortcut['form']}`")
        ax.set_title(title)
        ax.set_xlabel("training wall time (min)")
    axes[0].set_ylabel("accuracy (held-out)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------


def row_args(row: dict[str, Any]) -> argparse.Namespace:
    """The options a row was made with: its command, and the values the row records."""
    words = shlex.split(row["command"])
    args = parse_args(words[words.index("benchmarks.rrr_vs_rise") + 1 :])
    args.eval_dtype = row.get("eval_dtype", args.eval_dtype)
    args.engine = row.get("eval_engine", "torch")
    return args


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of ``results.jsonl`` (a torn last line from a kill is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every arm not yet in ``results.jsonl``, then write the report and plot."""
    from agents.models import load_model_and_tokenizer

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.render_only:
        return render_only(args.out_dir)
    command = command_line("benchmarks.rrr_vs_rise", argv)
    out = args.out_dir
    results = out / "results.jsonl"
    rows = read_rows(results)
    done = {(r["arm"], r["seed"]) for r in rows}
    reused = preflight(lambda: check_all(args, done, command))
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    if reused is not None:
        from benchmarks.harness_reuse import reuse_rows

        rows += reuse_rows(reused, results)
        done |= {(r["arm"], r["seed"]) for r in reused.rows}
    common = {
        "env": args.env,
        "env_kwargs": args.env_kwargs,
        "model": args.model,
        "budget_minutes": args.budget_minutes,
        "eval_n": args.eval_n,
        "eval_dtype": args.eval_dtype,
        "eval_engine": args.engine,
        "retry_max_tokens": retry_tokens(args),
        "command": command,
        **reflect_options(args),
    }

    def episodes(arm: str, seed: int) -> Path:
        return out / "episodes" / f"{arm}__seed{seed}.jsonl"

    def finish(arm: str, seed: int, fields: dict[str, Any]) -> None:
        row = {"arm": arm, "seed": seed, **common, **fields}
        row["machine"] = machine_info(MEASURED_CODE, PACKAGES)
        row["python"] = platform.python_version()
        append_lines(results, [row])
        rows.append(row)
        print(f"{arm} seed {seed}: 1st {row['first_try']:.3f} 2nd {row['second_try']:.3f}")

    controls = [a for a in CONTROL_ARMS if a in args.arms and (a, 0) not in done]
    if controls:
        base, tokenizer = load_model_and_tokenizer(args.model, dtype="float32")
        model = eval_model(base, args)
        del base
        for arm in controls:
            replay = replay_source(arm, args, rows)
            scores = run_eval(arm, model, tokenizer, args, episodes(arm, 0), 0, "all", replay)
            finish(arm, 0, scores)
        del model
    for seed in range(1, args.seeds + 1):
        for arm, trainer in (("rrr", train_rrr), ("rise", train_rise)):
            if arm not in args.arms or (arm, seed) in done:
                continue
            state, where = run_state(arm, args, seed)
            if state == "finished":
                # Killed during its evaluations: the saved policy and snapshots are evaluated,
                # each evaluation resuming from its episode file.
                trained = json.loads((where / TRAINED_FILE).read_text())
                print(f"{arm} seed {seed}: trained in {where}; evaluating what is missing")
            else:
                # Evaluations start once training finished: episodes of a seed that trains
                # (afresh or from a checkpoint) came from another policy.
                stale = [episodes(arm, seed), *(out / "episodes").glob(f"{arm}__seed{seed}__*")]
                for path in stale:
                    path.unlink(missing_ok=True)
                trained = trainer(args, seed)
                del trained["policy"], trained["tokenizer"]
                gc.collect()  # the trainer's reference cycles hold gigabytes until collected
                write_trained(Path(trained["run_dir"]), trained)
            run_dir = Path(trained["run_dir"])
            # The saved policy, as its rrr_policy.json says (an adapter for reflections only
            # stays unmerged), the same weights as the trainer's: a rerun evaluates the same.
            model, tokenizer, scope = load_eval_policy(arm, final_policy(arm, run_dir), args)
            fields = {"train_engine": args.train_engine}
            if arm == "rrr":
                fields["rrr_adapter_scope"] = scope
                fields["rrr_truncated_reflections"] = args.rrr_truncated_reflections
                fields["rrr_collect_temperature"] = rrr_collect_temperature(args)
                fields["rrr_resample_batch"] = args.rrr_resample_batch
            replay = replay_source(arm, args, rows, scope)
            scores = run_eval(arm, model, tokenizer, args, episodes(arm, seed), seed, scope, replay)
            del model
            gc.collect()
            curve = held_out_curve(arm, seed, run_dir, args, out / "episodes", rows)
            finish(arm, seed, {**trained, **fields, **scores, "held_out_curve": curve})
    if rows:
        write_report(rows, args, command, out)
        print((out / "report.md").read_text())
    return rows


def check_all(args: argparse.Namespace, done: set[tuple[str, int]], command: str) -> Reused | None:
    """Every check before a model loads; returns what ``--reuse-from`` takes (or ``None``)."""
    check_arms(args)
    check_resume(args)
    reused = None
    if args.reuse_from is not None:
        from benchmarks.harness_reuse import plan_reuse

        reused = plan_reuse(args, args.reuse_from, done, command)
        done = done | {(r["arm"], r["seed"]) for r in reused.rows}
    check_runs(args, done)
    return reused


def write_report(
    rows: list[dict[str, Any]], args: argparse.Namespace, command: str, out: Path
) -> None:
    """``report.md``, ``accuracy.png`` and the model-free shortcut arm's ``shortcut.json``."""
    evidence = gather_evidence(rows, out, args)
    if evidence.shortcut:
        kept = {k: v for k, v in evidence.shortcut.items() if k not in ("answers", "outcomes")}
        (out / "shortcut.json").write_text(json.dumps(kept, indent=1) + "\n")
    (out / "report.md").write_text(render(rows, args, command, evidence))
    plot(rows, out / "accuracy.png", evidence.shortcut)


def render_only(out: Path) -> list[dict[str, Any]]:
    """Rewrite the report of ``out`` from its rows and episodes, loading no model.

    The run's options come from the command of the last row (the rows of one folder share
    their evaluation settings; later commands add arms or seeds).
    """
    rows = read_rows(out / "results.jsonl")
    if not rows:
        print(f"error: no rows in {out / 'results.jsonl'}", file=sys.stderr)
        raise SystemExit(2)
    args = row_args(rows[-1])
    args.out_dir = out
    write_report(rows, args, rows[-1]["command"], out)
    print(f"wrote {out / 'report.md'}")
    return rows


if __name__ == "__main__":
    main()
