"""A safe arithmetic evaluator for model-written expressions (Countdown). Never uses ``eval``.

The expression is parsed with :mod:`ast` (parsing runs no code) and walked over an allow-list:
numeric literals, ``+ - * /``, unary minus/plus and parentheses. Powers, names, calls, attributes,
comparisons and everything else are rejected, as are over-long inputs, deep nesting and huge values,
so a hostile completion costs microseconds, not minutes.
"""

from __future__ import annotations

import ast
import operator

MAX_CHARS = 200
MAX_DEPTH = 32
MAX_ABS = 1e12

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class UnsafeExpression(ValueError):
    """The expression is not plain arithmetic over numbers, or cannot be evaluated."""


def _walk(node: ast.AST, depth: int) -> float:
    if depth > MAX_DEPTH:
        raise UnsafeExpression("expression nested too deeply")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _walk(node.operand, depth + 1)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _walk(node.left, depth + 1), _walk(node.right, depth + 1)
        if isinstance(node.op, ast.Div) and right == 0:
            raise UnsafeExpression("division by zero")
        value = _BINOPS[type(node.op)](left, right)
        if abs(value) > MAX_ABS:
            raise UnsafeExpression("value too large")
        return value
    raise UnsafeExpression(f"not allowed in an arithmetic expression: {type(node).__name__}")


def safe_arith_eval(expression: str) -> float:
    """Value of ``expression`` using only numbers, ``+ - * /`` and parentheses.

    Raises :class:`UnsafeExpression` for anything else (names, calls, ``**``, division by zero, more
    than ``MAX_CHARS`` characters).
    """
    if len(expression) > MAX_CHARS:
        raise UnsafeExpression(f"expression longer than {MAX_CHARS} characters")
    text = expression.replace("×", "*").replace("÷", "/").replace("−", "-").strip()
    if "**" in text:
        raise UnsafeExpression("powers are not allowed")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise UnsafeExpression(f"not an expression: {err}") from None
    return _walk(tree.body, 0)


def expression_numbers(expression: str) -> list[int | float]:
    """Numeric literals of an expression in order of appearance (``[]`` if it does not parse).

    Integer literals come back as ``int``, others (``2.5``, ``1e3``) as ``float``, so that a caller
    checking "each given number used once" also sees a literal the expression smuggled in.
    """
    if len(expression) > MAX_CHARS:
        return []
    text = expression.replace("×", "*").replace("÷", "/").replace("−", "-")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    literals = [
        n for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) in (int, float)
    ]
    # ast.walk is breadth-first; sort by source position for the documented order
    literals.sort(key=lambda n: (n.lineno, n.col_offset))
    return [n.value for n in literals]
