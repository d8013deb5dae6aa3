"""RRR-GRPO: train the reflection with GRPO, rewarded by whether the retry succeeds.

    python -m agents.grpo_reflect                          # CPU demo: default model and task
    python -m agents.grpo_reflect --config agents/configs/grpo_reflect_countdown.yaml
    python -m agents.grpo_reflect --config agents/configs/grpo_reflect_h100.yaml --dry-run
    accelerate launch --config_file agents/configs/accelerate_deepspeed_zero3.yaml \\
        -m agents.grpo_reflect --config agents/configs/grpo_reflect_h100.yaml

The method of Reflect, Retry, Reward (arXiv 2505.24726) on TRL's ``GRPOTrainer``, through its
public extension points only:

- The train set is a dataset of failures (``agents.collect_failures``, or ``--collect``): each
  row's ``prompt`` is the conversation up to and including the reflection request.
- TRL's sampler repeats each prompt ``num_generations`` times (one GRPO group) and hands the
  batch to :class:`ReflectRetryRollout`, our ``rollout_func``. It samples one reflection per
  prompt (one batched generation call), continues each episode in the ``rrr/*`` env (which
  poses the task again), samples the retries (a second batched call) and lets the env's
  verifier grade them.
- The completion TRL trains on is the reflection alone (``credit="reflection"``, the paper), or
  reflection + retry with ``env_mask`` zeroing the retry prompt's tokens
  (``credit="reflection+retry"``, an ablation). The reward function :func:`retry_success`
  reads the env's verdict (an extra rollout field): 1.0 if the retry is correct, else 0.0.

Generation uses the trainer's own model (transformers ``generate``, bf16 autocast where the
device supports it, in eval mode: no dropout), or TRL's vLLM engine with ``--use_vllm``
(colocate or server mode), for both the reflection and the retry. With ``--adapter_scope
reflection`` only the reflection uses the LoRA adapter; the retry comes from the base model.

A batch without reward variance takes no optimizer step (:class:`SkipStepsWithoutSignal`):
GRPO gives it no advantage, and an AdamW step on it would still move the weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import rrr_env
from agents.backends import ADAPTER_SCOPES
from agents.grpo_callbacks import (
    SPENT_FILE,
    RecordSpentTime,
    SkipStepsWithoutSignal,
    StepChanges,
    TimeBudget,
    TimeSnapshots,
    format_steps,
    rank0_decision,
    reflect_trainer_class,
    resume_checkpoint,
)
from agents.grpo_reflect_config import (
    CPU_RECIPE_LEARNING_RATE,
    CREDIT_MODES,
    PAPER_LEARNING_RATE,
    TRUNCATED_REFLECTIONS,
    TRUNCATION_PENALTY,
    GRPOReflectConfig,
    apply_cpu_recipe,
    check_launch,
)
from agents.grpo_rollout import ReflectRetryRollout, retry_success
from agents.reflection_rollout import EPISODE_OPTIONS, TokenGenerator
from agents.snapshots import POLICY_FILE

logger = logging.getLogger(__name__)
#: In ``output_dir``: every training episode (``--save_train_episodes``).
TRAIN_EPISODES = "train_episodes.jsonl"
gym.register_envs(rrr_env)

# The configuration lives in agents/grpo_reflect_config.py (as TRL's grpo_config.py), the
# rollout in agents/grpo_rollout.py and the trainer's callbacks in agents/grpo_callbacks.py;
# their public names are re-exported here.


# -- data, evaluation, training --------------------------------------------------------------


def load_failures(path: str | Path) -> Any:
    """The dataset of failures at ``path`` as a ``datasets.Dataset``.

    ``path`` is an ``agents.collect_failures`` output folder, a ``save_to_disk`` folder, or a
    JSONL file of rows with ``prompt`` and ``index``.
    """
    import datasets

    path = Path(path)
    if path.is_dir() and (path / "dataset").is_dir():
        path = path / "dataset"
    if path.is_dir():
        dataset = datasets.load_from_disk(str(path))
    elif path.is_file():
        with path.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        dataset = datasets.Dataset.from_list(rows)
    else:
        raise FileNotFoundError(f"no dataset of failures at {path}")
    missing = {"prompt", "index"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"the dataset at {path} lacks the columns {sorted(missing)}")
    if len(dataset) == 0:
        raise ValueError(f"the dataset of failures at {path} is empty")
    return dataset


def _loaded_summary(dataset: Any, path: str | Path) -> str:
    """What a dataset of failures holds, in the words of :func:`collect_failures`'s log.

    A folder written by ``agents.collect_failures`` also says how many queries and first
    attempts were sampled; any other dataset says how many queries its failures come from.
    """
    from agents.collect_failures import collection_summary

    if (Path(path) / "progress.jsonl").is_file() and (Path(path) / "failures.jsonl").is_file():
        return collection_summary(path)
    return f"{len(dataset)} failures from {len(set(dataset['index']))} queries"


def _autocast(bf16: bool, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def collect_failures(args: GRPOReflectConfig, model: Any, tokenizer: Any) -> Any:
    """Build (or resume) the dataset of failures in ``<output_dir>/failures``.

    Sampling is seeded with ``args.seed``: a rerun with the same seed and options on the same
    machine collects the same failures.
    """
    from agents.collect_failures import CollectArgs, collect, collection_summary
    from agents.engines import make_backend

    extra = json.loads(args.env_kwargs)
    collect_args = CollectArgs(
        env=args.env_id,
        model=args.model,
        split=args.train_split,
        env_kwargs=json.dumps(extra),
        n=args.collect_n,
        samples_per_query=args.samples_per_query,
        failures_per_query=args.failures_per_query,
        min_successes=args.min_successes,
        round_size=min(8, args.samples_per_query),
        temperature=args.collect_temperature,
        max_new_tokens=args.attempt_max_tokens,
        batch_size=args.rollout_batch_size or 64,
        seed=args.seed,
        output_dir=str(Path(args.output_dir) / "failures"),
    )
    backend = make_backend(
        args.engine, model, tokenizer, batch_size=collect_args.batch_size, seed=collect_args.seed
    )
    logger.info(
        "collecting failures: up to %d first attempts on each of %d queries -> %s",
        args.samples_per_query,
        args.collect_n,
        collect_args.output_dir,
    )
    with _autocast(args.bf16, model.device)():
        rows = collect(collect_args, backend)  # a bar of finished queries
    logger.info("collected %s", collection_summary(collect_args.output_dir))
    if not rows:
        raise ValueError(
            f"the model failed none of the {args.collect_n} queries; raise --collect_n or pick a "
            "harder --env_kwargs"
        )
    return load_failures(collect_args.output_dir)


def evaluate_model(
    args: GRPOReflectConfig, model: Any, tokenizer: Any, name: str
) -> dict[str, Any] | None:
    """Greedy 1st-try / 2nd-try accuracy on ``eval_n`` items of the held-out split.

    Results go to ``<output_dir>/eval_<name>/`` (``episodes.jsonl``, ``metrics.json``).
    """
    if args.eval_n == 0:
        return None
    from agents.engines import make_backend
    from agents.evaluate import evaluate
    from agents.items import distinct_indices
    from agents.models import generation_model
    from agents.rollout import PhaseSampling, SamplingParams

    options = args.env_options(held_out=True)
    # Distinct problems: a generator's small problem space repeats items.
    indices = distinct_indices(lambda: gym.make(args.env_id, **options), args.eval_n)
    output = Path(args.output_dir) / f"eval_{name}"
    output.mkdir(parents=True, exist_ok=True)
    answer = SamplingParams(args.attempt_max_tokens, temperature=0.0)
    sampling = PhaseSampling(
        attempt=answer,
        reflection=SamplingParams(args.max_completion_length, temperature=0.0),
        retry=SamplingParams(args.retry_max_tokens, temperature=0.0),
    )
    # On a CPU, evaluate a merged bf16 copy (LoRA folded in), before and after alike, as the
    # head-to-head does: bf16 decodes 1.15x faster than fp32 weights under autocast
    # (generation_speed.md) at ~1 GB more peak memory (main_job.md).
    # Under --adapter_scope reflection only reflections use the adapter: no merged copy, the
    # adapter is switched off per phase (before training there is none: the base answers all).
    scoped = args.adapter_scope == "reflection" and hasattr(model, "disable_adapter")
    # An engine exports the weights itself (merged on the fly): no copy either.
    copy = args.bf16 and model.device.type == "cpu" and not scoped and args.engine == "torch"
    policy = generation_model(model, torch.bfloat16) if copy else model
    backend = make_backend(
        args.engine,
        policy,
        tokenizer,
        batch_size=args.rollout_batch_size or 64,
        adapter_scope="reflection" if scoped else "all",
        reflection_request=gym.make(args.env_id, **options).unwrapped.task.reflection_request,
    )
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    logger.info(
        "evaluating %s training: %d items of %s -> %s",
        name,
        len(indices),
        args.eval_split,
        output,
    )
    with contextlib.nullcontext() if copy else _autocast(args.bf16, model.device)():
        _, metrics = evaluate(
            lambda: gym.make(args.env_id, **options),
            backend,
            indices,
            sampling=sampling,
            episodes_path=output / "episodes.jsonl",
        )  # a bar of finished episodes
    model.train(was_training)
    metrics["seconds"] = time.perf_counter() - started
    logger.info(
        "evaluated %s training in %.0f s: 1st try %.3f, 2nd try %.3f",
        name,
        metrics["seconds"],
        metrics["rrr"]["first_try"],
        metrics["rrr"]["second_try"],
    )
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def build_trainer(
    args: GRPOReflectConfig,
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    *,
    peft_config: Any = None,
    callbacks: list[Any] | None = None,
    generator_factory: Callable[[Any], Any] | None = None,
    retry_generator: TokenGenerator | None = None,
) -> Any:
    """A ``GRPOTrainer`` wired with :class:`ReflectRetryRollout` and :func:`retry_success`.

    ``generator_factory`` replaces the trainer's own generation, ``retry_generator`` the
    retry's alone (see :class:`ReflectRetryRollout`).
    """
    per_batch = args.generation_batch_size // args.num_generations
    if len(train_dataset) < per_batch:
        raise ValueError(
            f"each generation batch needs {per_batch} distinct failures (generation_batch_size "
            f"{args.generation_batch_size} / num_generations {args.num_generations}) but the "
            f"dataset has {len(train_dataset)}; collect more failures or lower "
            "--per_device_train_batch_size / --gradient_accumulation_steps"
        )
    options = args.env_options()
    rollout = ReflectRetryRollout(
        lambda: gym.make(args.env_id, **options),
        train_dataset.select_columns(["prompt", "index"]).to_list(),
        retry_max_tokens=args.retry_max_tokens,
        credit=args.credit,
        rollout_batch_size=args.rollout_batch_size,
        retry_temperature=args.retry_temperature,
        retry_top_p=args.retry_top_p,
        resample_groups=args.resample_groups,
        resample_batch=args.resample_batch,
        seed=args.seed,
        generator_factory=generator_factory,
        retry_generator=retry_generator,
        sample_with_dropout=args.sample_with_dropout,
        adapter_scope=args.adapter_scope,
        engine=args.engine,
        truncated_reflections=args.truncated_reflections,
        episodes_path=Path(args.output_dir) / TRAIN_EPISODES if args.save_train_episodes else None,
    )
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental"
    trainer = reflect_trainer_class()(
        model=model,
        reward_funcs=[retry_success],
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        rollout_func=rollout,
    )
    skip = args.skip_steps_without_signal
    # DeepSpeed's engine steps inside backward; fp16's grad scaler may refuse a step without
    # gradients. Neither can skip a step this way.
    unsupported = "DeepSpeed" if trainer.is_deepspeed_enabled else "--fp16" if args.fp16 else None
    if skip and unsupported:
        raise ValueError(
            f"--skip_steps_without_signal cannot skip a step under {unsupported}; use "
            "--skip_steps_without_signal false"
        )
    if skip is None:
        skip = unsupported is None
    if skip:
        # Each optimizer step's micro-batches come from one generation batch when generations
        # start on step boundaries: a step without signal is then known at its first loss.
        aligned = args.steps_per_generation % args.gradient_accumulation_steps == 0
        trainer.signal_skip = SkipStepsWithoutSignal(rollout, leave_loss_uncomputed=aligned)
        trainer.add_callback(trainer.signal_skip)
    trainer.add_callback(StepChanges(rollout, args.num_generations))  # after the skip
    if args.adapter_scope == "reflection" and not hasattr(trainer.model, "disable_adapter"):
        raise ValueError(
            "--adapter_scope reflection needs a LoRA adapter to switch off for the retries; "
            "pass --use_peft (or keep the CPU recipe)"
        )
    return trainer


def load_policy(args: GRPOReflectConfig, model_args: Any, num_processes: int) -> tuple[Any, Any]:
    """The policy and its tokenizer, for this launch.

    One process: the model object, loaded here (it also collects and evaluates). Several
    processes (DDP, DeepSpeed ZeRO-3): the model's folder or hub id, so that TRL loads it
    itself with ``model_init_kwargs`` (the path TRL supports under ZeRO-3).
    """
    from agents.models import load_model_and_tokenizer, resolve_model

    dtype = model_args.dtype or "float32"
    if num_processes == 1:
        model, tokenizer = load_model_and_tokenizer(args.model, dtype=dtype)
        if model_args.attn_implementation is not None:
            model.set_attn_implementation(model_args.attn_implementation)
        return model, tokenizer
    from transformers import AutoTokenizer

    resolved = resolve_model(args.model)
    if resolved.gguf_file is not None:
        raise ValueError(
            "multi-process training loads models with from_pretrained; convert the .gguf file "
            "to a folder first (or use a bundled name, which is converted for you)"
        )
    args.model_init_kwargs = {"dtype": dtype, **(args.model_init_kwargs or {})}
    if model_args.attn_implementation is not None:
        args.model_init_kwargs.setdefault("attn_implementation", model_args.attn_implementation)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return resolved.path, tokenizer


def train(args: GRPOReflectConfig, model_args: Any = None) -> dict[str, Any]:
    """Collect (or load) failures, evaluate, train with RRR-GRPO, evaluate again.

    Collection and the before / after evaluation run only in single-process launches; under
    ``accelerate launch`` with several processes, pass ``--failures_path`` and evaluate the
    saved model with ``python -m agents.evaluate``.

    Args:
        args: The configuration.
        model_args: TRL's ``ModelConfig`` (dtype, attention implementation, LoRA options).

    Returns:
        ``{"before": metrics, "after": metrics, "train_seconds": ..., "steps": ...}``;
        ``train_seconds`` covers collection and training (what ``max_minutes`` bounds; a run
        resumed from a checkpoint adds the seconds spent before it), and
        ``"model"`` holds the trained model object (it is not written to ``result.json``).
    """
    from accelerate import PartialState
    from trl import ModelConfig, get_peft_config

    model_args = apply_cpu_recipe(args, model_args or ModelConfig())
    if model_args.model_name_or_path not in (None, args.model):
        raise ValueError("pass the model with --model (not --model_name_or_path)")
    state = PartialState()
    single = state.num_processes == 1
    if args.collect and not single:
        raise ValueError(
            "--collect runs in one process; build the failures first (python -m "
            "agents.collect_failures ... --output-dir DIR) and pass --failures_path DIR"
        )
    if args.dry_run:
        model, tokenizer, note = dry_run_policy(args, model_args, state.num_processes)
        result = dry_run(args, model_args, model, tokenizer, state.num_processes)
        result["notes"] += [note] if note else []
        return result
    checkpoint, spent_before = resume_checkpoint(args)
    model, tokenizer = load_policy(args, model_args, state.num_processes)
    started = time.perf_counter()
    if args.collect:
        dataset = collect_failures(args, model, tokenizer)  # logs its summary
    else:
        dataset = load_failures(args.failures_path)
        summary = _loaded_summary(dataset, args.failures_path)
        logger.info("loaded %s from %s", summary, args.failures_path)
        note = screened_note(args)
        if note is not None:
            logger.info("training on %s", note)

    collect_seconds = time.perf_counter() - started
    before = evaluate_model(args, model, tokenizer, "before") if single else None
    peft_config = get_peft_config(model_args)
    # The budget covers collection and training, not the evaluation in between; a resumed
    # run adds what its checkpoint had spent.
    budget_start = time.perf_counter() - collect_seconds - spent_before
    callbacks: list[Any] = [RecordSpentTime(budget_start)]
    if args.max_minutes is not None:
        callbacks.append(TimeBudget(args.max_minutes, budget_start))
    if args.snapshot_minutes:
        marks, run_dir = args.snapshot_minutes, Path(args.output_dir)
        callbacks.append(TimeSnapshots(marks, budget_start, run_dir, tokenizer, spent_before))
    trainer = build_trainer(
        args, model, tokenizer, dataset, peft_config=peft_config, callbacks=callbacks
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = spent_before + collect_seconds + time.perf_counter() - started
    logger.info(
        "trained %d steps in %.0f s; saving the model to %s",
        trainer.state.global_step,
        train_seconds,
        args.output_dir,
    )
    trainer.save_model(args.output_dir)
    if state.is_main_process:
        policy = {"adapter_scope": args.adapter_scope}
        (Path(args.output_dir) / POLICY_FILE).write_text(json.dumps(policy) + "\n")
    # accelerate patched the model's forward with its mixed-precision autocast and fp32 output
    # conversion; the patch travels with copies of the model. Generating from a bf16 copy that
    # kept it took 6.9 s per item against 2.35 s unpatched (benchmarks/rrr_vs_rise, CPU).
    trained = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)

    after = None
    if single:
        stale = Path(args.output_dir) / "eval_after" / "episodes.jsonl"
        stale.unlink(missing_ok=True)  # the model changed since any earlier run
        after = evaluate_model(args, trained, tokenizer, "after")
    else:
        logger.info(
            "multi-process run: evaluate with python -m agents.evaluate --model %s", args.output_dir
        )
    result = {
        "before": before,
        "after": after,
        "train_seconds": train_seconds,
        "collect_seconds": collect_seconds,
        "steps": trainer.state.global_step,
        "failures": len(dataset),
        "failures_source": failures_source(args),
        # What generated the rollouts: --engine, or torch after an engine failed to start.
        "generation_engine": "vllm" if args.use_vllm else trainer.rollout_func.engine,
        "step_changes": _step_changes(trainer),
        "log_history": trainer.state.log_history,
    }
    if state.is_main_process:
        (Path(args.output_dir) / "result.json").write_text(json.dumps(result, indent=2))
    return {**result, "model": trained, "tokenizer": tokenizer}


def screened_note(args: GRPOReflectConfig) -> str | None:
    """What the run's failures are when they are a screened set (``agents.screen_failures``).

    Says which file, whether it is the bundled set the run defaulted to, that its failures
    were screened for reward variance, and the command that made them; None for other data.
    """
    from agents.screen_failures import describe, read_meta

    meta = read_meta(args.failures_path) if args.failures_path and not args.collect else None
    if meta is None:
        return None
    which = "the bundled screened set" if getattr(args, "bundled_failures", False) else ""
    return f"{which or 'the screened set'} {args.failures_path}: {describe(meta)}"


def failures_source(args: GRPOReflectConfig) -> str:
    """Where the failures came from, in a few words (``result.json``, benchmarks)."""
    if args.collect:
        return "collected"
    if getattr(args, "bundled_failures", False):
        return f"bundled {Path(args.failures_path).name}"
    return str(args.failures_path)


def _step_changes(trainer: Any) -> list[dict[str, Any]]:
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, StepChanges):
            return callback.records
    return []


def scripted_failures(args: GRPOReflectConfig, count: int) -> Any:
    """Up to ``count`` failures made by the env from a scripted wrong first attempt.

    The prompts are the env's real reflection requests; only the first attempt is not the
    model's. For :func:`dry_run`, which must not generate.
    """
    import datasets

    env = gym.make(args.env_id, **args.env_options())
    rows = []
    for index in range(min(count, len(env.unwrapped.task))):
        env.reset(options={"index": index})
        prompt, _, _, _, info = env.step("I do not know.")
        if info["phase"] == "reflection":
            rows.append({"prompt": prompt, "index": index})
    return datasets.Dataset.from_list(rows)


class ModelUnavailableError(ValueError):
    """A model (or the stand-in of a dry run) that cannot be had on this machine."""


#: The bundled model whose config and tokenizer make a dry run's stand-in when the hub model's
#: own cannot be read.
STAND_IN_MODEL = "smollm2-135m"
STAND_IN_LAYERS = 2


def dry_run_policy(
    args: GRPOReflectConfig, model_args: Any, num_processes: int
) -> tuple[Any, Any, str | None]:
    """The policy a dry run builds its trainer around, and a note when it is a stand-in.

    Bundled models, local folders and ``.gguf`` files load as in a real run. A Hugging Face
    id is never downloaded: the trainer gets a :data:`STAND_IN_LAYERS`-layer model with
    random weights, from the model's own config and tokenizer where the local cache has them
    (or the hub is reachable: a few small files), else from the bundled
    :data:`STAND_IN_MODEL`'s. That checks the batch arithmetic and the construction of the
    trainer and its rollout function, not the weights or the memory they take.

    Raises:
        ModelUnavailableError: not even the stand-in can be had (one line).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from agents.cli import hub_cached, hub_reachable
    from agents.models import resolve_dtype, resolve_model

    try:
        hub_id = resolve_model(args.model).is_hub_id  # fetches a bundled model once
    except RuntimeError as error:  # a bundled model whose download failed
        raise ModelUnavailableError(f"--model {args.model}: {error}") from None
    if not hub_id:
        return (*load_policy(args, model_args, num_processes), None)
    config = tokenizer = None
    online = not hub_cached(args.model) and hub_reachable()
    if online or hub_cached(args.model):
        try:  # a few small files, from the cache or the hub
            config = AutoConfig.from_pretrained(args.model, local_files_only=not online)
            tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=not online)
            where = f"{args.model}'s own config and tokenizer"
        except OSError:
            config = None
    if config is None:
        try:
            source = resolve_model(STAND_IN_MODEL).path
            config = AutoConfig.from_pretrained(source)
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, RuntimeError, ValueError) as error:
            raise ModelUnavailableError(
                f"--dry-run: {args.model} is not in the local Hugging Face cache and the hub "
                f"is not reachable, and its stand-in {STAND_IN_MODEL} could not be had: {error}"
            ) from None
        where = (
            f"the bundled {STAND_IN_MODEL}'s config and tokenizer ({args.model} is not in "
            "the local Hugging Face cache and the hub was not reachable)"
        )
    config.num_hidden_layers = STAND_IN_LAYERS
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:STAND_IN_LAYERS]
    dtype = resolve_dtype(model_args.dtype or "float32", "cpu")
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    note = (
        f"{args.model}'s weights were not loaded: the trainer was built around a "
        f"{STAND_IN_LAYERS}-layer stand-in with random weights from {where}"
    )
    return model, tokenizer, note


def dry_run(
    args: GRPOReflectConfig, model_args: Any, model: Any, tokenizer: Any, num_processes: int
) -> dict[str, Any]:
    """Build the trainer and its rollout function as :func:`train` does, then stop.

    Nothing is generated, trained or saved. Failures come from ``failures_path``, or are
    scripted from the env when the run would collect them or there are none at that path
    (a dry run needs no real failures). Where vLLM is not installed, the trainer is built
    without its engine (``use_vllm`` off) and the result says so.
    """
    import importlib.util

    from trl import get_peft_config

    notes = []
    per_batch = args.generation_batch_size // args.num_generations
    if args.collect:
        dataset = scripted_failures(args, per_batch)
        source = f"{len(dataset)} scripted failures (a real run collects {args.collect_n} queries)"
    elif not Path(args.failures_path).exists():
        dataset = scripted_failures(args, per_batch)
        source = (
            f"{len(dataset)} scripted failures (none at {args.failures_path}; a real run "
            "needs them there: python -m agents.collect_failures ... --output-dir "
            f"{args.failures_path})"
        )
    else:
        dataset = load_failures(args.failures_path)
        note = screened_note(args)
        source = note or f"{len(dataset)} failures from {args.failures_path}"
    if args.use_vllm and importlib.util.find_spec("vllm") is None:
        args.use_vllm = False
        notes.append(
            f"vLLM is not installed here: the trainer was built without its {args.vllm_mode} "
            "engine (pip install -e '.[train,gpu]' on the GPU machine)"
        )
    trainer = build_trainer(
        args, model, tokenizer, dataset, peft_config=get_peft_config(model_args)
    )
    return {
        "dry_run": True,
        "processes": num_processes,
        "model": args.model,
        "env": f"{args.env_id} {args.env_kwargs}",
        "failures": source,
        "generation_batch_size": args.generation_batch_size,
        "groups_per_generation": per_batch,
        "max_steps": args.max_steps,
        "generation": f"vLLM ({args.vllm_mode})" if args.use_vllm else "transformers generate",
        "trainer": type(trainer).__name__,
        "rollout_func": type(trainer.rollout_func).__name__,
        "notes": notes,
        "trainer_object": trainer,
    }


def format_dry_run(result: dict[str, Any]) -> str:
    """The dry run's findings, one ``key: value`` line each."""
    lines = ["dry run: built everything, generated nothing"]
    for key, value in result.items():
        if key in ("dry_run", "trainer_object", "notes"):
            continue
        lines.append(f"  {key}: {value}")
    lines += [f"  note: {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


#: Below these, :func:`format_result` says the run checks the pipeline, not learning.
SHORT_RUN_STEPS, SHORT_RUN_ITEMS = 50, 200


def format_result(args: GRPOReflectConfig, result: dict[str, Any]) -> str:
    """A markdown table of vanilla vs trained accuracy."""
    lines = [
        f"# RRR-GRPO: {args.model} on {args.env_id} {args.env_kwargs}",
        "",
        f"{result['steps']} steps on {result['failures']} failures in "
        f"{result['train_seconds']:.0f} s; greedy evaluation on {args.eval_split} "
        f"({args.eval_n} items)",
        "",
        "| model | 1st try | 2nd try | fixed by the retry |",
        "|---|---|---|---|",
    ]
    for name in ("before", "after"):
        metrics = result.get(name)
        if metrics is None:
            continue
        rrr = metrics["rrr"]
        label = "vanilla" if name == "before" else "trained"
        lines.append(
            f"| {label} | {rrr['first_try']:.3f} | {rrr['second_try']:.3f} | "
            f"{rrr['fixed_by_retry']} / {rrr['retried']} |"
        )
    curve = [
        f"{entry['step']}: {entry['rrr/retry_success']:.2f}"
        for entry in result.get("log_history", [])
        if "rrr/retry_success" in entry
    ]
    if curve:
        lines += ["", "Retry success of the sampled groups by step: " + ", ".join(curve)]
    if result.get("step_changes"):
        lines += ["", format_steps(result["step_changes"]).rstrip()]
    if result["steps"] < SHORT_RUN_STEPS or args.eval_n < SHORT_RUN_ITEMS:
        lines += [
            "",
            f"A run of {result['steps']} steps checked on {args.eval_n} items shows that the "
            "pipeline works end to end (collection, GRPO on the reflection tokens, evaluation), "
            "not that the model learned: a difference of a few items is noise. Measured runs: "
            "benchmarks/results/rrr_vs_rise/.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; options, envs and ``--model`` are checked before any work."""
    from trl import ModelConfig

    from agents.cli import (
        check_env,
        check_hub_model,
        check_model,
        fail,
        parse_trl,
        preflight,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args, model_args = parse_trl((GRPOReflectConfig, ModelConfig), argv, own=GRPOReflectConfig)
    alias = model_args.model_name_or_path
    if alias is not None and alias != args.model:
        # TRL's flag for the model, an alias of --model: one model, named once.
        if args.model != GRPOReflectConfig.__dataclass_fields__["model"].default:
            fail(
                f"--model_name_or_path {alias} and --model {args.model} name different "
                "models; pass the model once, with --model"
            )
        args.model = alias
        if args.bundled_failures:  # matched for the default model; match the one named
            args.use_bundled_failures()
    model_args.model_name_or_path = None if alias is None else args.model
    preflight(lambda: check_env(args.env_id, args.env_options(), env_flag="--env_id"))
    if args.eval_n:
        options = args.env_options(held_out=True)
        preflight(lambda: check_env(args.env_id, options, env_flag="--env_id"))
    preflight(lambda: check_model(args.model))
    if args.dry_run:
        pass  # needs neither real failures nor real weights (see dry_run, dry_run_policy)
    else:
        if args.failures_path is not None and not Path(args.failures_path).exists():
            fail(f"--failures_path: no dataset of failures at {args.failures_path}")
        preflight(lambda: check_hub_model(args.model))
    try:
        result = train(args, model_args)
    except ModelUnavailableError as error:
        fail(str(error))
    if result.get("dry_run"):
        print(format_dry_run(result))
        return result
    if result["before"] is not None or result["after"] is not None:
        print(format_result(args, result))
    elif result.get("step_changes"):
        print(format_steps(result["step_changes"]))
    return result


__all__ = [
    "ADAPTER_SCOPES",
    "CPU_RECIPE_LEARNING_RATE",
    "CREDIT_MODES",
    "EPISODE_OPTIONS",
    "PAPER_LEARNING_RATE",
    "POLICY_FILE",
    "GRPOReflectConfig",
    "ReflectRetryRollout",
    "SPENT_FILE",
    "RecordSpentTime",
    "SkipStepsWithoutSignal",
    "StepChanges",
    "TRUNCATED_REFLECTIONS",
    "TRAIN_EPISODES",
    "TRUNCATION_PENALTY",
    "TimeBudget",
    "TimeSnapshots",
    "apply_cpu_recipe",
    "build_trainer",
    "check_launch",
    "dry_run",
    "dry_run_policy",
    "load_failures",
    "rank0_decision",
    "resume_checkpoint",
    "main",
    "retry_success",
    "train",
]


if __name__ == "__main__":
    main()
