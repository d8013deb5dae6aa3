"""Fixed-form shortcut answers: graded by each task's own verifier, chosen on other items."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import rrr_env
from agents.items import distinct_indices
from rrr_env.shortcuts import (
    COUNTDOWN_ORDERS,
    best_form,
    countdown_forms,
    countdown_solving_forms,
    form_solves,
    forms_for,
    gsm8k_forms,
    query_values,
    question_numbers,
)
from rrr_env.tasks.countdown import CountdownItem
from rrr_env.tasks.function_calling import FunctionCallingTask
from rrr_env.tasks.gsm8k import GSM8KItem, GSM8KTask

gym.register_envs(rrr_env)
N2_R50 = {"num_count": 2, "number_range": [1, 50], "target_range": [1, 100]}


def task_of(env_id: str, **kwargs):
    return gym.make(env_id, **kwargs).unwrapped.task


def test_countdown_forms_are_graded_by_the_verifier_and_agree_with_the_exact_values():
    task = task_of("rrr/Countdown-v1", split="test", **N2_R50)
    indices = range(60)
    for form in countdown_forms():
        solved = form_solves(task, form, indices)
        by_value = {i for i in indices if form.name in countdown_solving_forms(
            task[i].numbers, task[i].target)}  # fmt: skip
        assert solved == by_value, form.name


def test_the_sum_is_the_best_form_on_the_2_number_validation_split():
    """The setting of the committed RISE run: one constant form solves half the problems."""
    make = lambda: gym.make("rrr/Countdown-v1", split="validation", **N2_R50)  # noqa: E731
    task = make().unwrapped.task
    choice = best_form(task, distinct_indices(make, 200))
    assert choice.form.name == "+ given"
    assert len(choice.solved["+ given"]) == 104
    assert choice.second.name == "- descending"
    # The second answer is chosen for what it adds to the first.
    assert choice.solved["- descending"] - choice.solved["+ given"]


def test_gsm8k_forms_read_the_question_numbers():
    assert [str(n) for n in question_numbers("1,200 apples, 3.5 kg, 7th row, x2 and 40.")] == [
        "1200",
        "7/2",
        "7",
        "40",
    ], "x2 is a name, not a number"
    item = GSM8KItem(
        "q", "Tom has 3 boxes of 12 pens and gives away 5. How many are left?", "", "31"
    )
    task = GSM8KTask(data=[{"question": item.question, "answer": "#### 31"}])
    responses = {form.name: form.respond(item) for form in gsm8k_forms()}
    assert responses == {
        "largest number": "\\boxed{12}",
        "smallest number": "\\boxed{3}",
        "first number": "\\boxed{3}",
        "last number": "\\boxed{5}",
        "sum of the numbers": "\\boxed{20}",
    }
    assert task.verify(task[0], responses["sum of the numbers"]).reason == "wrong_answer"
    no_numbers = GSM8KItem("q", "How many legs has a spider?", "", "8")
    assert task.verify(no_numbers, forms_for(task)[0].respond(no_numbers)).reason == "no_answer"


def test_a_gsm8k_form_solves_the_problems_whose_answer_it_picks():
    rows = [
        {"question": "A shop sells 7 pens and 9 pencils. How many items?", "answer": "#### 16"},
        {"question": "Anna has 40 stickers. She has 4 friends. How many?", "answer": "#### 40"},
    ]
    task = GSM8KTask(data=rows)
    by_name = {form.name: form_solves(task, form, [0, 1]) for form in forms_for(task)}
    assert by_name["sum of the numbers"] == {0} and by_name["largest number"] == {1}


def test_query_values_are_verbatim_numbers_quoted_texts_and_names():
    assert query_values("What's the weather in New York? Use 'celsius' for 3 days.") == {
        "numbers": [3],
        "strings": ["celsius", "New York"],
    }
    assert query_values('Convert 2.5 "USD" to EUR.') == {
        "numbers": [2.5],
        "strings": ["USD", "EUR"],
    }


def test_function_call_forms_fill_the_first_tool_from_the_query(tmp_path):
    tools = [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"city": {"type": "str"}, "unit": {"type": "str, optional"}},
        },
        {
            "name": "convert_currency",
            "description": "Convert an amount between currencies.",
            "parameters": {"amount": {"type": "float"}, "to": {"type": "str"}},
        },
    ]
    rows = [
        {"id": 1, "query": "What is the weather in Lisbon?", "tools": tools,
         "answers": [{"name": "get_weather", "arguments": {"city": "Lisbon"}}]},
        {"id": 2, "query": "Please convert 20 dollars to 'EUR'.", "tools": tools,
         "answers": [{"name": "convert_currency", "arguments": {"amount": 20, "to": "EUR"}}]},
    ]  # fmt: skip
    for style in ("qwen", "llama"):
        task = FunctionCallingTask(data=rows, prompt_style=style)
        solved = {form.name: form_solves(task, form, [0, 1]) for form in forms_for(task)}
        assert solved == {
            "first tool, query values": {0},
            "best-named tool, query values": {0, 1},
            "first tool, no arguments": set(),
        }, style
        response = forms_for(task)[0].respond(task[0])
        expected = {"name": "get_weather", ("arguments" if style == "qwen" else "parameters"): {
            "city": "Lisbon"}}  # fmt: skip
        body = response.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>")
        assert json.loads(body) == expected


def test_bfcl_forms_are_graded_by_bfcls_rules():
    pytest.importorskip("bfcl_eval")
    task = task_of("rrr/BFCL-v0", split="test", category="simple_python")
    indices = list(range(len(task)))
    choice = best_form(task, indices)
    # A verbatim copy of the query's numbers and names solves some simple calls, not most.
    assert 0 < len(choice.solved[choice.form.name]) < len(indices) / 2
    assert not choice.solved["first tool, no arguments"]


def test_forms_for_refuses_a_task_without_forms():
    class Other:
        name = "other"

    with pytest.raises(ValueError, match="no fixed forms for task 'other'"):
        forms_for(Other())


def test_countdown_items_of_more_numbers_fold_left_to_right():
    task = task_of("rrr/Countdown-v0", split="test", num_count=3, size=4)
    item = CountdownItem("c", (2, 3, 4), 24, "")
    by_name = {form.name: form.respond(item) for form in countdown_forms()}
    assert by_name["+ given"] == "\\boxed{(2 + 3) + 4}"
    assert by_name["- descending"] == "\\boxed{(4 - 3) - 2}"
    assert task.verify(item, by_name["+ given"]).reason == "missed_target"
    assert task.verify(item, by_name["* reversed"]).correct
    assert countdown_solving_forms((2, 3, 4), 24) == [f"* {o}" for o in COUNTDOWN_ORDERS]
