"""Measure a model on an ``rrr/*`` env the way the papers do.

    python -m agents.evaluate --env rrr/Countdown-v0 --model smollm2-135m --split test --n 200
    python -m agents.evaluate --max-attempts 5 --no-reflect --feedback none --samples 5 \\
        --temperature 0.7

Writes ``episodes.jsonl`` (one episode per line, appended as items finish, so a killed run
resumes where it stopped), ``metrics.json`` and ``report.md`` into ``--output-dir``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

import rrr_env
from agents.cli import check_env, check_model, json_object, parse_trl, preflight
from agents.engines import check_engine
from agents.metrics import rise_metrics, rrr_metrics
from agents.models import DTYPES
from agents.rollout import Backend, Episode, PhaseSampling, SamplingParams, progress_bar, rollout

logger = logging.getLogger(__name__)
gym.register_envs(rrr_env)


@dataclass
class EvaluateArgs:
    """Options of ``python -m agents.evaluate`` (also readable from a YAML ``--config``)."""

    env: str = field(default="rrr/Countdown-v0", metadata={"help": "Environment id."})
    model: str = field(
        default="smollm2-135m",
        metadata={"help": "Bundled model name, Hugging Face id, local folder or .gguf file."},
    )
    split: str | None = field(default="test", metadata={"help": "Data split of the env."})
    env_kwargs: str = field(
        default="{}", metadata={"help": "More env options as JSON, e.g. '{\"num_count\": 3}'."}
    )
    n: int = field(default=200, metadata={"help": "Number of items (the first n of the split)."})
    max_attempts: int = field(default=2, metadata={"help": "Answers per episode."})
    reflect: bool = field(
        default=True, metadata={"help": "Reflect between answers (RRR); --no-reflect for RISE."}
    )
    feedback: str = field(
        default="binary", metadata={"help": "'binary' (oracle: told when wrong) or 'none'."}
    )
    samples: int = field(
        default=1, metadata={"help": "Episodes per item; >1 gives majority-vote m{k}@t1."}
    )
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=512, metadata={"help": "Token limit of an answer."})
    reflection_max_new_tokens: int = field(
        default=256, metadata={"help": "Token limit of a reflection."}
    )
    batch_size: int = field(default=16, metadata={"help": "Conversations per generate call."})
    chunk_items: int = field(
        default=32, metadata={"help": "Items per rollout chunk (the unit of resumption)."}
    )
    dtype: str = field(default="auto", metadata={"help": "auto, bfloat16 or float32."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling."})
    engine: str = field(
        default="torch",
        metadata={
            "help": "Generation engine: torch (transformers generate) or openvino (OpenVINO "
            "GenAI on the CPU, pip install -e '.[cpu-engine]'; falls back to torch with a "
            "warning when it cannot start). See benchmarks/results/engines.md."
        },
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where results go (default runs/eval/<env>__<model>)."}
    )

    def __post_init__(self) -> None:
        if self.samples > 1 and self.temperature == 0:
            raise ValueError(
                "--samples > 1 with greedy decoding repeats one answer; set --temperature > 0"
            )
        for name in ("n", "samples", "chunk_items", "max_attempts", "batch_size"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be an integer >= 1, got {getattr(self, name)}")
        for name in ("max_new_tokens", "reflection_max_new_tokens"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= 1 tokens, got {getattr(self, name)}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                "need --temperature >= 0 and 0 < --top-p <= 1, "
                f"got {self.temperature} and {self.top_p}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        check_engine(self.engine)
        json_object(self.env_kwargs, "--env-kwargs")

    def env_options(self) -> dict[str, Any]:
        """Keyword arguments for ``gym.make``."""
        options: dict[str, Any] = {
            "max_attempts": self.max_attempts,
            "reflect": self.reflect,
            "feedback": self.feedback,
        }
        if self.split is not None:
            options["split"] = self.split
        return {**options, **json.loads(self.env_kwargs)}

    def sampling(self) -> PhaseSampling:
        """Sampling parameters per phase."""
        answer = SamplingParams(self.max_new_tokens, self.temperature, self.top_p)
        reflection = SamplingParams(self.reflection_max_new_tokens, self.temperature, self.top_p)
        return PhaseSampling(attempt=answer, reflection=reflection, retry=answer)


def read_episodes(path: Path) -> list[Episode]:
    """Episodes of a JSONL file; a torn last line (from a kill mid-write) is dropped."""
    if not path.exists():
        return []
    episodes = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                episodes.append(Episode.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError, KeyError):
                logger.warning("dropping an unreadable line of %s (interrupted write?)", path)
    return episodes


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (left by a kill mid-write) so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        data = handle.seek(0) or handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def append_lines(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append records as JSON lines in one write and flush them to disk."""
    _drop_torn_tail(path)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def evaluate(
    make_env: Callable[[], gym.Env],
    backend: Backend,
    indices: Sequence[int],
    *,
    samples: int = 1,
    sampling: PhaseSampling | None = None,
    seed: int = 0,
    episodes_path: Path | None = None,
    chunk_items: int = 32,
    progress: bool = True,
) -> tuple[list[Episode], dict[str, Any]]:
    """Roll out ``samples`` episodes per item and compute the RRR and RISE metrics.

    With ``episodes_path``, finished items are appended there chunk by chunk, and items
    already present are not run again (resume after a kill). The progress bar counts
    episodes as each one ends, not chunk by chunk.

    Returns:
        The episodes (in item order) and a dict with ``rrr`` and ``rise`` metrics.
    """
    done: dict[int, list[Episode]] = {}
    if episodes_path is not None:
        for episode in read_episodes(episodes_path):
            done.setdefault(episode.index, []).append(episode)
        done = {i: eps for i, eps in done.items() if len(eps) >= samples}
    todo = [i for i in indices if i not in done]
    if done:
        logger.info("resuming: %d of %d items already done", len(indices) - len(todo), len(indices))
    bar = progress_bar(
        len(indices) * samples,
        initial=(len(indices) - len(todo)) * samples,
        desc="episodes",
        unit="ep",
        enabled=progress,
    )
    for start in range(0, len(todo), chunk_items):
        chunk = todo[start : start + chunk_items]
        episodes = rollout(
            make_env,
            backend,
            chunk,
            group_size=samples,
            sampling=sampling,
            seed=seed + start * samples,
            on_episode_end=lambda episode: bar.update(1),
        )
        if episodes_path is not None:
            append_lines(episodes_path, [e.to_dict() for e in episodes])
        for episode in episodes:
            done.setdefault(episode.index, []).append(episode)
    bar.close()
    ordered = [e for i in indices for e in done[i][:samples]]
    return ordered, {"rrr": rrr_metrics(ordered), "rise": rise_metrics(ordered)}


def render_report(args: EvaluateArgs, metrics: dict[str, Any]) -> str:
    """A markdown report of ``metrics``."""
    rrr, rise = metrics["rrr"], metrics["rise"]
    lines = [
        f"# {args.model} on {args.env} ({args.split}, {rrr['episodes']} episodes)",
        "",
        f"max_attempts={args.max_attempts}, reflect={args.reflect}, feedback={args.feedback}, "
        f"samples={args.samples}, temperature={args.temperature}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    if args.reflect:
        lines += [
            f"| 1st-try accuracy | {rrr['first_try']:.3f} |",
            f"| 2nd-try accuracy | {rrr['second_try']:.3f} |",
            f"| failures fixed by the retry | {rrr['fixed_by_retry']} / {rrr['retried']} |",
        ]
    for key, value in rise.items():
        if "@" in key:
            lines.append(f"| {key} | {value:.3f} |")
    if not args.reflect:
        by_turn = ", ".join(f"{a:.3f}" for a in rise["accuracy_by_turn"])
        lines += [
            f"| accuracy by turn | {by_turn} |",
            f"| flips wrong->right / right->wrong | {rise['wrong_to_right']} / "
            f"{rise['right_to_wrong']} |",
        ]
    lines += ["", "First-attempt errors:", "", "| reason | count |", "|---|---|"]
    lines += [f"| {reason} | {count} |" for reason, count in rrr["first_try_errors"].items()]
    return "\n".join(lines) + "\n"


def default_output_dir(args: EvaluateArgs) -> Path:
    """``runs/eval/<env>__<model>__<split>__a<attempts>[_noreflect]_<feedback>_s<samples>``."""
    env = args.env.replace("/", "_")
    model = Path(args.model).name
    mode = f"a{args.max_attempts}{'' if args.reflect else '_noreflect'}_{args.feedback}"
    return Path("runs") / "eval" / f"{env}__{model}__{args.split}__{mode}_s{args.samples}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point.

    Options, the env (its data included) and the ``--model`` string are checked before the
    model loads; a bad one exits with status 2 and one line, and leaves no output folder.
    """
    from agents.engines import make_backend
    from agents.snapshots import load_policy, read_adapter_scope

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (args,) = parse_trl((EvaluateArgs,), argv)
    options = args.env_options()
    env = preflight(lambda: check_env(args.env, options))
    preflight(lambda: check_model(args.model))
    # A policy saved by agents.grpo_reflect records how its adapter is used (rrr_policy.json).
    scope = preflight(lambda: read_adapter_scope(args.model))
    size = len(env.unwrapped.task)
    output = Path(args.output_dir) if args.output_dir else default_output_dir(args)
    config_path = output / "config.json"
    # What identifies the evaluation; --n may change between runs (more or fewer items).
    ignored = ("output_dir", "batch_size", "n", "chunk_items")
    config = {k: v for k, v in asdict(args).items() if k not in ignored}
    if config["engine"] == "torch":  # as folders written before --engine existed
        del config["engine"]
    if config_path.exists() and json.loads(config_path.read_text()) != config:
        raise SystemExit(
            f"{output} holds results of a different evaluation ({config_path}); "
            "pass another --output-dir or delete it"
        )

    model, tokenizer, _ = load_policy(args.model, dtype=args.dtype)
    # Only now, with every check passed and the model loaded, does the run folder appear.
    output.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2))
    if scope != "all":
        logger.info("adapter scope %s (%s): only reflections use the adapter", scope, args.model)
    backend = make_backend(
        args.engine,
        model,
        tokenizer,
        batch_size=args.batch_size,
        seed=args.seed,
        adapter_scope=scope,
        reflection_request=env.unwrapped.task.reflection_request,
    )
    indices = list(range(min(args.n, size)))
    _, metrics = evaluate(
        lambda: gym.make(args.env, **options),
        backend,
        indices,
        samples=args.samples,
        sampling=args.sampling(),
        seed=args.seed,
        episodes_path=output / "episodes.jsonl",
        chunk_items=args.chunk_items,
    )
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report = render_report(args, metrics)
    (output / "report.md").write_text(report)
    print(report)
    print(f"wrote {output}/episodes.jsonl, metrics.json, report.md")
    return metrics


if __name__ == "__main__":
    main()
