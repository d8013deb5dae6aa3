"""Configuration of RRR-GRPO: :class:`GRPOReflectConfig` and the helpers that resolve it.

Kept apart from the trainer (``agents/grpo_reflect.py``), as TRL keeps ``grpo_config.py`` apart
from ``grpo_trainer.py``: this module holds every option, its default and its cross-field
checks; the trainer module reads as one loop. ``agents.grpo_reflect`` re-exports every public
name defined here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import GRPOConfig

from agents.backends import ADAPTER_SCOPES
from agents.engines import ENGINES, check_engine
from agents.reflection_rollout import EPISODE_OPTIONS
from agents.snapshots import check_marks

#: Which completion tokens carry the GRPO loss.
CREDIT_MODES = ("reflection", "reflection+retry")

#: What a reflection cut at the token limit (no end-of-turn token) does in training: see
#: ``--truncated_reflections``.
TRUNCATED_REFLECTIONS = ("keep", "mask", "penalize")

#: Subtracted from the reward of an episode whose reflection was cut, under
#: ``--truncated_reflections penalize``: a retry that succeeded after a cut reflection earns
#: 0, one that failed -1.
TRUNCATION_PENALTY = 1.0


def _default_bf16() -> bool:
    """bf16 autocast where it is fast: CUDA GPUs that support it, CPUs with AMX or AVX-512 BF16."""
    from agents.models import resolve_dtype

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return resolve_dtype("auto", "cpu") == torch.bfloat16


def check_launch() -> None:
    """Refuse a plain ``python`` launch on a machine with several visible GPUs.

    transformers would wrap the model in ``nn.DataParallel``, which TRL refuses only once
    training starts, after collection and the first evaluation have run.

    Raises:
        ValueError: Several CUDA devices are visible and no launcher started this process.
    """
    launched = any(name in os.environ for name in ("WORLD_SIZE", "LOCAL_RANK", "RANK"))
    if launched or not torch.cuda.is_available():
        return
    count = torch.cuda.device_count()
    if count > 1:
        raise ValueError(
            f"{count} GPUs are visible but this is a single-process launch (TRL refuses "
            "nn.DataParallel); use `accelerate launch --config_file "
            "agents/configs/accelerate_multi_gpu.yaml -m agents.grpo_reflect ...` for all of "
            "them, or CUDA_VISIBLE_DEVICES=0 for one"
        )


PAPER_LEARNING_RATE = 5e-7
"""The paper's learning rate (a full fine-tune)."""
CPU_RECIPE_LEARNING_RATE = 1e-4
"""The CPU recipe's learning rate (a LoRA adapter, r 16 / alpha 32)."""
PAPER_WARMUP = 0.03
"""The paper's warmup ratio (the CPU recipe has none: its runs are a few steps long)."""
SCREENED_RESAMPLE_GROUPS = 5
"""Dynamic-sampling redraws per group by default on a bundled screened set (the demo)."""


def apply_cpu_recipe(args: GRPOReflectConfig, model_args: Any) -> Any:
    """TRL's ``ModelConfig`` with LoRA on where ``args.cpu_recipe`` asks for it.

    LoRA options the user gave (``--use_peft`` with its ``--lora_*`` flags) are kept; the
    recipe only turns LoRA on, with TRL's default rank and alpha.
    """
    if args.cpu_recipe and not model_args.use_peft:
        model_args = dataclasses.replace(model_args, use_peft=True)
    return model_args


@dataclass
class GRPOReflectConfig(GRPOConfig):
    r"""Configuration of :func:`train` (``python -m agents.grpo_reflect``).

    Everything in TRL's ``GRPOConfig`` applies; the defaults below differ from it.

    Parameters:
        > Paper defaults (Bensal et al., 2025), different from ``GRPOConfig``

        learning_rate (`float` or `None`, defaults to `None`): AdamW learning rate; ``None``
            is the paper's 5e-7 for a full fine-tune, or 1e-4 under the CPU recipe (LoRA).
        beta (`float`, defaults to `0.001`): KL coefficient.
        lr_scheduler_type (`str`, defaults to `"cosine"`): Learning-rate schedule.
        warmup_steps (`float` or `None`, defaults to `None`): Warmup; a float in [0, 1) is a
            ratio of the total steps (transformers 5 folded ``warmup_ratio`` into
            ``warmup_steps``). ``None`` is the paper's ratio 0.03 for a full fine-tune, or 0
            under the CPU recipe: its runs are a few steps long, and 0.03 of 2 steps rounds up
            to a whole first step at learning rate 0.

        > CPU-demo defaults, different from ``GRPOConfig`` (GPU runs set their own, see
        > ``agents/configs/grpo_reflect_h100.yaml``)

        max_completion_length (`int`, defaults to `64`): Token limit of a reflection.
        num_generations (`int`, defaults to `8`): GRPO group size (TRL's default too).
        logging_steps (`int`, defaults to `1`): RRR steps are long; log every one.
        max_steps (`int`, defaults to `2`): Sized for the CPU demo; the paper trains up to 1,750.
        per_device_train_batch_size (`int`, defaults to `2`) and gradient_accumulation_steps
            (`int`, defaults to `4`): one generation batch of 8 sequences (one group), trained
            in passes of 2 to bound activation memory on CPUs without gradient checkpointing.
            These, the token limits and ``eval_n`` are sized so that the no-argument run takes
            at most 6 minutes on 2 CPU cores (``benchmarks/bench_main_job.py``).
        output_dir (`str`, defaults to `"runs/grpo_reflect"`): Checkpoints, failures, results.

        > Per-device defaults, different from ``GRPOConfig``

        cpu_recipe (`bool` or `None`, defaults to `None`): ``None`` turns it on where no CUDA
            GPU is visible. It trains a LoRA adapter (TRL's ``--use_peft`` with its default r 16
            / alpha 32, unless ``--use_peft`` options are given) at learning rate 1e-4, instead
            of the paper's full fine-tune at 5e-7: on a CPU it needs no optimizer state for the
            base weights and no copy of the reference model (TRL scores the reference with the
            adapter off), so the no-argument run fits in 8 GB. ``--cpu_recipe false`` keeps the
            paper's method on any device.

        bf16 (`bool` or `None`, defaults to `None`): ``None`` picks bf16 mixed precision (fp32
            weights, bf16 autocast) on CUDA GPUs that support it and on CPUs with AMX or
            AVX-512 BF16, fp32 elsewhere. TRL's default (always ``True``) fails on CPUs; bf16 on
            a CPU implies ``use_cpu``.
        gradient_checkpointing (`bool` or `None`, defaults to `None`): ``None`` turns it on for
            GPUs and off on CPUs, where it costs compute (TRL quotes ~20%) and the default
            passes of 2 sequences bound activation memory instead.

        > The environment

        env_id (`str`): Environment id, e.g. ``rrr/Countdown-v0`` or ``rrr/BFCL-v0`` (not
            ``env``: TRL's YAML configs reserve that key for environment variables).
        env_kwargs (`str`): More env options as a JSON object (task options such as
            ``num_count`` or ``category``); episode options are set by the trainer.
        train_split (`str` or `None`): Split of the failures; ``None`` for every item.
        retry_max_tokens (`int`): Token limit of a retry.
        retry_temperature (`float` or `None`): Sampling temperature of the retry; ``None``
            samples it like the reflection (TRL's ``temperature``), ``0`` decodes it greedily,
            which makes the reward a function of the reflection alone. Only with
            ``credit="reflection"``: retry tokens that carry the loss are sampled as TRL scores.
        retry_top_p (`float` or `None`): Nucleus mass of the retry; ``None``: TRL's ``top_p``.
        credit (`str`): ``"reflection"`` (loss on reflection tokens only, the paper) or
            ``"reflection+retry"`` (also on the retry's tokens; the retry prompt is masked).
        resample_groups (`int` or `None`, defaults to `None`): DAPO's dynamic sampling: a
            group whose retries all got the same reward (no gradient) is replaced by a group on
            another failure, up to this many times. One process only. ``None``: 0 (the paper),
            or 5 when training on a bundled screened set (the no-argument demo): its two
            failures were fixed by 4 and 12 of 32 confirmation retries, so a group of 8 on one
            of them still has equal rewards 2-34% of the time.
        resample_batch (`int`, defaults to `1`): Replacement groups generated together for a
            group without signal, per round of ``resample_groups`` (counted in it). The slot
            trains on the first of them with signal in draw order, as it would drawing one at a
            time; drawing several saves engine turns (two engines taking turns under adapter
            scope ``reflection`` reload at each round) and wastes the groups drawn after one
            with signal.
        skip_steps_without_signal (`bool` or `None`, defaults to `None`): Take no optimizer
            step on a batch whose groups all have equal rewards (no advantage anywhere): the
            gradients are dropped before the step, so AdamW moves no weight and no moment
            (a zero-loss step still moves them through momentum; weight decay likewise), and
            the learning-rate schedule does not advance. ``max_steps`` still counts such
            batches; ``rrr/skipped_steps`` logs how many were skipped so far. The KL term's
            pull toward the reference (``beta``) is skipped with them. ``None``: on, except
            under DeepSpeed (whose engine steps inside ``backward``) or fp16, where it is off;
            ``false``: TRL's behaviour (every batch steps). A step has signal when any
            generation batch that fed it has. Where each step is fed by one generation batch
            (``steps_per_generation`` a multiple of ``gradient_accumulation_steps``, the
            default), a step without signal also runs no forward or backward pass (its loss
            is logged as 0, without TRL's ``kl``/``entropy``/clip metrics).
        adapter_scope (`str`, defaults to `"all"`): ``"all"``: one set of weights answers,
            reflects and retries (the paper). ``"reflection"``: the LoRA adapter is on only
            for the reflection; retries are sampled with it disabled (the frozen base model),
            and the failures were collected by the base model before training. Needs a LoRA
            adapter (``--use_peft`` or the CPU recipe), transformers generation and
            ``credit="reflection"``. The saved policy records its scope in
            ``rrr_policy.json``. The before/after evaluation of ``--eval_n`` and
            ``agents.evaluate`` then generate only reflections with the adapter.
        engine (`str`, defaults to `"torch"`): Generates reflections and retries (and the
            before/after evaluation): ``torch`` (the trainer's model, transformers ``generate``)
            or ``openvino`` (OpenVINO GenAI on the CPU serving the policy's current weights,
            re-synced after every optimizer step; ``pip install -e '.[cpu-engine]'``). An engine
            that cannot start warns once and the torch path runs. Not with ``--use_vllm``,
            ``--min_p``, ``--repetition_penalty`` or ``--generation_kwargs``.
        truncated_reflections (`str`, defaults to `"keep"`): What a reflection cut at
            ``max_completion_length`` (no end-of-turn token) does in training. ``"keep"``: it
            is trained like any other (the paper). ``"mask"``: its tokens carry no loss
            (DAPO's overlong filtering); its reward still counts in its group's mean and
            standard deviation. ``"penalize"``: its episode's reward drops by
            :data:`TRUNCATION_PENALTY` (a retry that succeeded after it earns 0, one that
            failed -1), so a group whose retries all failed has a gradient toward reflections
            that finish; dynamic sampling and ``skip_steps_without_signal`` judge these
            rewards. ``rrr/retry_success`` logs the env's verdicts either way.
        save_train_episodes (`bool`, defaults to `True`): Append every training episode
            (reflection, retry, verdict, and whether its group was trained on) of every drawn
            group to ``<output_dir>/train_episodes.jsonl``, so that the episodes behind a
            training curve can be read (see
            :meth:`agents.grpo_rollout.ReflectRetryRollout.write_episodes`).
        sample_with_dropout (`bool`, defaults to `False`): Sample reflections and retries with
            the model in training mode, dropout (e.g. LoRA's) active, as TRL's own generation
            does. ``False`` switches the model to eval mode while generating (training mode is
            restored for the loss): the samples come from the policy that evaluation runs.
            No effect with ``--use_vllm`` (vLLM has no dropout).

        > The dataset of failures

        failures_path (`str` or `None`): A folder written by ``agents.collect_failures``, a
            saved ``datasets.Dataset`` or a JSONL file of rows with ``prompt`` and ``index``
            (e.g. one written by ``agents.screen_failures``). ``None`` with ``collect`` unset:
            the bundled screened set (``agents/data/screened/``) made with this run's model,
            env, env options, train split, token limits and sampling, if there is one; else
            the failures are collected.
        collect (`bool` or `None`): Build the failures with the model first (in
            ``<output_dir>/failures``, resumable). ``None``: collect iff no ``failures_path``
            and no bundled screened set matches the run.
        collect_n (`int`): Queries to sample first attempts on when collecting.
        samples_per_query (`int`): Most first attempts sampled per query (paper: 64).
        collect_temperature (`float`, defaults to `1.0`): Sampling temperature of the first
            attempts when collecting (the paper samples). ``0``: greedy attempts, the
            failures that the greedy evaluation meets (one attempt per query, so
            ``samples_per_query`` must be 1).
        failures_per_query (`int`): Failures kept per query.
        min_successes (`int`): Keep a query's failures only if at least this many of its
            sampled attempts were correct (0: every failed query, the paper).
        attempt_max_tokens (`int`): Token limit of a first attempt (collection, evaluation).

        > Before / after evaluation (greedy, held-out split)

        eval_split (`str` or `None`): Split to evaluate on.
        eval_n (`int`): Items to evaluate before and after training; 0 skips it.

        > The model

        model (`str`, defaults to `"qwen2.5-coder-0.5b"`): Bundled model name, Hugging Face id,
            local folder or ``.gguf`` file. The default had the most learning signal per
            CPU-second in ``benchmarks/signal_search.py``; SmolLM2-135M had none.
        rollout_batch_size (`int` or `None`): Most sequences per ``generate`` call; ``None``
            generates each phase of the whole batch in one call.
        max_minutes (`float` or `None`): Wall-clock training budget, collection included;
            checked after each optimizer step. ``None``: only ``max_steps`` stops training.
        snapshot_minutes (`list[float]` or `None`): Training wall times (collection included)
            at which the policy is also saved, after the first optimizer step past each, to
            ``<output_dir>/snapshots/<m>min/``, for held-out learning curves. One process.

        > Checking a launch

        dry_run (`bool`, defaults to `False`): Build everything a run builds (config, env,
            dataset of failures, model, trainer, rollout function) and stop before the first
            generation. Collection is replaced by failures scripted from the env, and where
            vLLM is not installed the trainer is built without its engine.
    """

    # Paper defaults.
    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "AdamW learning rate. Default: the paper's 5e-7 (full fine-tune), or 1e-4 "
            "under --cpu_recipe (LoRA)."
        },
    )
    beta: float = field(default=0.001, metadata={"help": "KL coefficient (paper: 0.001)."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Learning-rate schedule (paper: cosine)."}
    )
    warmup_steps: float | None = field(
        default=None,
        metadata={
            "help": "Linear warmup: steps, or a float in [0, 1) as a ratio of total steps. "
            "Default: the paper's ratio 0.03, or 0 under --cpu_recipe (0.03 of its few steps "
            "rounds up to a whole first step at learning rate 0)."
        },
    )
    max_completion_length: int | None = field(
        default=64,
        metadata={
            "help": "Token limit of a reflection (the GRPO completion; CPU demo default, the "
            "GPU configs set 512)."
        },
    )
    num_generations: int | None = field(
        default=8,
        metadata={
            "help": "GRPO group size: reflections sampled per failure (TRL's default; in the "
            "CPU demo a group of 4 on a screened failure still had no reward variance in 6 "
            "draws)."
        },
    )
    # Per-device defaults.
    cpu_recipe: bool | None = field(
        default=None,
        metadata={
            "help": "Train a LoRA adapter (r 16, alpha 32) at learning rate 1e-4 instead of the "
            "paper's full fine-tune at 5e-7. Default: on where no CUDA GPU is visible (it keeps "
            "the no-argument CPU run under 8 GB); --cpu_recipe false keeps the paper's."
        },
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 mixed precision. Default: on for bf16-capable CUDA GPUs and CPUs with "
            "AMX or AVX-512 BF16, off elsewhere. On a CPU it implies --use_cpu."
        },
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Gradient checkpointing. Default: on for GPUs, off on CPUs."},
    )
    per_device_train_batch_size: int = field(
        default=2,
        metadata={
            "help": "Sequences per forward/backward pass. With the default 4 accumulation steps, "
            "one generation batch is 8 sequences: one GRPO group of 8 reflections."
        },
    )
    gradient_accumulation_steps: int = field(
        default=4,
        metadata={
            "help": "Passes per optimizer step (TRL generates once for all of them). Small "
            "passes bound activation memory without gradient checkpointing (a 0.5B model on "
            "8 sequences of ~700 tokens in one pass peaks at 16 GB RSS)."
        },
    )
    max_steps: int = field(
        default=2,
        metadata={"help": "Optimizer steps (CPU demo default; the paper trains up to 1,750)."},
    )
    output_dir: str | None = field(
        default="runs/grpo_reflect", metadata={"help": "Where checkpoints and results go."}
    )
    logging_steps: float = field(
        default=1, metadata={"help": "Log every N steps (RRR steps are long; default: every one)."}
    )
    # The environment.
    env_id: str = field(
        default="rrr/Countdown-v0", metadata={"help": "Environment id, e.g. rrr/BFCL-v0."}
    )
    env_kwargs: str = field(
        default='{"num_count": 2, "number_range": [1, 20], "target_range": [1, 40]}',
        metadata={
            "help": "More env options as a JSON object, e.g. '{\"num_count\": 3}' or "
            '\'{"category": "simple_python", "format": "lenient"}\'. Default: the easy '
            "Countdown setting chosen by benchmarks/signal_search.py."
        },
    )
    train_split: str | None = field(
        default="train", metadata={"help": "Env split of the failures (None: every item)."}
    )
    retry_max_tokens: int = field(
        default=192, metadata={"help": "Token limit of a retry (CPU demo default)."}
    )
    retry_temperature: float | None = field(
        default=None,
        metadata={
            "help": "Sampling temperature of the retry (None: TRL's --temperature, as the "
            "reflection; 0: greedy, so the reward depends on the reflection alone). Only with "
            "--credit reflection."
        },
    )
    retry_top_p: float | None = field(
        default=None, metadata={"help": "Nucleus mass of the retry (None: TRL's --top_p)."}
    )
    resample_groups: int | None = field(
        default=None,
        metadata={
            "help": "Dynamic sampling (DAPO): a training group whose retries all got the same "
            "reward carries no gradient, so it is replaced by a group on another failure, up to "
            "this many times per group (0: off, the paper). One process only. Default: 0, or "
            f"{SCREENED_RESAMPLE_GROUPS} on a bundled screened set (the no-argument demo)."
        },
    )
    resample_batch: int = field(
        default=1,
        metadata={
            "help": "Replacement groups generated together for a group without signal, per "
            "round of --resample_groups (counted in it); the slot trains on the first with "
            "signal, in draw order. Above 1: fewer rounds (engine turns), some groups wasted."
        },
    )
    skip_steps_without_signal: bool | None = field(
        default=None,
        metadata={
            "help": "No optimizer step (no AdamW momentum or weight-decay move, no schedule "
            "step) on a batch whose groups all have equal rewards; logged as "
            "rrr/skipped_steps; such a step computes no loss where one generation batch feeds "
            "it. Default: on, except under DeepSpeed or fp16; false: TRL's behaviour."
        },
    )
    adapter_scope: str = field(
        default="all",
        metadata={
            "help": "Phases the LoRA adapter generates: 'all' (shared weights, the paper) or "
            "'reflection' (attempts and retries from the frozen base model).",
            "choices": list(ADAPTER_SCOPES),
        },
    )
    engine: str = field(
        default="torch",
        metadata={
            "help": "Generation engine of the rollouts and evaluations: torch or openvino "
            "(CPU; pip install -e '.[cpu-engine]'; falls back to torch with a warning when it "
            "cannot start). See benchmarks/results/engines.md.",
            "choices": list(ENGINES),
        },
    )
    truncated_reflections: str = field(
        default="keep",
        metadata={
            "help": "A reflection cut at the token limit in training: 'keep' (trained like any "
            "other, the paper), 'mask' (its tokens carry no loss) or 'penalize' (its "
            f"episode's reward drops by {TRUNCATION_PENALTY:g}).",
            "choices": list(TRUNCATED_REFLECTIONS),
        },
    )
    save_train_episodes: bool = field(
        default=True,
        metadata={
            "help": "Append every training episode of every drawn group (reflection, retry, "
            "verdict, trained or not) to <output_dir>/train_episodes.jsonl."
        },
    )
    sample_with_dropout: bool = field(
        default=False,
        metadata={
            "help": "Generate reflections and retries in training mode, dropout active (TRL's "
            "behaviour). Default: off, the model generates in eval mode."
        },
    )
    credit: str = field(
        default="reflection",
        metadata={
            "help": "Tokens that carry the loss: 'reflection' (the paper) or 'reflection+retry'.",
            "choices": list(CREDIT_MODES),
        },
    )
    # The dataset of failures.
    failures_path: str | None = field(
        default=None,
        metadata={
            "help": "Dataset of failures: an agents.collect_failures output folder, a saved "
            "datasets.Dataset, or a JSONL file (e.g. from agents.screen_failures). Default: the "
            "bundled screened set made with this run's model, env, env_kwargs, train split, "
            "token limits and sampling, if one is (agents/data/screened/); else --collect."
        },
    )
    collect: bool | None = field(
        default=None,
        metadata={
            "help": "Collect the failures with the model first (into <output_dir>/failures). "
            "Default: when no --failures_path is given and no bundled screened set matches."
        },
    )
    collect_n: int = field(default=16, metadata={"help": "Queries to collect failures on."})
    samples_per_query: int = field(
        default=1, metadata={"help": "Most first attempts per query when collecting (paper: 64)."}
    )
    failures_per_query: int = field(default=1, metadata={"help": "Failures kept per query."})
    collect_temperature: float = field(
        default=1.0,
        metadata={
            "help": "Temperature of the first attempts when collecting (1: sampled, the paper; "
            "0: greedy, the failures the greedy evaluation meets, with --samples_per_query 1)."
        },
    )
    min_successes: int = field(
        default=0,
        metadata={
            "help": "Keep a query's failures only if at least this many of its sampled first "
            "attempts were correct (0: every failed query, the paper)."
        },
    )
    attempt_max_tokens: int = field(
        default=192,
        metadata={
            "help": "Token limit of a first attempt (collection, evaluation; CPU demo default)."
        },
    )
    # Evaluation.
    eval_split: str | None = field(
        default="test", metadata={"help": "Held-out split for the before/after evaluation."}
    )
    eval_n: int = field(
        default=8, metadata={"help": "Items evaluated (greedy) before and after; 0 skips."}
    )
    # The model.
    model: str = field(
        default="qwen2.5-coder-0.5b",
        metadata={
            "help": "Bundled model name, Hugging Face id, local folder or .gguf file. Default: "
            "the bundled model with the most learning signal per CPU-second "
            "(benchmarks/results/signal_search.md); SmolLM2-135M had none."
        },
    )
    rollout_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Most sequences per generate call (transformers backend); default: each "
            "phase of the whole batch in one call."
        },
    )
    max_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Wall-clock budget of training in minutes, counted from the start of "
            "collection; checked after every optimizer step (the step under way finishes). "
            "The run stops at --max_steps or the budget, whichever comes first."
        },
    )
    snapshot_minutes: list[float] | None = field(
        default=None,
        metadata={
            "help": "Training wall times (minutes, collection included) at which the policy "
            "is also saved, to <output_dir>/snapshots/<m>min/, for held-out learning curves."
        },
    )

    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Build config, env, failures, model, trainer and rollout function, then stop "
            "before the first generation (checks a GPU config on any machine)."
        },
    )

    def __post_init__(self) -> None:
        if not self.use_cpu:
            check_launch()
        device_has_cuda = torch.cuda.is_available()
        if self.cpu_recipe is None:
            self.cpu_recipe = not device_has_cuda
        if self.learning_rate is None:
            self.learning_rate = (
                CPU_RECIPE_LEARNING_RATE if self.cpu_recipe else PAPER_LEARNING_RATE
            )
        if self.warmup_steps is None:
            self.warmup_steps = 0 if self.cpu_recipe else PAPER_WARMUP
        if self.bf16 is None:
            self.bf16 = False if self.fp16 else _default_bf16()
        if self.bf16 and not device_has_cuda and not self.use_cpu:
            self.use_cpu = True  # transformers refuses bf16 on a CPU unless told it is one
        if self.gradient_checkpointing is None and self.activation_checkpointing is None:
            # transformers' new name, so that the default warns of no deprecated option
            self.activation_checkpointing = device_has_cuda and not self.use_cpu
        super().__post_init__()

        if self.credit not in CREDIT_MODES:
            raise ValueError(f"--credit must be one of {CREDIT_MODES}, got {self.credit!r}")
        if self.truncated_reflections not in TRUNCATED_REFLECTIONS:
            raise ValueError(
                f"--truncated_reflections must be one of {TRUNCATED_REFLECTIONS}, got "
                f"{self.truncated_reflections!r}"
            )
        if self.adapter_scope not in ADAPTER_SCOPES:
            raise ValueError(
                f"--adapter_scope must be one of {ADAPTER_SCOPES}, got {self.adapter_scope!r}"
            )
        if self.adapter_scope == "reflection" and (self.use_vllm or self.credit != "reflection"):
            raise ValueError(
                "--adapter_scope reflection samples the retry from the base model with "
                "transformers generation and trains the reflection alone; drop --use_vllm and "
                "use --credit reflection"
            )
        check_engine(self.engine)
        if self.engine != "torch":
            own_sampling = {
                "--use_vllm": self.use_vllm,
                "--min_p": self.min_p is not None,
                "--repetition_penalty": self.repetition_penalty != 1.0,
                "--generation_kwargs": bool(self.generation_kwargs),
            }
            clash = [name for name, used in own_sampling.items() if used]
            if clash:
                raise ValueError(
                    f"--engine {self.engine} samples with temperature / top-p / top-k only; "
                    f"drop {', '.join(clash)} or use --engine torch"
                )
        if self.retry_temperature is not None and not self.retry_temperature >= 0:
            raise ValueError(f"--retry_temperature must be >= 0, got {self.retry_temperature}")
        if self.retry_top_p is not None and not 0 < self.retry_top_p <= 1:
            raise ValueError(f"--retry_top_p must be in (0, 1], got {self.retry_top_p}")
        own_temperature = self.retry_temperature not in (None, self.temperature)
        retry_own_sampling = own_temperature or self.retry_top_p not in (None, self.top_p)
        if self.credit != "reflection" and retry_own_sampling:
            raise ValueError(
                "--retry_temperature / --retry_top_p differ from --temperature / --top_p, but "
                f"--credit {self.credit} trains the retry's tokens, which TRL scores at "
                "--temperature; use --credit reflection or drop the retry options"
            )
        options = self.env_options()  # raises on bad JSON
        if self.credit != "reflection" and options.get("retry_context") == "reflection":
            raise ValueError(
                f"--credit {self.credit} trains reflection and retry as one sequence, but "
                "retry_context='reflection' starts the retry in a fresh conversation; use "
                "--credit reflection"
            )
        reserved = sorted(set(json.loads(self.env_kwargs)) & {*EPISODE_OPTIONS, "split"})
        if reserved:
            raise ValueError(
                f"--env_kwargs sets {reserved}, which the trainer controls: episodes are always "
                "an attempt, a reflection and one retry; choose splits with --train_split and "
                "--eval_split"
            )
        #: Whether ``failures_path`` is the bundled screened set this run defaulted to.
        self.bundled_failures = False
        self._default_resampling = self.resample_groups is None
        if self.collect is None and self.failures_path is None:
            self.use_bundled_failures()
        if self.collect is None:
            self.collect = self.failures_path is None
        if self.collect and self.failures_path is not None:
            raise ValueError(
                "--collect builds the failures in <output_dir>/failures, but --failures_path was "
                "also given; pass only one of them"
            )
        if not self.collect and self.failures_path is None:
            raise ValueError("no training data: pass --failures_path DIR or --collect")
        if self.retry_max_tokens < 1 or self.attempt_max_tokens < 1:
            raise ValueError("--retry_max_tokens and --attempt_max_tokens must be >= 1")
        if self.eval_n < 0 or self.collect_n < 1:
            raise ValueError("--eval_n must be >= 0 and --collect_n >= 1")
        if not 1 <= self.failures_per_query <= self.samples_per_query:
            raise ValueError("need 1 <= --failures_per_query <= --samples_per_query")
        if not 0 <= self.min_successes < self.samples_per_query:
            raise ValueError("need 0 <= --min_successes < --samples_per_query")
        if not self.collect_temperature >= 0:
            raise ValueError(f"--collect_temperature must be >= 0, got {self.collect_temperature}")
        if self.collect_temperature == 0 and self.samples_per_query > 1:
            raise ValueError(
                "--collect_temperature 0 repeats one greedy attempt per query; use "
                "--samples_per_query 1"
            )
        if self.rollout_batch_size is not None and self.rollout_batch_size < 1:
            raise ValueError("--rollout_batch_size must be >= 1 or None")
        if self.resample_groups is None:
            self.resample_groups = 0
        if self.resample_groups < 0:
            raise ValueError(f"--resample_groups must be >= 0, got {self.resample_groups}")
        if self.resample_batch < 1:
            raise ValueError(f"--resample_batch must be >= 1, got {self.resample_batch}")
        if self.resample_groups and self.world_size > 1:
            # Each process would draw a different number of groups, and the generation of every
            # draw is a collective under ZeRO-3 and vLLM colocate: the processes would hang.
            raise ValueError(
                "--resample_groups needs a single process (each rank would generate a different "
                f"number of groups), but {self.world_size} were launched; use "
                "--resample_groups 0"
            )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"--max_minutes must be > 0, got {self.max_minutes}")
        check_marks(self.snapshot_minutes, "--snapshot_minutes")
        if self.snapshot_minutes and self.world_size > 1:
            raise ValueError(
                f"--snapshot_minutes saves from one process, but {self.world_size} were "
                "launched; use --save_steps for multi-process checkpoints"
            )
        if self.use_transformers_continuous_batching:
            raise ValueError(
                "--use_transformers_continuous_batching is not supported by the RRR rollout; "
                "use the default transformers generation or --use_vllm"
            )
        if self.eval_strategy != "no":
            raise ValueError(
                "TRL's periodic evaluation needs an eval dataset of failures, which this trainer "
                "does not build; keep --eval_strategy no and use --eval_n (before/after accuracy)"
            )

    def screening_settings(self) -> dict[str, Any]:
        """The settings a screened set of failures must share with this run (its rollouts)."""
        from agents.screen_failures import run_settings

        return run_settings(
            model=self.model,
            env_id=self.env_id,
            env_kwargs=self.env_kwargs,
            split=self.train_split,
            attempt_max_tokens=self.attempt_max_tokens,
            reflection_max_tokens=self.max_completion_length,
            retry_max_tokens=self.retry_max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            retry_temperature=self.retry_temperature,
            retry_top_p=self.retry_top_p,
            collect_temperature=self.collect_temperature,
        )

    def use_bundled_failures(self) -> bool:
        """Train on the bundled screened set that matches this run, if there is one.

        Sets ``failures_path`` (``collect`` False) and returns True, or sets ``collect`` and
        returns False; an unset ``resample_groups`` follows (:data:`SCREENED_RESAMPLE_GROUPS`
        on the bundled set in one process, else 0). Called by ``__post_init__`` when neither
        ``failures_path`` nor ``collect`` was given, and again by the CLI once
        ``--model_name_or_path`` has named the model.
        """
        from agents.screen_failures import find_bundled

        found = find_bundled(self.screening_settings())
        self.bundled_failures = found is not None
        self.failures_path = None if found is None else str(found)
        self.collect = found is None
        if getattr(self, "_default_resampling", False):
            one_process = self.world_size == 1
            self.resample_groups = SCREENED_RESAMPLE_GROUPS if found and one_process else 0
        return self.bundled_failures

    def env_options(self, *, held_out: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``gym.make``: the train split, or the eval split if ``held_out``.

        Raises:
            ValueError: ``env_kwargs`` is not a JSON object.
        """
        from agents.cli import json_object

        extra = json_object(self.env_kwargs, "--env_kwargs")
        split = self.eval_split if held_out else self.train_split
        options = {**extra, **EPISODE_OPTIONS}
        if split is not None:
            options["split"] = split
        return options


__all__ = [
    "CPU_RECIPE_LEARNING_RATE",
    "CREDIT_MODES",
    "TRUNCATED_REFLECTIONS",
    "TRUNCATION_PENALTY",
    "PAPER_LEARNING_RATE",
    "PAPER_WARMUP",
    "SCREENED_RESAMPLE_GROUPS",
    "GRPOReflectConfig",
    "apply_cpu_recipe",
    "check_launch",
]
