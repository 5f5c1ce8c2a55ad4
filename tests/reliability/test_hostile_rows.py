"""Item 5: one bad row can neither abort a load nor be silently changed; every skip names the file's line."""

from __future__ import annotations

import json
import logging

import pytest

from dllm_lab.tasks import get_task


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _skips(caplog):
    return [r.getMessage() for r in caplog.records if ": skipping " in r.getMessage()]


def test_countdown_overflow_fractions_and_booleans_are_counted_skips(tmp_path, caplog):
    path = _jsonl(tmp_path / "cd.jsonl", [
        '{"numbers": [1e400, 2, 3], "target": 5}',  # JSON's 1e400 is inf: it used to raise OverflowError
        {"numbers": [1.5, 2.7, 3], "target": 6},  # used to become [1, 2, 3]
        {"numbers": [True, False, 3], "target": 3},  # used to become [1, 0, 3]
        {"numbers": [30, 100, 93], "target": 23.0},
        {"numbers": [4, 8, 16], "target": "1e3"},
    ])
    with caplog.at_level(logging.WARNING):
        examples = get_task("countdown").load(source=str(path))
    assert [(e["numbers"], e["target"]) for e in examples] == [([30, 100, 93], 23)]
    skips = _skips(caplog)
    assert [m.split(" of ")[0].split("skipping ")[1] for m in skips] == ["line 1", "line 2", "line 3", "line 5"]
    assert "inf" in skips[0] and "1.5" in skips[1] and "boolean" in skips[2]
    assert any("skipped 4 malformed" in r.getMessage() for r in caplog.records)


def test_a_sudoku_solution_that_breaks_the_rules_is_not_gold(tmp_path, caplog):
    path = tmp_path / "sudoku.csv"
    # a permutation of the real solution's rows that keeps the givens but repeats digits in columns
    path.write_text("Puzzle,Solution\n0000000000000000,1234123412341234\n0300103420030402,4321123421433412\n")
    with caplog.at_level(logging.WARNING):
        examples = get_task("sudoku4").load(source=str(path))
    assert [e["solution"] for e in examples] == ["4321123421433412"]
    (skip,) = _skips(caplog)
    assert "skipping line 2 of" in skip and "column 1 does not hold 1-4 once each" in skip


def test_gold_answers_in_other_digit_scripts_become_ascii(tmp_path):
    path = _jsonl(tmp_path / "gsm8k.jsonl", [{"question": "q", "answer": "١٢ apples\n#### ١٢"},
                                            {"question": "q", "answer": "#### １２"}])
    task = get_task("gsm8k")
    examples = task.load(source=str(path))
    assert [e["answer"] for e in examples] == ["12", "12"]
    assert task.is_correct("<answer>\\boxed{12}</answer>", examples[0])
    assert task.reference_completion(examples[1]).endswith("\\boxed{12}\n</answer>")


def test_a_file_with_no_valid_row_fails_naming_the_fields(tmp_path):
    path = _jsonl(tmp_path / "cd.jsonl", [{"numbers": "x", "target": 1}])
    with pytest.raises(ValueError, match=r"no valid rows in .*cd.jsonl \(1 malformed, 0 filtered\)"):
        get_task("countdown").load(source=str(path))
