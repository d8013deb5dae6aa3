"""Countdown settings without a shortcut: fixed-form share and the bundled models' 1st try.

    python -m benchmarks.preset_search                     # model-free rows of every setting
    flock /tmp/rrr-heavy.lock python -m benchmarks.preset_search \\
        --model qwen2.5-coder-0.5b --only n3-r20-nofixed   # one model row, resumable
    python -m benchmarks.preset_search --render-only       # only rewrite the table

A Countdown setting where one fixed form scores well (``a + b`` solves 44% of the 2-number
problems in 1..50) cannot tell learning arithmetic from learning the form. For each candidate
setting (count and range of the numbers, range of the target, and whether the generator leaves
out the items a fixed form solves), on the first ``--problems`` (200) distinct problems of its
validation split, this script measures:

1. model-free: the share solved by the best of the 16 fixed forms of
   :mod:`rrr_env.shortcuts` (chosen on these validation problems: the "shortcut share") and by
   their union; and, as a wider check, by the best *fold template* (the numbers in one of the
   same four orders, folded left to right with a fixed operator per gap, e.g.
   ``(max - mid) + min``: a constant policy too, though not one of the 16 forms) and the
   union of those;
2. with ``--model``: the model's greedy first attempt (``agents.evaluate.evaluate``, one
   answer, no retry) on the same problems, with ``--max-new-tokens`` (256) per answer: the
   accuracy, the share of answers cut at the token limit and the ``no_answer`` share.

Rows go to ``benchmarks/results/preset_search.jsonl`` (one per setting and model; a rerun
skips what is there, a larger ``--problems`` extends a row), the model's episodes to
``benchmarks/results/preset_search/<setting>__<model>.jsonl`` (appended chunk by chunk, so a
killed run resumes), and the table to ``preset_search.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

import rrr_env
from benchmarks.common import RESULTS, command_line, machine_line
from benchmarks.common import machine_info as _machine_info
from rrr_env.shortcuts import (
    COUNTDOWN_OPERATORS,
    COUNTDOWN_ORDERS,
    countdown_order,
    countdown_solving_forms,
    fold_value,
)

gym.register_envs(rrr_env)
MEASURED_CODE = [
    "rrr_env/tasks/countdown.py",
    "rrr_env/shortcuts.py",
    "rrr_env/verifiers/countdown.py",
    "agents/evaluate.py",
    "agents/rollout.py",
    "benchmarks/preset_search.py",
]
PACKAGES = ["torch", "transformers", "gymnasium"]
NAME = "preset_search"
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


@dataclass(frozen=True)
class Candidate:
    """One Countdown setting of the search: an env id and the knobs it adds."""

    name: str
    env: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def options(self) -> dict[str, Any]:
        """``gym.make`` options of the first-attempt evaluation on validation."""
        return {"split": "validation", "max_attempts": 1, **self.env_kwargs}

    def knobs(self) -> str:
        kwargs = dict(self.env_kwargs)
        count = _count(kwargs.pop("num_count", (3, 4)))
        numbers = _span(kwargs.pop("number_range", (1, 99)))
        text = f"{count} in {numbers}, target {_span(kwargs.pop('target_range', (10, 100)))}"
        if kwargs.pop("exclude_fixed_forms", False):
            text += ", fixed forms left out"
        return text + "".join(f", {k}={v}" for k, v in kwargs.items())


def _count(value: Any) -> str:
    return f"{value} numbers" if isinstance(value, int) else f"{value[0]}-{value[1]} numbers"


def _span(value: Sequence[int]) -> str:
    return f"{value[0]}..{value[1]}"


def _setting(name: str, num_count: Any, numbers: Any, target: Any, exclude: bool, note: str = ""):
    kwargs: dict[str, Any] = {
        "num_count": num_count,
        "number_range": list(numbers),
        "target_range": list(target),
    }
    if exclude:
        kwargs["exclude_fixed_forms"] = True
    return Candidate(name, "rrr/Countdown-v1", kwargs, note)


CANDIDATES = [
    _setting("n2-r50", 2, (1, 50), (1, 100), False, "the head-to-head's setting (smoke test)"),
    _setting("n2-r20", 2, (1, 20), (1, 40), False, "the CPU demos' setting (smoke test)"),
    _setting("n3-r10", 3, (1, 10), (1, 30), False),
    _setting("n3-r10-nofixed", 3, (1, 10), (1, 30), True),
    _setting("n3-r20", 3, (1, 20), (1, 50), False),
    _setting("n3-r20-nofixed", 3, (1, 20), (1, 50), True),
    _setting("n3-r12-t100", 3, (1, 12), (1, 100), False),
    _setting("n3-r12-t100-nofixed", 3, (1, 12), (1, 100), True),
    _setting("n3-r30", 3, (1, 30), (10, 60), False),
    _setting("n3-r30-nofixed", 3, (1, 30), (10, 60), True),
    _setting("n3-r99", 3, (1, 99), (10, 100), False),
    _setting("n3-r99-nofixed", 3, (1, 99), (10, 100), True),
    _setting("n4-r10", 4, (1, 10), (10, 50), False),
    _setting("n4-r10-nofixed", 4, (1, 10), (10, 50), True),
    _setting("n4-r20", 4, (1, 20), (10, 50), False),
    _setting("n4-r20-nofixed", 4, (1, 20), (10, 50), True),
    _setting("tinyzero", (3, 4), (1, 99), (10, 100), False, "TinyZero's distribution"),
    _setting("tinyzero-nofixed", (3, 4), (1, 99), (10, 100), True),
]
BY_NAME = {c.name: c for c in CANDIDATES}


def machine_info() -> dict[str, Any]:
    return _machine_info(MEASURED_CODE, PACKAGES)


# -- model-free ----------------------------------------------------------------------------


def problems(candidate: Candidate, n: int) -> tuple[list[int], Any]:
    """The first ``n`` distinct validation problems' indices, and the task they index."""
    from agents.items import distinct_indices

    make = lambda: gym.make(candidate.env, **candidate.options())  # noqa: E731
    env = make()
    return distinct_indices(make, n), env.unwrapped.task


def solving_templates(numbers: Sequence[int], target: int) -> set[str]:
    """Fold templates (an order, a fixed operator per gap, left to right) that reach ``target``.

    A superset of the 16 fixed forms (one operator in every gap), e.g. ``-+ descending`` is
    ``(max - mid) + min`` for three numbers. Templates are named per count of numbers.
    """
    found = set()
    for order in COUNTDOWN_ORDERS:
        values = countdown_order(numbers, order)
        for operators in itertools.product(COUNTDOWN_OPERATORS, repeat=len(numbers) - 1):
            if fold_value(values, operators) == target:
                found.add(f"{''.join(operators)} {order} ({len(numbers)} numbers)")
    return found


def model_free_row(candidate: Candidate, n: int) -> dict[str, Any]:
    """Fixed-form and fold-template shares on the first ``n`` distinct validation problems."""
    started = time.perf_counter()
    indices, task = problems(candidate, n)
    generate_seconds = time.perf_counter() - started
    forms, templates = Counter(), Counter()
    form_union = template_union = 0
    for index in indices:
        item = task[index]
        solving = countdown_solving_forms(item.numbers, item.target)
        forms.update(solving)
        form_union += bool(solving)
        tmpl = solving_templates(item.numbers, item.target)
        templates.update(tmpl)
        template_union += bool(tmpl)
    best_form, best_form_count = forms.most_common(1)[0] if forms else (None, 0)
    best_tmpl, best_tmpl_count = templates.most_common(1)[0] if templates else (None, 0)
    return {
        "kind": "model_free",
        "setting": candidate.name,
        "env": candidate.env,
        "env_kwargs": candidate.env_kwargs,
        "problems": len(indices),
        "items_scanned": indices[-1] + 1 if indices else 0,
        "generate_seconds": round(generate_seconds, 3),
        "best_form": best_form,
        "best_form_solved": best_form_count,
        "form_union_solved": form_union,
        "forms": dict(forms.most_common()),
        "best_template": best_tmpl,
        "best_template_solved": best_tmpl_count,
        "template_union_solved": template_union,
    }


# -- model ---------------------------------------------------------------------------------


def model_row(
    candidate: Candidate, model_name: str, n: int, args: argparse.Namespace, episodes: Path
) -> dict[str, Any]:
    """The model's greedy first attempt on the first ``n`` distinct validation problems."""
    from agents.backends import TransformersBackend
    from agents.evaluate import evaluate
    from agents.models import load_model_and_tokenizer
    from agents.rollout import PhaseSampling, SamplingParams

    indices, task = problems(candidate, n)
    model, tokenizer = load_model_and_tokenizer(model_name, dtype=args.dtype)
    backend = TransformersBackend(model, tokenizer, batch_size=args.batch_size, seed=0)
    answer = SamplingParams(args.max_new_tokens, 0.0)
    started = time.perf_counter()
    done, _ = evaluate(
        lambda: gym.make(candidate.env, **candidate.options()),
        backend,
        indices,
        sampling=PhaseSampling(attempt=answer, reflection=answer, retry=answer),
        episodes_path=episodes,
        chunk_items=args.batch_size,
    )
    seconds = time.perf_counter() - started
    return {
        "kind": "model",
        "setting": candidate.name,
        "env": candidate.env,
        "env_kwargs": candidate.env_kwargs,
        "model": model_name,
        "dtype": str(model.dtype).removeprefix("torch."),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "eval_seconds_this_run": round(seconds, 1),
        **score(done, task),
    }


def score(episodes: Sequence[Any], task: Any) -> dict[str, Any]:
    """First-attempt accuracy, cut-at-limit and error shares, split by fixed-form solvability."""
    reasons, solved, cut, tokens, seconds = Counter(), [], 0, 0, 0.0
    on_form = on_form_solved = 0
    for episode in episodes:
        turn = episode.graded[0]
        item = task[episode.index]
        form = bool(countdown_solving_forms(item.numbers, item.target))
        reasons[turn.reason] += 1
        cut += not turn.stopped
        tokens += turn.completion_tokens
        seconds += turn.seconds
        on_form += form
        if turn.correct:
            solved.append(episode.index)
            on_form_solved += form
    n = len(episodes)
    return {
        "problems": n,
        "first_try_solved": len(solved),
        "first_try": len(solved) / n,
        "first_try_ci95": wilson(len(solved), n),
        "cut_at_limit": cut,
        "no_answer": reasons.get("no_answer", 0),
        "reasons": dict(reasons.most_common()),
        "mean_completion_tokens": round(tokens / n, 1),
        "generation_seconds": round(seconds, 1),
        "form_solvable_problems": on_form,
        "form_solvable_solved": on_form_solved,
        "solved_indices": solved,
    }


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """The Wilson 95% interval of a proportion ``k / n``."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


# -- rendering -----------------------------------------------------------------------------


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.1f}%)" if n else "-"


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table of the model-free and model rows."""
    free = {r["setting"]: r for r in rows if r["kind"] == "model_free"}
    models = [r for r in rows if r["kind"] == "model"]
    lines = [
        "# Countdown settings without a shortcut",
        "",
        "Validation split of `rrr/Countdown-v1` (10% of the problems), the first distinct "
        "problems of each setting. *Best fixed form*: the one of the 16 forms of "
        "`rrr_env.shortcuts` (one operator folded over the numbers in the given, reversed, "
        "ascending or descending order) that solves the most of these problems, i.e. chosen on "
        "validation: the **shortcut share**. *Best fold template*: the same orders with a fixed "
        "operator per gap (e.g. `-+ descending` = `(max - mid) + min`), a wider family of "
        "constant policies than the 16 forms. *Fixed forms left out*: the generator's "
        "`exclude_fixed_forms=True` knob, so the 16 forms solve none of the items by "
        "construction.",
        "",
        "## Model-free shares",
        "",
        "| setting | knobs | problems | best fixed form (shortcut share) | union of the 16 forms "
        "| best fold template | union of fold templates | generation s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for candidate in CANDIDATES:
        row = free.get(candidate.name)
        if row is None:
            continue
        n = row["problems"]
        note = f" ({candidate.note})" if candidate.note else ""
        lines.append(
            f"| {candidate.name}{note} | {candidate.knobs()} | {n} "
            f"| {_pct(row['best_form_solved'], n)} {row['best_form'] or ''} "
            f"| {_pct(row['form_union_solved'], n)} "
            f"| {_pct(row['best_template_solved'], n)} {row['best_template'] or ''} "
            f"| {_pct(row['template_union_solved'], n)} | {row['generate_seconds']:.1f} |"
        )
    if models:
        lines += [
            "",
            "## Vanilla first attempt (greedy)",
            "",
            "One answer per problem (`max_attempts=1`, `agents.evaluate.evaluate` with a "
            "`TransformersBackend`), temperature 0, on the same validation problems as above. "
            "*Cut*: answers that hit the token limit; *no_answer*: no `\\boxed{}` answer found. "
            "*On form-solvable problems*: solved / present among the problems that a fixed form "
            "solves (0 where they are left out); *on template-solvable problems*: the same for "
            "the fold templates.",
            "",
            "| setting | model | dtype | tokens | problems | 1st try (95% CI) | cut at limit "
            "| no_answer | other errors | mean tokens | on form-solvable problems "
            "| on template-solvable problems | minutes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        models.sort(key=lambda r: (_order(r["setting"]), r["model"], r["max_new_tokens"]))
        for row in models:
            n = row["problems"]
            low, high = row["first_try_ci95"]
            other = {k: v for k, v in row["reasons"].items() if k not in ("ok", "no_answer")}
            other_text = ", ".join(f"{k} {v}" for k, v in other.items()) or "-"
            lines.append(
                f"| {row['setting']} | {row['model']} | {row['dtype']} | {row['max_new_tokens']} "
                f"| {n} | {_pct(row['first_try_solved'], n)} [{100 * low:.1f}, {100 * high:.1f}] "
                f"| {_pct(row['cut_at_limit'], n)} | {_pct(row['no_answer'], n)} | {other_text} "
                f"| {row['mean_completion_tokens']} "
                f"| {row['form_solvable_solved']}/{row['form_solvable_problems']} "
                f"| {template_split(row)} | {row['generation_seconds'] / 60:.1f} |"
            )
    machines = {r["machine_line"] for r in rows if "machine_line" in r}
    commands = sorted({r["command"] for r in rows if "command" in r})
    lines += ["", "## Machine and commands", ""]
    lines += [f"- {m}" for m in sorted(machines)]
    lines += ["", "Each row was produced by one of:", ""]
    lines += [f"    {c}" for c in commands]
    return "\n".join(lines) + "\n"


def template_split(row: dict[str, Any]) -> str:
    """``solved / present`` among a model row's problems that a fold template solves."""
    candidate = BY_NAME.get(row["setting"])
    if candidate is None:
        return "-"
    indices, task = problems(candidate, row["problems"])
    solved = set(row["solved_indices"])
    present = [i for i in indices if solving_templates(task[i].numbers, task[i].target)]
    return f"{sum(i in solved for i in present)}/{len(present)}"


def _order(name: str) -> int:
    return [c.name for c in CANDIDATES].index(name) if name in BY_NAME else len(CANDIDATES)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--only", nargs="+", default=None, help=f"settings: {', '.join(BY_NAME)}")
    parser.add_argument("--model", default=None, help=f"add a model row: one of {MODELS}")
    parser.add_argument("--problems", type=int, default=200, help="distinct problems (200)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="answer limit (256)")
    parser.add_argument("--batch-size", type=int, default=16, help="conversations per call")
    parser.add_argument("--dtype", default="auto", help="auto (the CPU's fast dtype) / float32")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--render-only", action="store_true", help="rewrite the markdown only")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(BY_NAME))
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; known: {', '.join(BY_NAME)}")
    if args.model is not None and args.model not in MODELS:
        parser.error(f"--model must be one of {', '.join(MODELS)}, got {args.model!r}")
    if args.problems < 1 or args.max_new_tokens < 1 or args.batch_size < 1:
        parser.error("--problems, --max-new-tokens and --batch-size must be >= 1")
    if args.dtype not in ("auto", "bfloat16", "float32"):
        parser.error(f"--dtype must be auto, bfloat16 or float32, got {args.dtype!r}")
    return args


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    partial = path.with_suffix(".jsonl.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)  # atomic: a kill never leaves half a file


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    if row["kind"] == "model_free":
        return ("model_free", row["setting"])
    return ("model", row["setting"], row["model"], row["max_new_tokens"])


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jsonl, markdown = args.out_dir / f"{NAME}.jsonl", args.out_dir / f"{NAME}.md"
    rows = {_key(r): r for r in read_rows(jsonl)}
    if not args.render_only:
        machine = machine_info()
        extra = {"command": command_line("benchmarks.preset_search", argv), "machine": machine}
        extra["machine_line"] = machine_line(machine)
        chosen = [BY_NAME[name] for name in args.only] if args.only else CANDIDATES
        for candidate in chosen:
            if args.model is None:
                key = ("model_free", candidate.name)
                if key in rows and rows[key]["problems"] >= args.problems:
                    continue
                rows[key] = {**model_free_row(candidate, args.problems), **extra}
                print(f"{candidate.name}: {rows[key]['best_form_solved']} by the best form")
            else:
                key = ("model", candidate.name, args.model, args.max_new_tokens)
                if key in rows and rows[key]["problems"] >= args.problems:
                    continue
                folder = args.out_dir / NAME
                folder.mkdir(exist_ok=True)
                episodes = folder / f"{candidate.name}__{args.model}__t{args.max_new_tokens}.jsonl"
                rows[key] = {
                    **model_row(candidate, args.model, args.problems, args, episodes),
                    **extra,
                }
                print(f"{candidate.name}: {rows[key]['first_try_solved']} solved by {args.model}")
            # Merge with what other runs wrote meanwhile (one setting per run, in parallel).
            rows = {**{_key(r): r for r in read_rows(jsonl)}, key: rows[key]}
            write_rows(jsonl, sorted(rows.values(), key=lambda r: str(_key(r))))
    text = render(list(rows.values()))
    markdown.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {jsonl} and {markdown}")


if __name__ == "__main__":
    main()
