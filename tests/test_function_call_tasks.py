"""Function-calling tasks: xLAM loader on fixtures, BFCL on the installed data, prompts, envs."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import rrr_env
from rrr_env.tasks import make_task
from rrr_env.tasks.function_calling import (
    LLAMA_SYSTEM,
    QWEN_SYSTEM,
    REFLECTION_REQUEST,
    FunctionCallingTask,
    split_of,
)
from rrr_env.verifiers import function_call as fc
from rrr_env.verifiers.function_call import ToolCall, render_calls

gym.register_envs(rrr_env)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
XLAM_JSON = FIXTURES / "xlam_sample.json"
XLAM_JSONL = FIXTURES / "xlam_sample.jsonl"

requires_bfcl = pytest.mark.skipif(
    importlib.util.find_spec("bfcl_eval") is None,
    reason="bfcl-eval is not installed: pip install --no-deps bfcl-eval==2026.3.23",
)

#: Items per category in bfcl-eval 2026.3.23, and how many fall in the test split.
BFCL_COUNTS = {
    "simple_python": (400, 85),
    "multiple": (200, 50),
    "parallel": (200, 42),
    "parallel_multiple": (200, 37),
    "live_simple": (258, 47),
    "live_multiple": (1053, 195),
    "live_parallel": (16, 6),
    "live_parallel_multiple": (24, 6),
}
#: Items whose ground truth contradicts their own function docs, so that BFCL's checker rejects
#: every answer (its own gold included): a required array parameter whose list of acceptable
#: values is empty (live_simple_106, _112), or a gold parameter that is neither documented nor
#: optional (live_multiple_862, _964; the latter also omits the required "statement").
BFCL_UNSATISFIABLE = {
    "live_simple_106-63-0",
    "live_simple_112-68-0",
    "live_multiple_862-181-3",
    "live_multiple_964-207-0",
}


def xlam_records() -> list[dict]:
    return json.loads(XLAM_JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def bfcl():
    pytest.importorskip("bfcl_eval", reason="pip install --no-deps bfcl-eval==2026.3.23")
    from rrr_env.tasks import bfcl as module

    return module


# -- xLAM -----------------------------------------------------------------------------------


def test_xlam_loaders_agree_on_json_jsonl_records_and_datasets():
    from_json = FunctionCallingTask(data=XLAM_JSON)
    from_jsonl = FunctionCallingTask(data=str(XLAM_JSONL))
    from_records = FunctionCallingTask(data=xlam_records())
    assert len(from_json) == 12
    items = [from_json[i] for i in range(len(from_json))]
    assert items == [from_jsonl[i] for i in range(12)] == [from_records[i] for i in range(12)]
    assert items[2].id == "xlam-2"
    assert items[2].answers == (
        {"name": "is_prime", "arguments": {"n": 97}},
        {"name": "is_prime", "arguments": {"n": 91}},
    )
    datasets = pytest.importorskip("datasets")
    from_dataset = FunctionCallingTask(data=datasets.Dataset.from_list(xlam_records()))
    assert [from_dataset[i] for i in range(12)] == items


def test_xlam_split_is_a_stable_partition_by_id():
    train = FunctionCallingTask(data=XLAM_JSON, split="train")
    test = FunctionCallingTask(data=XLAM_JSON, split="test")
    train_ids = {train.item_id(train[i]) for i in range(len(train))}
    test_ids = {test.item_id(test[i]) for i in range(len(test))}
    assert (len(train_ids), len(test_ids)) == (11, 1)
    assert test_ids == {"xlam-0"} and not train_ids & test_ids
    assert all(split_of(i) == "train" for i in train_ids)


def test_xlam_gold_answers_verify_in_every_style_and_wrong_ones_do_not():
    for style in fc.STYLES:
        task = FunctionCallingTask(data=XLAM_JSON, prompt_style=style)
        for i in range(len(task)):
            item = task[i]
            verdict = task.verify(item, render_calls(item.answers, style))
            assert verdict.correct, (style, item.id, verdict)
            first = item.answers[0]
            renamed = [ToolCall(first["name"] + "_v2", first["arguments"])]
            assert task.verify(item, render_calls(renamed, style)).reason in (
                "wrong_tool",
                "wrong_count",
            )


def test_xlam_rejects_bad_data_with_the_record_number():
    records = xlam_records()
    with pytest.raises(ValueError, match="data is required"):
        FunctionCallingTask()
    with pytest.raises(FileNotFoundError):
        FunctionCallingTask(data=FIXTURES / "missing.json")
    with pytest.raises(ValueError, match="record 1"):
        FunctionCallingTask(data=[records[0], {**records[1], "answers": "[{"}])
    with pytest.raises(ValueError, match="record 0"):
        FunctionCallingTask(data=[{**records[0], "answers": '[{"name": "f"}]'}])
    with pytest.raises(ValueError, match="record 0"):
        FunctionCallingTask(data=[{"tools": "[]", "answers": "[]"}])
    with pytest.raises(TypeError, match="iterable of dicts"):
        FunctionCallingTask(data=42)  # type: ignore[arg-type]


def test_xlam_errors_name_file_and_line(tmp_path):
    lines = XLAM_JSONL.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "xlam.jsonl"
    path.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"xlam.jsonl:2: not JSON"):
        FunctionCallingTask(data=path)
    bad = json.loads(lines[1])
    bad["answers"] = "[{"
    path.write_text("\n".join([lines[0], json.dumps(bad)]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"record 1 \(.*xlam.jsonl:2\): field 'answers'"):
        FunctionCallingTask(data=path)


def test_xlam_gzipped_file_loads_like_the_plain_one(tmp_path):
    import gzip

    path = tmp_path / "xlam.jsonl.gz"
    path.write_bytes(gzip.compress(XLAM_JSONL.read_bytes()))
    gz, plain = FunctionCallingTask(data=path), FunctionCallingTask(data=XLAM_JSONL)
    assert [gz[i] for i in range(len(gz))] == [plain[i] for i in range(len(plain))]


def test_xlam_records_without_answers_are_left_out_with_one_warning():
    # Regression: a record with no gold call was posed although no response can match it.
    records = xlam_records()
    empty = [{**records[0], "id": 100, "answers": "[]"}, {**records[1], "id": 101, "answers": []}]
    with pytest.warns(UserWarning, match=r"left out 2 xLAM record\(s\).*data\[12\]") as caught:
        task = FunctionCallingTask(data=records + empty)
    assert len(caught) == 1
    assert len(task) == 12 and {task[i].id for i in range(12)}.isdisjoint({"xlam-100", "xlam-101"})


def test_xlam_duplicate_ids_are_refused():
    # Regression: two records with one id were both posed, and item ids were ambiguous.
    records = xlam_records()
    with pytest.raises(ValueError, match=r"duplicate id 'xlam-3', first at data\[3\]"):
        FunctionCallingTask(data=[*records, {**records[5], "id": 3}])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"split": "validation"}, "split"),
        ({"prompt_style": "mistral"}, "prompt_style"),
        ({"format": "loose"}, "format"),
    ],
)
def test_bad_options_raise_with_a_fix(options, match):
    with pytest.raises(ValueError, match=match):
        FunctionCallingTask(data=XLAM_JSON, **options)


def test_unknown_options_are_rejected_by_make_task():
    with pytest.raises(TypeError, match="prompt_stlye"):
        make_task("function_calling", data=XLAM_JSON, prompt_stlye="qwen")


# -- prompts ----------------------------------------------------------------------------------


def test_qwen_prompt_lists_the_tools_and_asks_for_tool_call_blocks():
    task = FunctionCallingTask(data=XLAM_JSON, prompt_style="qwen")
    item = task[5]
    system, user = task.prompt(item)
    assert system["role"] == "system" and user == {"role": "user", "content": item.query}
    content = system["content"]
    assert content.startswith(QWEN_SYSTEM + "\n\n# Tools")
    tools_text = content.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert [json.loads(line) for line in tools_text.splitlines()] == list(item.tools)
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}' in content
    assert task.retry_prompt(item) == [system, user]
    assert task.tools(item) is None
    assert task.reflection_request == REFLECTION_REQUEST
    assert "failed in generating the correct tool call" in task.reflection_request


def test_llama_prompt_puts_the_tools_in_the_user_turn_and_retries_with_the_query():
    task = FunctionCallingTask(data=XLAM_JSON, prompt_style="llama")
    item = task[6]
    system, user = task.prompt(item)
    assert system == {"role": "system", "content": LLAMA_SYSTEM}
    content = user["content"]
    assert content.startswith("Given the following functions, please respond with a JSON")
    assert '{"name": function name, "parameters": dictionary of argument name' in content
    assert "Do not use variables." in content
    assert content.endswith("\n\nQuestion: " + item.query)
    for tool in item.tools:
        assert json.dumps(tool, indent=4) in content
    assert task.retry_prompt(item) == [{"role": "user", "content": item.query}]


def test_chat_template_prompt_has_no_tool_text_and_passes_json_schema_tools():
    task = FunctionCallingTask(data=XLAM_JSON, prompt_style="chat_template")
    item = task[6]
    assert task.prompt(item) == [{"role": "user", "content": item.query}]
    assert task.retry_prompt(item) == task.prompt(item)
    tools = task.tools(item)
    assert [t["function"]["name"] for t in tools] == [t["name"] for t in item.tools]
    event = tools[0]["function"]["parameters"]
    assert event["type"] == "object"
    assert event["required"] == ["title", "start"]  # the others are "optional" in xLAM types
    assert {k: v["type"] for k, v in event["properties"].items()} == {
        "title": "string",
        "start": "string",
        "attendees": "array",
        "reminder": "object",
    }


# -- BFCL -----------------------------------------------------------------------------------


@requires_bfcl
@pytest.mark.parametrize("category", sorted(BFCL_COUNTS))
def test_bfcl_categories_load_with_a_stable_split(bfcl, category):
    total, test_count = BFCL_COUNTS[category]
    everything = bfcl.BFCLTask(category=category)
    train = bfcl.BFCLTask(category=category, split="train")
    test = bfcl.BFCLTask(category=category, split="test")
    assert (len(everything), len(train), len(test)) == (total, total - test_count, test_count)
    ids = {everything.item_id(everything[i]) for i in range(total)}
    train_ids = {train[i].id for i in range(len(train))}
    test_ids = {test[i].id for i in range(len(test))}
    assert len(ids) == total and train_ids | test_ids == ids and not train_ids & test_ids
    assert all(everything[i].category == category for i in range(total))


@requires_bfcl
def test_bfcl_default_is_all_eight_categories_and_lists_combine(bfcl):
    assert len(bfcl.BFCLTask()) == sum(total for total, _ in BFCL_COUNTS.values()) == 2351
    assert len(bfcl.BFCLTask(split="test")) == 468
    both = bfcl.BFCLTask(category=["live_parallel", "live_parallel_multiple"])
    assert len(both) == 40
    assert both[0].id == "live_parallel_0-0-0" and both[16].category == "live_parallel_multiple"


@requires_bfcl
@pytest.mark.parametrize(
    ("category", "match"),
    [("simple", "unknown BFCL categories"), ([], "non-empty"), (["multiple"] * 2, "twice")],
)
def test_bfcl_bad_categories_raise(bfcl, category, match):
    with pytest.raises(ValueError, match=match):
        bfcl.BFCLTask(category=category)


@requires_bfcl
@pytest.mark.parametrize("category", sorted(BFCL_COUNTS))
def test_every_bfcl_gold_answer_verifies_as_a_qwen_response(bfcl, category):
    task = bfcl.BFCLTask(category=category, prompt_style="qwen")
    failed = set()
    for i in range(len(task)):
        item = task[i]
        verdict = task.verify(item, render_calls(bfcl.reference_calls(item), "qwen"))
        if not verdict.correct:
            assert verdict.reason == "wrong_arguments", (item.id, verdict)
            failed.add(item.id)
    assert failed == {i for i in BFCL_UNSATISFIABLE if i.startswith(category + "_")}


@requires_bfcl
def test_bfcl_gold_answers_verify_in_the_other_styles_too(bfcl):
    for style in ("llama", "chat_template"):
        task = bfcl.BFCLTask(category=["parallel_multiple", "live_parallel"], prompt_style=style)
        for i in range(len(task)):
            item = task[i]
            assert task.verify(item, render_calls(bfcl.reference_calls(item), style)).correct


@requires_bfcl
def test_bfcl_wrong_answers_on_real_items(bfcl):
    task = bfcl.BFCLTask(category="parallel")
    checked = 0
    for i in range(len(task)):
        item = task[i]
        calls = bfcl.reference_calls(item)
        doc = next(f for f in item.functions if f["name"] == calls[0].name)
        required = doc["parameters"]["required"]
        first = calls[0]
        if not required or len(calls) < 2:
            continue
        key = required[0]
        value = first.arguments[key]
        variants = {
            "wrong_tool": [ToolCall(first.name + "_x", first.arguments), *calls[1:]],
            "wrong_arguments": [
                ToolCall(first.name, {k: v for k, v in first.arguments.items() if k != key}),
                *calls[1:],
            ],
            "extra": [ToolCall(first.name, {**first.arguments, "zz_unknown": 1}), *calls[1:]],
            "wrong_count": calls[1:],
        }
        if isinstance(value, str):
            variants["wrong_values"] = [
                ToolCall(first.name, {**first.arguments, key: value + " and more"}),
                *calls[1:],
            ]
        for label, variant in variants.items():
            reason = task.verify(item, render_calls(variant)).reason
            assert reason == ("wrong_arguments" if label == "extra" else label), (item.id, label)
        reversed_calls = render_calls(list(reversed(calls)))
        assert task.verify(item, reversed_calls).correct, item.id
        checked += 1
    assert checked > 100


@requires_bfcl
def test_bfcl_prompts_in_each_style(bfcl):
    qwen = bfcl.BFCLTask(category="live_simple", prompt_style="qwen")
    own_system = next(qwen[i] for i in range(len(qwen)) if qwen[i].messages[0]["role"] == "system")
    plain = qwen[0]
    assert [m["role"] for m in plain.messages] == ["user"]

    system, user = qwen.prompt(plain)
    assert system["content"].startswith(QWEN_SYSTEM + "\n\n# Tools")
    for function in plain.functions:
        assert json.dumps(function, ensure_ascii=False) in system["content"]
    assert user == plain.messages[0]
    system, user = qwen.prompt(own_system)  # the item's system text replaces the default
    assert system["content"].startswith(own_system.messages[0]["content"] + "\n\n# Tools")
    assert qwen.retry_prompt(own_system) == [system, user]

    llama = bfcl.BFCLTask(category="live_simple", prompt_style="llama")
    system, user = llama.prompt(own_system)
    assert system["content"] == LLAMA_SYSTEM + "\n\n" + own_system.messages[0]["content"]
    assert user["content"].endswith("Question: " + own_system.messages[1]["content"])
    assert llama.retry_prompt(own_system) == [own_system.messages[1]]

    chat = bfcl.BFCLTask(category="live_simple", prompt_style="chat_template")
    assert chat.prompt(own_system) == list(own_system.messages)
    assert all("<tools>" not in m["content"] for m in chat.prompt(own_system))
    schema = chat.tools(plain)[0]
    assert schema["type"] == "function"
    assert schema["function"]["name"] == plain.functions[0]["name"]
    assert schema["function"]["parameters"]["type"] == "object"
    text = json.dumps(chat.tools(plain))
    assert '"type": "dict"' not in text and '"type": "float"' not in text
    assert plain.functions[0]["parameters"]["type"] == "dict", "the data must stay untouched"


# -- environments ---------------------------------------------------------------------------

ENVS = {
    "rrr/FunctionCalling-v0": {"data": str(XLAM_JSON)},
    "rrr/BFCL-v0": {"category": "simple_python", "split": "test"},
}


@pytest.mark.parametrize("env_id", sorted(ENVS))
@pytest.mark.parametrize("prompt_style", fc.STYLES)
def test_check_env_passes_without_warnings(env_id, prompt_style):
    if env_id == "rrr/BFCL-v0" and importlib.util.find_spec("bfcl_eval") is None:
        pytest.skip("bfcl-eval is not installed: pip install --no-deps bfcl-eval==2026.3.23")
    env = gym.make(env_id, prompt_style=prompt_style, **ENVS[env_id])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@requires_bfcl
def test_bfcl_episode_wrong_then_right(bfcl):
    env = gym.make("rrr/BFCL-v0", category="simple_python", split="test")
    obs, info = env.reset(seed=7)
    item = env.unwrapped.item
    assert info["item_id"] == item.id and item.id.startswith("simple_python_")
    assert [m["role"] for m in obs] == ["system", "user"]
    right = render_calls(bfcl.reference_calls(item))
    fenced = (
        "```json\n" + json.dumps({"name": item.functions[0]["name"], "arguments": {}}) + "\n```"
    )

    obs, reward, terminated, truncated, info = env.step(fenced)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["phase"] == "reflection"
    assert info["verdict"].reason == "format_error"
    assert info["verdict"].details["lenient_correct"] is False
    assert obs[-1] == {"role": "user", "content": REFLECTION_REQUEST}

    obs, reward, terminated, _, info = env.step("I must use <tool_call> tags and the arguments.")
    assert (reward, terminated, info["phase"]) == (0.0, False, "retry")
    assert obs[-2:] == obs[:2], "the qwen retry repeats the system prompt and the query"

    obs, reward, terminated, _, info = env.step(right)
    assert (reward, terminated, info["phase"]) == (1.0, True, "done")
    assert info["verdict"].reason == "ok"
    assert [v.reason for v in info["verdicts"]] == ["format_error", "ok"]
    with pytest.raises(RuntimeError):
        env.step(right)


def test_function_calling_episode_carries_tools_with_chat_template():
    env = gym.make("rrr/FunctionCalling-v0", data=str(XLAM_JSON), prompt_style="chat_template")
    obs, info = env.reset(options={"index": 2})
    item = env.unwrapped.item
    assert obs == [{"role": "user", "content": item.query}]
    assert [t["function"]["name"] for t in info["tools"]] == ["is_prime", "fibonacci"]
    one_call = render_calls(item.answers[:1])
    _, reward, _, _, info = env.step(one_call)
    assert reward == 0.0 and info["verdict"].reason == "wrong_count" and "tools" in info
    _, _, _, _, info = env.step("I forgot the second number.")
    assert "tools" in info
    # A llama-style answer is fine for a chat template: the model's own template decides.
    llama = render_calls(list(reversed(item.answers)), "llama")
    _, reward, terminated, _, info = env.step(llama)
    assert (reward, terminated) == (1.0, True)


def test_bfcl_data_takes_a_folder_laid_out_like_the_package(bfcl, tmp_path):
    questions, answers = bfcl.data_files("simple_python")
    (tmp_path / "possible_answer").mkdir()
    for source, target in [(questions, tmp_path), (answers, tmp_path / "possible_answer")]:
        lines = source.read_text(encoding="utf-8").splitlines()[:5]
        (target / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    mine = bfcl.BFCLTask(data=tmp_path, category="simple_python")
    package = bfcl.BFCLTask(category="simple_python")
    assert [mine[i] for i in range(len(mine))] == [package[i] for i in range(5)]
    env = gym.make("rrr/BFCL-v0", data=str(tmp_path), category="simple_python")
    assert len(env.unwrapped.task) == 5
    with pytest.raises(FileNotFoundError, match="BFCL_v4_multiple.json"):
        bfcl.BFCLTask(data=tmp_path, category="multiple")
    (tmp_path / questions.name).write_text('{"id": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"BFCL_v4_simple_python.json:1: not JSON"):
        bfcl.BFCLTask(data=tmp_path, category="simple_python")
    for bad in ("gorilla-llm/Berkeley-Function-Calling-Leaderboard", [{"id": "x"}]):
        with pytest.raises(ValueError, match="bfcl_eval/data"):
            bfcl.BFCLTask(data=bad)
