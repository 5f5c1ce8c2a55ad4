"""4x4 Sudoku (d1's planning task): fill the 0 cells so each row, column and 2x2 box holds 1-4."""

from __future__ import annotations

import random
import re
from typing import Any

from dllm_lab.tasks.base import Example, Task, extract_answer_text, format_completion

_GRID = re.compile(r"^[0-4]{16}$")


def solve_all(puzzle: str, limit: int = 2) -> list[str]:
    """Up to ``limit`` solutions of a 16-character puzzle (backtracking; 4x4 is tiny)."""
    cells = [int(ch) for ch in puzzle]
    solutions: list[str] = []

    def ok(i: int, v: int) -> bool:
        r, c = divmod(i, 4)
        br, bc = r // 2 * 2, c // 2 * 2
        peers = [r * 4 + k for k in range(4)] + [k * 4 + c for k in range(4)]
        peers += [(br + dr) * 4 + bc + dc for dr in range(2) for dc in range(2)]
        return all(cells[p] != v for p in peers if p != i)

    def search() -> None:
        if len(solutions) >= limit:
            return
        try:
            i = cells.index(0)
        except ValueError:
            solutions.append("".join(map(str, cells)))
            return
        for v in range(1, 5):
            if ok(i, v):
                cells[i] = v
                search()
                cells[i] = 0

    search()
    return solutions


def _random_grid(rng: random.Random) -> list[list[int]]:
    """A uniformly relabelled, row/column-permuted valid 4x4 grid."""
    grid = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
    digits = rng.sample(range(1, 5), 4)
    grid = [[digits[v - 1] for v in row] for row in grid]
    bands = rng.sample([[0, 1], [2, 3]], 2)
    rows = [r for band in bands for r in rng.sample(band, 2)]
    stacks = rng.sample([[0, 1], [2, 3]], 2)
    cols = [c for stack in stacks for c in rng.sample(stack, 2)]
    grid = [[grid[r][c] for c in cols] for r in rows]
    if rng.random() < 0.5:
        grid = [list(col) for col in zip(*grid, strict=True)]
    return grid


def _broken_unit(grid: str) -> str | None:
    """The first row, column or 2x2 box of a solved 4x4 grid that is not a permutation of 1-4, or ``None``."""
    cells = [[grid[4 * r + c] for c in range(4)] for r in range(4)]
    units = {f"row {r + 1}": cells[r] for r in range(4)}
    units |= {f"column {c + 1}": [cells[r][c] for r in range(4)] for c in range(4)}
    units |= {f"box {b + 1}": [cells[r][c] for r in range(2 * (b // 2), 2 * (b // 2) + 2)
                                for c in range(2 * (b % 2), 2 * (b % 2) + 2)] for b in range(4)}
    return next((name for name, unit in units.items() if sorted(unit) != ["1", "2", "3", "4"]), None)


class Sudoku4(Task):
    name = "sudoku4"
    required_fields = ("puzzle", "solution")
    has_synthetic = True
    format_hint = "Put the 16 digits of the solved grid in \\boxed{}."

    def question(self, example: Example) -> str:
        p = example["puzzle"]
        rows = "\n".join(p[i : i + 4] for i in range(0, 16, 4))
        return (
            "Solve this 4x4 Sudoku. 0 marks an empty cell. Each row, column and 2x2 box must "
            f"contain 1 to 4 once.\n{rows}"
        )

    def reference_completion(self, example: Example) -> str:
        s = example["solution"]
        reasoning = "\n".join(s[i : i + 4] for i in range(0, 16, 4))
        return format_completion(reasoning, s)

    def normalize(self, row: dict[str, Any]) -> Example:
        puzzle = str(row.get("puzzle", row.get("Puzzle", ""))).strip()
        solution = str(row.get("solution", row.get("Solution", ""))).strip()
        if not _GRID.match(puzzle) or not re.fullmatch(r"[1-4]{16}", solution):
            raise ValueError(f"puzzle/solution must be 16 digits, got {puzzle!r} / {solution!r}")
        if any(p != "0" and p != s for p, s in zip(puzzle, solution, strict=True)):
            raise ValueError("solution contradicts the puzzle's given cells")
        broken = _broken_unit(solution)
        if broken:
            raise ValueError(f"solution {solution} breaks the rules: {broken} does not hold 1-4 once each")
        return {"puzzle": puzzle, "solution": solution}

    def parse_answer(self, completion: str) -> str | None:
        """The first 16 digits of the answer span, or ``None`` if there are fewer."""
        text = extract_answer_text(completion)
        if text is None:
            return None
        digits = re.sub(r"\D", "", text)
        return digits[:16] if len(digits) >= 16 else None

    def gold(self, example: Example) -> str:
        return example["solution"]

    def gold_answer_text(self, example: Example) -> str | None:
        return example["solution"]

    def is_equivalent(self, a: Any, b: Any) -> bool:
        return a is not None and b is not None and str(a) == str(b)

    def reward(self, completion: str, example: Example) -> float:
        """d1: the share of originally empty cells filled correctly (0 when nothing parses)."""
        answer = self.parse_answer(completion)
        if answer is None:
            return 0.0
        empty = [i for i, ch in enumerate(example["puzzle"]) if ch == "0"]
        if not empty:
            return float(answer == example["solution"])
        return sum(answer[i] == example["solution"][i] for i in empty) / len(empty)

    blanks = 8

    def sample(self, rng: random.Random) -> Example:
        """A puzzle with ``blanks`` (8) empty cells and a unique solution."""
        while True:
            solution = "".join(str(v) for row in _random_grid(rng) for v in row)
            cells = rng.sample(range(16), self.blanks)
            puzzle = "".join("0" if i in cells else ch for i, ch in enumerate(solution))
            if len(solve_all(puzzle)) == 1:
                return {"puzzle": puzzle, "solution": solution}
