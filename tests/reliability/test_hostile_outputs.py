"""Item 11: answer extraction is linear in the length of what a model wrote.

Model output is data: an open ``<answer>`` repeated 32k times (256k characters) took minutes with a lazy
regex (quadratic: 64k characters took 1.9 s). The bound below is generous (the linear code takes
milliseconds); it only tells linear from quadratic, it is not a speed target.
"""

from __future__ import annotations

import time

import pytest

from dllm_lab.tasks import TASKS, get_task
from dllm_lab.tasks.base import extract_answer_text

N = 256_000
HOSTILE = {
    "open answer tags": "<answer>" * (N // 8),
    "open boxes": "\\boxed{" * (N // 7),
    "open braces in a box": "\\boxed{" + "{" * N,
    "closing braces": "\\boxed{" + "}" * N,
    "a long number": "<answer>" + "1" * N + "</answer>",
    "many fractions": "\\boxed{" + "\\frac{1}{2}" * (N // 11) + "}",
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_parser_reads_hostile_text_in_linear_time(name):
    task = get_task(name)
    for label, text in HOSTILE.items():
        start = time.perf_counter()
        task.parse_answer(text)  # never raises: an unreadable answer is None
        assert time.perf_counter() - start < 5.0, f"{name}: {label} ({len(text)} characters)"


def test_the_last_closed_box_and_the_last_tag_pair_win():
    assert extract_answer_text("\\boxed{1} \\boxed{2} \\boxed{3") == "2"  # an open box is skipped
    assert extract_answer_text("\\boxed{a{b}c}") == "a{b}c"
    assert extract_answer_text("<answer>1</answer><answer>2</answer><answer>3") == "2"
    assert extract_answer_text("<answer> </answer>") is None and extract_answer_text("nothing") is None
