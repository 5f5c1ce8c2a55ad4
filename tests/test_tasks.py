"""Tasks: prompts, answer parsers, rewards (docs/methods.md "Rewards"), the safe evaluator, generators, loaders."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest

from dllm_lab.tasks import (
    D1_SYSTEM_PROMPT,
    TASKS,
    UnsafeExpression,
    extract_boxed,
    get_task,
    parse_number,
    safe_arith_eval,
)
from dllm_lab.tasks.math500 import too_costly
from dllm_lab.tasks.safe_eval import expression_numbers
from dllm_lab.tasks.sudoku import solve_all

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
ALL_TASKS = ["arith", "gsm8k", "svamp", "math500", "countdown", "sudoku4"]
SYNTHETIC = ["arith", "countdown", "sudoku4"]
MAX_REWARD = {"arith": 2.0, "gsm8k": 2.0, "svamp": 2.0, "math500": 2.0, "countdown": 1.0, "sudoku4": 1.0}
# Normalised examples for the tasks that have no synthetic generator.
HAND_MADE = {
    "gsm8k": {"question": "Janet has 3 boxes of 24 pencils. How many pencils?", "answer": "72", "reasoning": "3*24=72"},
    "svamp": {"question": "Jack had 8 pens and Mary had 5 pens. How many pens in all?", "answer": "13"},
    "math500": {"question": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "answer": "\\frac{3}{4}"},
}
SUDOKU = {"puzzle": "0300103420030402", "solution": "4321123421433412"}  # empty cells: 0 2 3 5 9 10 12 14


def examples_for(name: str, n: int = 5) -> list[dict]:
    task = get_task(name)
    return task.synthetic(n, seed=3) if task.has_synthetic else [dict(HAND_MADE[name])]


def must_appear(name: str, example: dict) -> list[str]:
    """Text from the example that any prompt for it has to contain."""
    if name == "countdown":
        return [", ".join(map(str, example["numbers"])), str(example["target"])]
    if name == "sudoku4":
        return [example["puzzle"][i : i + 4] for i in range(0, 16, 4)]
    return [example["question"]]


def valid_grid(s: str) -> bool:
    g = [[int(s[r * 4 + c]) for c in range(4)] for r in range(4)]
    units = [g[r] for r in range(4)] + [[g[r][c] for r in range(4)] for c in range(4)]
    units += [[g[r][c] for r in (br, br + 1) for c in (bc, bc + 1)] for br in (0, 2) for bc in (0, 2)]
    return all(sorted(u) == [1, 2, 3, 4] for u in units)


# ---------------------------------------------------------------- registry, prompts, reference completions
def test_registry_and_unknown_task():
    assert sorted(TASKS) == sorted([*ALL_TASKS, "equations"])  # equations: plain text, tested on its own
    with pytest.raises(ValueError, match="available") as err:
        get_task("nope")
    assert all(name in str(err.value) for name in ALL_TASKS)
    with pytest.raises(ValueError, match="prompt_style"):
        get_task("gsm8k", prompt_style="chatty")


@pytest.mark.parametrize("name", ALL_TASKS)
def test_prompt_styles(name):
    example = examples_for(name, 1)[0]
    d1 = get_task(name, prompt_style="d1").build_prompt(example)
    compact = get_task(name, prompt_style="compact").build_prompt(example)
    for text in must_appear(name, example):
        assert text in d1 and text in compact
    assert D1_SYSTEM_PROMPT in d1
    assert D1_SYSTEM_PROMPT not in compact and "<reasoning>" not in compact
    assert "\\boxed{}" in compact and len(compact) < len(d1)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_reference_completion_is_correct_and_gets_max_reward(name):
    task = get_task(name)
    for example in examples_for(name):
        completion = task.reference_completion(example)
        assert completion.startswith("<reasoning>") and completion.rstrip().endswith("</answer>")
        assert task.is_correct(completion, example)
        assert task.reward(completion, example) == MAX_REWARD[name]


# ---------------------------------------------------------------- parsing model output
MALFORMED = [
    "", "garbage ##@! }{ \\boxed", "The answer is 42.", "<answer>\n\\boxed{12", "\\boxed{",
    "<answer>\n</answer>", "<reasoning>1234 3412 2143 4321</reasoning>", "\\boxed 12",
]


@pytest.mark.parametrize("name", [*ALL_TASKS, "equations"])
@pytest.mark.parametrize("completion", MALFORMED)
def test_malformed_completion_parses_to_none_and_scores_zero(name, completion):
    task = get_task(name)
    example = examples_for(name, 1)[0]
    assert task.parse_answer(completion) is None
    assert task.is_correct(completion, example) is False
    assert task.reward(completion, example) == 0.0


@pytest.mark.parametrize(
    ("name", "completion", "expected"),
    [
        ("gsm8k", "<reasoning>3*24</reasoning>\n<answer>\n\\boxed{72}\n</answer>", 72.0),
        ("gsm8k", "<answer>72</answer>", 72.0),  # answer tags without a box
        ("gsm8k", "\\boxed{1,234}", 1234.0),
        ("gsm8k", "\\boxed{\\$18.50}", 18.5),
        ("gsm8k", "\\boxed{\\frac{1}{2}}", 0.5),  # nested braces; was read as 2
        ("gsm8k", "first \\boxed{5} then truncated \\boxed{12", 5.0),
        ("svamp", "\\boxed{-3}", -3.0),
        ("arith", "<answer>\n\\boxed{31}\n</answer>", 31.0),
        ("math500", "\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("math500", "<answer> 5\\sqrt{2} </answer>", "5\\sqrt{2}"),
        ("countdown", "<answer>100 - 93 + 16</answer>", "100-93+16"),
        ("countdown", "\\boxed{30 \\times 2 = 60}", "30*2"),
        ("sudoku4", "<answer>\n1234\n3412\n2143\n4321\n</answer>", "1234341221434321"),
        ("sudoku4", "\\boxed{1 2 3 4 3 4 1 2 2 1 4 3 4 3 2 1}", "1234341221434321"),
        ("sudoku4", "\\boxed{123}", None),  # fewer than 16 digits
    ],
)
def test_parse_answer(name, completion, expected):
    assert get_task(name).parse_answer(completion) == expected


def test_extract_boxed_and_parse_number():
    assert extract_boxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{1} and \\boxed{ 2 }") == "2"
    assert extract_boxed("\\boxed{1} and \\boxed{2") == "1"
    assert extract_boxed("\\boxed{2") is None and extract_boxed("nothing") is None
    cases = {"\\frac{1}{4}": 0.25, "\\dfrac{-3}{4}": -0.75, "3/4": 0.75, "on 1/2/2020": 2020.0, "1,234.5": 1234.5,
             "-7": -7.0, ".5": 0.5, "none": None, "": None}
    for text, value in cases.items():
        assert parse_number(text) == value, text
    assert parse_number(None) is None


# ---------------------------------------------------------------- rewards (docs/methods.md "Rewards")
CD = {"numbers": [16, 93, 100], "target": 23}


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("<answer>\n\\boxed{100-93+16}\n</answer>", 1.0),
        ("\\boxed{(100 - 93) + 16 = 23}", 1.0),
        ("<answer>16+100-93</answer>", 1.0),
        ("\\boxed{100+93-16}", 0.1),  # right numbers, wrong value
        ("\\boxed{100-77}", 0.1),  # right value, wrong multiset
        ("\\boxed{100-93+16+0}", 0.1),  # an extra number
        ("\\boxed{100-93+16-16+16}", 0.1),  # a number used twice
        ("\\boxed{2**1000000}", 0.1),
        ("\\boxed{__import__('os').system('true')}", 0.1),
        ("\\boxed{no idea}", 0.1),
        ("I cannot solve this.", 0.0),
        ("<answer></answer>", 0.0),
    ],
)
def test_countdown_reward(completion, reward):
    assert get_task("countdown").reward(completion, CD) == reward


def test_countdown_rejects_smuggled_decimal_literal():
    # (2+3)*5/2.5 == 10 but 2.5 is not one of the numbers (this scored 1.0 before the fix)
    example = {"numbers": [2, 3, 5], "target": 10}
    assert get_task("countdown").reward("\\boxed{(2+3)*5/2.5}", example) == 0.1
    assert get_task("countdown").reward("\\boxed{(3+5)+2}", example) == 1.0


@pytest.mark.parametrize(
    ("answer", "reward"),
    [
        ("4321123421433412", 1.0),
        ("4421123421433412", 1.0),  # a given cell (index 1) changed: only empty cells count
        ("1331123421433412", 0.75),  # 6 of 8 empty cells right (indices 0 and 2 wrong)
        ("1331113421133412", 0.5),  # 4 of 8 (also 5 and 10 wrong)
        ("3333333333334333", 0.0),
        ("43211234", 0.0),  # unparsable: fewer than 16 digits
    ],
)
def test_sudoku_reward_is_fraction_of_empty_cells(answer, reward):
    assert SUDOKU["puzzle"].count("0") == 8
    assert get_task("sudoku4").reward(f"<answer>\n\\boxed{{{answer}}}\n</answer>", SUDOKU) == reward


@pytest.mark.parametrize("name", ["gsm8k", "svamp", "arith"])
def test_numeric_tasks_reward_two_or_zero(name):
    task = get_task(name)
    example = examples_for(name, 1)[0]
    gold = float(example["answer"])
    assert task.reward(f"\\boxed{{{gold:.1f}}}", example) == 2.0
    assert task.reward(f"\\boxed{{{gold + 1:g}}}", example) == 0.0
    assert task.reward("", example) == 0.0


@pytest.mark.parametrize(
    ("answer", "gold", "equal"),
    [
        ("0.5", "\\frac{1}{2}", True),
        ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
        ("\\frac{3}{4}", "\\frac{3}{4}", True),
        ("\\frac{1}{3}", "\\frac{1}{2}", False),
        ("5\\sqrt{2}", "\\sqrt{50}", True),
        ("7", "5\\sqrt{2}", False),
    ],
)
def test_math500_equivalence_via_math_verify(answer, gold, equal):
    task = get_task("math500")
    example = {"question": "q", "answer": gold}
    assert task.is_equivalent(answer, gold) is equal
    assert task.reward(f"<answer>\n\\boxed{{{answer}}}\n</answer>", example) == (2.0 if equal else 0.0)


@pytest.mark.parametrize("answer", ["9^{9^{9}}", "10^{10^{10^{10}}}", "(10^{10})!", "9^9^9", "2^{1000000}", "99999!"])
def test_math500_refuses_answers_that_would_stall_sympy(answer):
    # these used to hang math-verify (its timeouts are disabled); now they are wrong, fast
    assert too_costly(answer)
    start = time.perf_counter()
    assert get_task("math500").is_equivalent(answer, "5") is False
    assert time.perf_counter() - start < 1.0


def test_math500_guard_keeps_ordinary_answers():
    assert not any(too_costly(a) for a in ["2^{10}", "x^2+1", "5!", "n!", "10,\\!000", "1000000", "\\binom{10}{3}"])
    assert get_task("math500").is_equivalent("2^{10}", "1024")


# ---------------------------------------------------------------- safe arithmetic evaluator
@pytest.mark.parametrize(
    ("expression", "value"),
    [("1+2*3", 7), ("(1+2)*3", 9), ("-3+5", 2), ("-(2-5)", 3), ("+4", 4), ("7/2", 3.5),
     ("100 - 93 + 16", 23), ("2×3÷4", 1.5), ("((8))", 8), ("2.5*2", 5)],
)
def test_safe_eval_values(expression, value):
    assert safe_arith_eval(expression) == pytest.approx(value)


HOSTILE = [
    "2**1000000", "9**9**9", "__import__('os')", "x+1", "abs(-1)", "(1).real", "lambda: 1", "1<2", "1 if 1 else 2",
    "1/0", "1/(2-2)", "1+" * 150 + "1", "(1+" * 40 + "1" + ")" * 40, "-" * 100 + "1", "True", "'a'", "", "1e300*1e300",
    "[1, 2]", "1;2", "1j", "x := 1",
]


def test_safe_eval_rejects_hostile_input_quickly():
    assert len(HOSTILE[11]) > 200 and len(HOSTILE[12]) < 200  # length limit vs depth limit
    start = time.perf_counter()
    for expression in HOSTILE:
        with pytest.raises(UnsafeExpression):
            safe_arith_eval(expression)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(UnsafeExpression, match="division by zero"):
        safe_arith_eval("1/0")


def test_expression_numbers():
    assert expression_numbers("100-93+16") == [100, 93, 16]
    assert expression_numbers("(1*2)+3") == [1, 2, 3]  # source order (ast.walk gave [3, 1, 2])
    assert expression_numbers("74-(58-73)") == [74, 58, 73]
    assert expression_numbers("2.5+1") == [2.5, 1] and type(expression_numbers("2.5+1")[0]) is float
    assert expression_numbers("1+") == [] and expression_numbers("1+" * 150 + "1") == []


# ---------------------------------------------------------------- synthetic generators
@pytest.mark.parametrize("name", [*SYNTHETIC, "equations"])
def test_generators_are_deterministic_per_seed(name):
    first = get_task(name).synthetic(20, seed=0)
    assert first == get_task(name).synthetic(20, seed=0)
    assert first != get_task(name).synthetic(20, seed=1)
    assert len({json.dumps(e, sort_keys=True) for e in first}) > 10  # not one example repeated


def running_values(lines: list[str]) -> list[float]:
    """The value of each reasoning line; a line that starts with an operator (``+93``, ``/2``) applies
    it to the value of the line above."""
    values: list[float] = []
    for line in lines:
        lhs = line.split("=")[0]
        if lhs[:1] in "+-*/":
            assert values, f"a running-total line needs a line above it: {line}"
            lhs = f"{values[-1]:g}{lhs}"
        values.append(safe_arith_eval(lhs))
    return values


def test_countdown_generator_examples_are_solvable():
    for ex in get_task("countdown").synthetic(150, seed=5):
        assert len(ex["numbers"]) == 3 and all(type(n) is int and 1 <= n <= 100 for n in ex["numbers"])
        assert type(ex["target"]) is int and 1 <= ex["target"] <= 100
        assert sorted(expression_numbers(ex["answer"])) == sorted(ex["numbers"])
        assert safe_arith_eval(ex["answer"]) == ex["target"]
        steps = ex["reasoning"].split("\n")
        for step, value in zip(steps, running_values(steps), strict=True):
            lhs, rhs = step.split("=")
            assert value == float(rhs), step
            assert "--" not in lhs, step  # negative intermediates are parenthesised
        if "/2=" not in ex["reasoning"]:  # the shape's two equations end at the target
            assert float(steps[-1].split("=")[1]) == ex["target"]


def test_sudoku_generator_puzzles_have_a_unique_valid_solution():
    for ex in get_task("sudoku4").synthetic(40, seed=2):
        assert ex["puzzle"].count("0") == 8
        assert solve_all(ex["puzzle"]) == [ex["solution"]]
        assert valid_grid(ex["solution"])
        assert all(p in ("0", s) for p, s in zip(ex["puzzle"], ex["solution"], strict=True))
    assert len(solve_all("0" * 16)) == 2  # solve_all stops at limit=2 on an ambiguous puzzle
    assert not valid_grid("1234123412341234")


def test_arith_reasoning_equations_are_correct():
    step = re.compile(r"^(\d+)([+\-*])(\d+)=(-?\d+)$")
    for ex in get_task("arith").synthetic(100, seed=4):
        previous = None
        for line in ex["reasoning"].split("\n"):
            left, op, right, result = step.match(line).groups()
            assert safe_arith_eval(f"{left}{op}{right}") == int(result), line
            if previous is None:
                assert f" has {left} " in ex["question"], "the first step starts from the stated amount"
            else:
                assert int(left) == previous, "steps must chain"
            assert f" {right} " in ex["question"]
            previous = int(result)
        assert previous == int(ex["answer"]) and previous >= 1


def test_equations_are_plain_text_lines_with_true_values():
    task = get_task("equations")
    assert task.chat_template is False
    kinds, running_with_context = set(), False
    for ex in task.synthetic(300, seed=7):
        prompt, completion = task.build_prompt(ex), task.reference_completion(ex)
        assert prompt == get_task("equations", prompt_style="compact").build_prompt(ex)  # no system turn
        lines = prompt[:-1].split("\n")  # context lines (all true), then the left-hand side to complete
        assert prompt.endswith("=") and len(ex["context"]) <= 3 and all(re.fullmatch(r"[\d+\-*/=]+", x) for x in lines)
        values = running_values(lines)
        assert all(v == float(line.split("=")[1]) for v, line in zip(values, ex["context"], strict=False)), prompt
        assert values[-1] == int(completion) == ex["value"] >= 0, ex
        if ex["kind"] == "running" and ex["context"]:
            assert lines[-1][0] in "+-/", "a running line continues the last context line"
            running_with_context = True
        assert task.is_correct(completion, ex) and task.reward(completion, ex) == 2.0
        kinds.add(ex["kind"])
    assert kinds == {"sum2", "running", "difference", "half", "product"} and running_with_context
    plain = get_task("equations", context_lines=0).synthetic(100, seed=7)
    assert not any(ex["context"] for ex in plain) and any(ex["context"] for ex in task.synthetic(20, seed=7))
    with pytest.raises(ValueError, match="context_lines"):
        get_task("equations", context_lines=-1)
    example = {"expression": "185-17", "value": 168}
    assert task.parse_answer(" 168\n") == 168 and task.is_correct("168\n<garbage>", example)
    assert task.parse_answer("16 8") is None and not task.is_correct("167", example)


# ---------------------------------------------------------------- loading real data
LOADER_CASES = [  # task, fixture, valid rows kept, the file's lines that must be skipped (1-based)
    ("countdown", "countdown_cd3_test.jsonl", 4, [3, 6, 7, 8]),  # line 4 is blank
    ("sudoku4", "sudoku_4x4_test.csv", 3, [4, 6, 7]),  # line 1 is the header
    ("gsm8k", "gsm8k_test.jsonl", 3, [3, 4, 5, 6]),
    ("svamp", "svamp.jsonl", 3, [3, 5]),
    ("math500", "math500.jsonl", 3, [4, 5]),
]


@pytest.mark.parametrize(("name", "fixture", "n_valid", "bad_rows"), LOADER_CASES)
def test_loader_skips_malformed_rows_with_a_named_warning(caplog, name, fixture, n_valid, bad_rows):
    task, path = get_task(name), FIXTURES / fixture
    with caplog.at_level(logging.WARNING):
        examples = task.load("test", source=str(path))
    assert len(examples) == n_valid
    skips = [r.getMessage() for r in caplog.records if ": skipping " in r.getMessage()]
    assert len(skips) == len(bad_rows)
    for row, message in zip(bad_rows, skips, strict=True):
        assert f"skipping line {row} of {path}" in message
    assert any(f"skipped {len(bad_rows)} malformed" in r.getMessage() for r in caplog.records)
    for example in examples:  # what is kept is usable
        assert all(example.get(f) not in (None, "") for f in task.required_fields)
        assert task.build_prompt(example)
    assert task.load("test", source=str(path), limit=2) == examples[:2]
    assert task.load("test", source=str(path), limit=0) == []


def test_countdown_loader_normalises_d1_rows(caplog):
    with caplog.at_level(logging.WARNING):
        examples = get_task("countdown").load(source=str(FIXTURES / "countdown_cd3_test.jsonl"))
    assert [(e["numbers"], e["target"]) for e in examples] == [
        ([30, 100, 93], 23), ([45, 59, 31], 73), ([2, 7, 12], 26), ([3, 6, 9], 18)]
    assert any("skipping line 7 of" in r.getMessage() and "invalid JSON" in r.getMessage() for r in caplog.records)
    assert get_task("countdown").reward("\\boxed{30-(100-93)}", examples[0]) == 1.0


def test_gsm8k_loader_takes_the_number_after_hashes(caplog):
    task = get_task("gsm8k")
    with caplog.at_level(logging.WARNING):
        examples = task.load(source=str(FIXTURES / "gsm8k_test.jsonl"))
    assert [e["answer"] for e in examples] == ["72", "2500", "84"]
    assert "<<3*24=72>>" in examples[0]["reasoning"] and "####" not in examples[0]["reasoning"]
    assert any("got list" in r.getMessage() for r in caplog.records)  # a non-object jsonl line
    assert task.normalize(examples[0]) == examples[0]  # idempotent: reasoning survives a re-load
    assert task.reward(task.reference_completion(examples[1]), examples[1]) == 2.0
    assert task.reward("\\boxed{2,500}", examples[1]) == 2.0


def test_svamp_and_math500_loaders_map_hub_fields():
    svamp = get_task("svamp").load(source=str(FIXTURES / "svamp.jsonl"))
    assert svamp[0]["question"] == "Jack had 8 pens and Mary had 5 pens. How many pens do they have together?"
    assert [e["answer"] for e in svamp] == ["13", "28", "1.5"]
    assert get_task("svamp").reward("\\boxed{1.5}", svamp[2]) == 2.0
    math = get_task("math500").load(source=str(FIXTURES / "math500.jsonl"))
    assert math[0]["question"].startswith("What is $\\frac{1}{2}") and math[0]["answer"] == "\\frac{3}{4}"
    assert [e["unique_id"] for e in math] == ["test/prealgebra/1.json", "test/algebra/2.json", "test/algebra/3.json"]
    assert get_task("math500").reward("\\boxed{0.75}", math[0]) == 2.0


@pytest.mark.parametrize(
    ("name", "filename", "content"),
    [
        ("countdown", "bad.jsonl", '{"input": "1,x,3", "output": "5"}\n{"output": "5"}\n'),
        ("gsm8k", "bad.jsonl", '{"question": "q"}\nnot json\n'),
        ("svamp", "bad.jsonl", '{"Body": "b", "Answer": 3}\n'),
        ("math500", "bad.jsonl", '{"problem": "p", "answer": ""}\n'),
        ("sudoku4", "bad.csv", "Puzzle,Solution\n123,456\n"),
    ],
)
def test_file_with_only_malformed_rows_raises(tmp_path, name, filename, content):
    path = tmp_path / filename
    path.write_text(content)
    task = get_task(name)
    with pytest.raises(ValueError, match=re.escape(str(list(task.required_fields)))):
        task.load(source=str(path))


def test_missing_file_and_bad_limit(tmp_path):
    for suffix in ("jsonl", "csv", "parquet"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            get_task("gsm8k").load(source=str(tmp_path / f"missing.{suffix}"))
    with pytest.raises(ValueError, match="limit"):
        get_task("countdown").load(source=str(FIXTURES / "countdown_cd3_test.jsonl"), limit=-1)


def test_parquet_and_json_loading(tmp_path, caplog):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "countdown.parquet"  # the HF Countdown-Tasks shape: nums + target
    pd.DataFrame({"nums": [[30, 100, 93], [2, 7, 12], None], "target": [23, 26, 5]}).to_parquet(path)
    with caplog.at_level(logging.WARNING):
        examples = get_task("countdown").load(source=str(path))
    assert [(e["numbers"], e["target"]) for e in examples] == [([30, 100, 93], 23), ([2, 7, 12], 26)]
    assert any(f"skipping row 3 of {path}" in r.getMessage() for r in caplog.records)
    sudoku = tmp_path / "sudoku.parquet"
    pd.DataFrame({"Puzzle": [SUDOKU["puzzle"]], "Solution": [SUDOKU["solution"]]}).to_parquet(sudoku)
    assert get_task("sudoku4").load(source=str(sudoku)) == [SUDOKU]
    js = tmp_path / "gsm8k.json"
    js.write_text(json.dumps([{"question": "2+2?", "answer": "2+2=4\n#### 4"}]))
    assert get_task("gsm8k").load(source=str(js))[0]["answer"] == "4"


def test_countdown_reasoning_uses_the_halving_procedure_when_signs_suffice():
    from dllm_lab.tasks.countdown import _signed_sum_steps

    steps, answer = _signed_sum_steps([30, 100, 93], 23)
    assert steps == ["30+100=130", "+93=223", "-23=200", "/2=100"] and answer == "30+93-100"
    assert running_values(steps) == [130, 223, 200, 100]
    steps, answer = _signed_sum_steps([90, 12, 40], 38)  # subtract a pair: 12+40=52
    assert "12+40=52" in steps and answer == "90-12-40" and safe_arith_eval(answer) == 38
    assert _signed_sum_steps([1, 2, 3], 6)[1] == "1+2+3"
    assert _signed_sum_steps([3, 4, 5], 17) is None  # 3*4+5: no sign pattern reaches it
    assert _signed_sum_steps([3, 4, 6], 6) is None  # odd difference
