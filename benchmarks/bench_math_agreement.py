r"""Agreement of the GSM8K verifier with an independent grader, ``math-verify``, on a corpus.

The corpus is generated (seeded): gold answers of the kinds GSM8K has and a few more
(integers, large integers, negatives, decimals, fractions), written in many ways: plain,
thousands separators, trailing zeros, ``\frac``, ``a/b``, currency, units, percent,
``\text{}``, ``x = ``, boxed or not, with distractor numbers before or after, two boxes, and
hostile forms (``not 5``, ``5 squared``, ``twice 5``, ``5 = 6``, count nouns, arithmetic,
scientific notation, non-ASCII digits). About half the responses give a wrong value. Each
response is judged by ``rrr_env.verifiers.math_answer.verify`` and by ``math_verify.verify(
parse(gold), parse(response))`` (Hugging Face's grader; it parses with sympy, so it is used
here as a reference only, never in ``rrr_env``). Disagreements are counted per generator kind;
the kinds where they are expected, and why, are :data:`EXPECTED_DISAGREEMENTS`.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_math_agreement            # 5,000 responses
    OMP_NUM_THREADS=1 python -m benchmarks.bench_math_agreement --quick    # 500, temp dir
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from benchmarks.common import (
    add_output_arguments,
    machine_info,
    machine_line,
    package_version,
    resolve_out_dir,
    run_main,
    write_row,
)
from rrr_env.verifiers import math_answer

NAME = "math_agreement"
MEASURED_CODE = ("rrr_env/verifiers/math_answer.py", "rrr_env/verifiers/boxed.py")
PACKAGES = ("math-verify", "latex2sympy2_extended", "sympy")

#: Generator kinds where the two graders are expected to differ, and why. The direction is
#: ``rrr rejects`` (we judge wrong, math-verify correct) or ``rrr accepts`` (the reverse).
EXPECTED_DISAGREEMENTS: dict[str, tuple[str, str]] = {
    # By design (issue 11): only a closed list of unit and currency words is dropped.
    "count_noun": ("rrr rejects", "math-verify drops any trailing word ('18 apples' -> 18)"),
    "value_word": (
        "rrr rejects",
        "math-verify reads '0 squared' as a product of symbols with 0, which is 0",
    ),
    # By design: what stands before "=" must be a name, not a number.
    "number_equals": ("rrr rejects", "math-verify takes the right side of '5 = 6' as 6"),
    # By design: no arithmetic is evaluated.
    "arithmetic": ("rrr rejects", "math-verify evaluates '3 + 15' with sympy"),
    "scientific": ("rrr rejects", "math-verify reads 1.8e3 / 1.8 \\times 10^{3}"),
    "mixed_number": ("rrr rejects", "math-verify reads '2 \\frac{1}{2}' as 2 + 1/2"),
    # math-verify compares numbers rounded to 6 places; we compare exactly.
    "rounded_decimal": ("rrr rejects", "math-verify: 0.333333 == 1/3 after rounding"),
    # Running text: math-verify takes the first number after 'answer is' / the last boxed or
    # number in its own order; we take the last box, else the last number.
    "unboxed_then_distractor": (
        "rrr rejects",
        "no box: we read the last number, math-verify often the one after 'the answer is'",
    ),
    # Where math-verify's reading is not GSM8K's.
    "two_boxes": (
        "rrr accepts",
        "the last box is the answer; math-verify collects every box into a set {a, b}",
    ),
    "boxed_percent": (
        "rrr accepts",
        "GSM8K's gold for 'x%' is x; math-verify reads some x\\% as x/100 (decimals)",
    ),
    "boxed_text_wrapped": ("rrr accepts", "math-verify misses some decimals in \\text{...}"),
    "boxed_unit_word": (
        "rrr accepts",
        "math-verify reads some number + unit word ('350 dollars') as a product of symbols",
    ),
    "unboxed_currency": (
        "rrr accepts",
        "math-verify takes the '$' of '$61/6' for a LaTeX math delimiter and misses the value",
    ),
    "unboxed_final": (
        "rrr accepts",
        "math-verify reads the full stop of '65/7.' as a decimal point and then misses 65/7",
    ),
}
#: Kinds whose responses are honest answers: the verdict must be exactly "the shown value is
#: the gold one". In the other kinds (hostile or outside the accepted grammar) nothing is
#: correct, except ``rounded_decimal`` when the rounding happens to be exact.
HONEST_KINDS = frozenset(
    {
        *("boxed_plain", "boxed_commas", "boxed_trailing_zeros", "boxed_latex_frac"),
        *("boxed_slash_frac", "boxed_currency", "boxed_unit_text", "boxed_unit_word"),
        *("boxed_percent", "boxed_text_wrapped", "boxed_label", "math_mode_boxed"),
        *("boxed_then_check", "two_boxes", "unboxed_final", "unboxed_currency"),
        "empty_box_then_number",
    }
)


@dataclass(frozen=True)
class Sample:
    """One response to grade."""

    kind: str
    right: bool  # whether the generator meant the shown value to be the gold one
    response: str
    gold: str


def _gold(rng: random.Random) -> Fraction:
    roll = rng.random()
    if roll < 0.45:
        return Fraction(rng.randint(0, 999))
    if roll < 0.65:
        return Fraction(rng.randint(1_000, 9_999_999))
    if roll < 0.75:
        return Fraction(-rng.randint(1, 999))
    if roll < 0.9:
        return Fraction(rng.randint(1, 9_999), rng.choice((2, 4, 5, 10, 20, 100)))
    return Fraction(rng.randint(1, 99), rng.choice((3, 6, 7, 9, 11)))


def _gold_text(value: Fraction) -> str:
    """GSM8K-style gold: an integer, else a terminating decimal, else ``p/q``."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator == 1:
        places = 0
        while (value * 10**places).denominator != 1:
            places += 1
        return f"{float(value):.{places}f}"
    return f"{value.numerator}/{value.denominator}"


def _plain(value: Fraction) -> str:
    """The shortest exact plain text: integer, decimal, or ``p/q``."""
    return _gold_text(value)


def _wrong(value: Fraction, rng: random.Random) -> Fraction:
    delta = rng.choice((1, -1, 2, 10, Fraction(1, 2)))
    other = value + delta
    return other if other != value else value + 3


def _commas(value: Fraction) -> str:
    text = _plain(value)
    if "/" in text:
        return text
    whole, dot, decimals = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}{dot}{decimals}"


def _trailing_zeros(value: Fraction) -> str:
    """``18.00``, ``2.50``; a fraction that is not a terminating decimal stays ``p/q``."""
    text = _plain(value)
    if "/" in text:
        return text
    return text + "0" if "." in text else text + ".00"


def _latex_frac(value: Fraction, rng: random.Random) -> str:
    sign = "-" if value < 0 else ""
    command = rng.choice(("\\frac", "\\dfrac", "\\tfrac"))
    magnitude = abs(value)
    return f"{sign}{command}{{{magnitude.numerator}}}{{{magnitude.denominator}}}"


# Each kind: (value as shown, rng) -> the response text. The kind's value is the gold value
# for "right" samples, another value for "wrong" ones.
Render = Callable[[Fraction, random.Random], str]

UNITS = ("dollars", "cm", "hours", "km", "kg", "minutes", "miles", "liters", "pounds", "days")
NOUNS = ("apples", "students", "cookies", "marbles", "books", "eggs", "cars", "pages")
VALUE_WORDS = ("squared", "cubed", "thousand", "million", "dozen", "halves")
PREFIX_WORDS = ("not", "twice", "half of", "minus", "negative", "about", "at least")
DISTRACTORS = (
    "First she had 12, then she bought 7 more.",
    "We know 3 + 4 = 7 and 16 - 9 = 7.",
    "Step 1: 48 / 2 = 24. Step 2: 24 + 48 = 72.",
    "There are 60 minutes in an hour and 24 hours in a day.",
)


def _boxed(text: str) -> str:
    return f"\\boxed{{{text}}}"


def _say(rng: random.Random, answer: str) -> str:
    return f"{rng.choice(DISTRACTORS)} So the answer is {answer}."


KINDS: dict[str, Render] = {
    "boxed_plain": lambda v, r: _say(r, _boxed(_plain(v))),
    "boxed_commas": lambda v, r: _say(r, _boxed(_commas(v))),
    "boxed_trailing_zeros": lambda v, r: _say(r, _boxed(_trailing_zeros(v))),
    "boxed_latex_frac": lambda v, r: _say(r, _boxed(_latex_frac(v, r))),
    "boxed_slash_frac": lambda v, r: _say(r, _boxed(f"{v.numerator}/{v.denominator}")),
    "boxed_currency": lambda v, r: _say(r, _boxed("\\$" + _commas(v))),
    "boxed_unit_text": lambda v, r: _say(r, _boxed(f"{_plain(v)} \\text{{ {r.choice(UNITS)}}}")),
    "boxed_unit_word": lambda v, r: _say(r, _boxed(f"{_plain(v)} {r.choice(UNITS)}")),
    "boxed_percent": lambda v, r: _say(r, _boxed(f"{_plain(v)}\\%")),
    "boxed_text_wrapped": lambda v, r: _say(r, _boxed(f"\\text{{{_plain(v)}}}")),
    "boxed_label": lambda v, r: _say(r, _boxed(f"{r.choice(('x', 'n', 'total'))} = {_plain(v)}")),
    "math_mode_boxed": lambda v, r: f"{r.choice(DISTRACTORS)} $\\boxed{{{_plain(v)}}}$",
    "boxed_then_check": lambda v, r: f"{_boxed(_plain(v))}. Check: 3 + 4 = 7, fine.",
    "two_boxes": lambda v, r: f"Maybe {_boxed(_plain(v + 5))}? No: {_boxed(_plain(v))}.",
    "unboxed_final": lambda v, r: f"{r.choice(DISTRACTORS)} The answer is {_plain(v)}.",
    "unboxed_currency": lambda v, r: f"{r.choice(DISTRACTORS)} She earns ${_commas(v)}.",
    "unboxed_then_distractor": lambda v, r: (
        f"The answer is {_plain(v)}. (There are 12 months in a year.)"
    ),
    "count_noun": lambda v, r: _say(r, _boxed(f"{_plain(v)} {r.choice(NOUNS)}")),
    "value_word": lambda v, r: _say(r, _boxed(f"{_plain(v)} {r.choice(VALUE_WORDS)}")),
    "prefix_word": lambda v, r: _say(r, _boxed(f"{r.choice(PREFIX_WORDS)} {_plain(v)}")),
    "number_equals": lambda v, r: _say(r, _boxed(f"{_plain(v + 7)} = {_plain(v)}")),
    "arithmetic": lambda v, r: _say(r, _boxed(f"{_plain(v - 3)} + 3")),
    "scientific": lambda v, r: _say(r, _boxed(f"{float(v) / 1000:g} \\times 10^{{3}}")),
    "mixed_number": lambda v, r: _say(r, _boxed(f"{int(v) - 1} \\frac{{1}}{{2}}")),
    "rounded_decimal": lambda v, r: _say(r, _boxed(f"{float(v):.6f}")),
    "non_ascii_digits": lambda v, r: _say(r, _boxed(_plain(v).translate(_ARABIC_INDIC))),
    "empty_box_then_number": lambda v, r: f"Put it in \\boxed{{}}. Total: {_plain(v)}",
    "no_answer": lambda v, r: "I am not sure how to solve this problem.",
}
_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def build_corpus(count: int, seed: int = 0) -> list[Sample]:
    """``count`` samples, cycling over the kinds so that each gets its share."""
    samples = []
    names = list(KINDS)
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        kind = names[index % len(names)]
        value = _gold(rng)
        if kind in ("mixed_number",):
            value = Fraction(rng.randint(2, 99)) + Fraction(1, 2)
        if kind == "rounded_decimal":
            value = Fraction(rng.randint(1, 99), rng.choice((3, 7, 9, 11)))
        right = rng.random() < 0.55
        shown = value if right else _wrong(value, rng)
        samples.append(Sample(kind, right, KINDS[kind](shown, rng), _gold_text(value)))
    return samples


def math_verify_grader() -> Callable[[str, str], bool]:
    """``(response, gold) -> correct`` by math-verify, with the gold parsed once per answer."""
    from math_verify import parse, verify

    golds: dict[str, Any] = {}

    def grade(response: str, gold: str) -> bool:
        if gold not in golds:
            golds[gold] = parse(gold)
        return bool(verify(golds[gold], parse(response)))

    return grade


def grade_corpus(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """One row per sample: both verdicts."""
    theirs = math_verify_grader()
    rows = []
    for sample in samples:
        ours = math_answer.verify(sample.response, sample.gold)
        rows.append(
            {
                "kind": sample.kind,
                "right": sample.right,
                "gold": sample.gold,
                "response": sample.response,
                "rrr_correct": ours.correct,
                "rrr_reason": ours.reason,
                "math_verify_correct": theirs(sample.response, sample.gold),
            }
        )
    return rows


def unexpected_disagreements(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Disagreements outside :data:`EXPECTED_DISAGREEMENTS` (or in the unexpected direction)."""
    bad = []
    for row in rows:
        if row["rrr_correct"] == row["math_verify_correct"]:
            continue
        expected = EXPECTED_DISAGREEMENTS.get(row["kind"])
        direction = "rrr accepts" if row["rrr_correct"] else "rrr rejects"
        if expected is None or expected[0] not in (direction, "both"):
            bad.append(row)
    return bad


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kind: responses, agreements, disagreements in each direction, correct counts."""
    by_kind: dict[str, Counter[str]] = {}
    for row in rows:
        counts = by_kind.setdefault(row["kind"], Counter())
        counts["responses"] += 1
        counts["agree"] += row["rrr_correct"] == row["math_verify_correct"]
        counts["rrr_rejects"] += row["math_verify_correct"] and not row["rrr_correct"]
        counts["rrr_accepts"] += row["rrr_correct"] and not row["math_verify_correct"]
        counts["rrr_correct"] += row["rrr_correct"]
        counts["math_verify_correct"] += row["math_verify_correct"]
    return [{"kind": kind, **counts} for kind, counts in by_kind.items()]


def run(args: argparse.Namespace, jsonl: Path, command: str) -> None:
    rows = grade_corpus(build_corpus(args.count, args.seed))
    meta = {
        "command": command,
        "count": len(rows),
        "seed": args.seed,
        "machine": machine_info(MEASURED_CODE, PACKAGES),
        "math_verify": package_version("math-verify"),
        "unexpected_disagreements": len(unexpected_disagreements(rows)),
    }
    # Small on purpose: a summary per kind, then only the responses the graders disagree on.
    with jsonl.open("w", encoding="utf-8") as handle:
        write_row(handle, {"benchmark": NAME, "meta": meta})
        for summary in summarise(rows):
            write_row(handle, {"benchmark": NAME, "summary": True, **summary})
        for row in rows:
            if row["rrr_correct"] != row["math_verify_correct"]:
                write_row(handle, {"benchmark": NAME, "disagreement": True, **row})


def render(rows: list[dict[str, Any]]) -> str:
    meta = next(row["meta"] for row in rows if "meta" in row)
    summaries = [row for row in rows if row.get("summary")]
    total = sum(row["responses"] for row in summaries)
    agree = sum(row["agree"] for row in summaries)
    unexpected = meta["unexpected_disagreements"]
    classes = [row for row in summaries if row["agree"] != row["responses"]]
    lines = [
        "# GSM8K verifier vs math-verify",
        "",
        f"Command: `OMP_NUM_THREADS=1 {meta['command']}`",
        "",
        f"Machine: {machine_line(meta['machine'])}",
        "",
        f"**Agree on {agree:,} of {total:,} responses**; the {total - agree:,} disagreements fall "
        f"in {len(classes)} expected classes"
        + (" and no other." if not unexpected else f"; {unexpected} fall outside them."),
        "",
        f"The corpus is generated with seed {meta['seed']} (see the docstring of "
        f"`benchmarks/bench_math_agreement.py`); math-verify {meta['math_verify']} grades "
        "`verify(parse(gold), parse(response))` with its defaults. *rrr rejects*: we judge the "
        "response wrong, math-verify right; *rrr accepts*: the reverse. The JSONL lists every "
        "response the two disagree on.",
        "",
        "| kind | responses | agree | rrr rejects | rrr accepts | rrr correct "
        "| math-verify correct | expected disagreement |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in summaries:
        why = EXPECTED_DISAGREEMENTS.get(row["kind"])
        lines.append(
            f"| {row['kind']} | {row['responses']} | {row['agree']} | {row['rrr_rejects']} | "
            f"{row['rrr_accepts']} | {row['rrr_correct']} | {row['math_verify_correct']} | "
            f"{f'{why[0]}: {why[1]}' if why else '—'} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5_000, help="responses in the corpus")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    add_output_arguments(parser, "500 responses, temp dir")
    args = parser.parse_args(argv)
    if args.quick:
        args.count = 500
    resolve_out_dir(args)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    run_main("benchmarks.bench_math_agreement", NAME, parse_args, run, render, argv)


if __name__ == "__main__":
    main()
