"""Safe arithmetic expressions over metric names, for the solver's custom metrics.

``"cte_95 - 0.5 * std"`` is parsed with :mod:`ast` and walked by a tiny interpreter that knows
numbers, metric names, ``+ - * / // % **``, unary ``+``/``-`` and parentheses. Nothing is ever
compiled or passed to ``eval``: a call, an attribute, a subscript, a comprehension, a string, a
name that is not a metric (``__import__``) is refused when the expression is parsed, with the
offending piece and its column in the message.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

__all__ = ["Expression", "ExpressionError", "parse_expression"]

MAX_LENGTH = 1000
"""Longer expressions are refused."""

MAX_DEPTH = 200
"""Expressions nested deeper (operators within operators) are refused."""

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class ExpressionError(ValueError):
    """An expression is not plain arithmetic over known names, or cannot be evaluated."""


def _describe(node: ast.AST) -> str:
    kind = {
        ast.Call: "a function call",
        ast.Attribute: "an attribute access",
        ast.Subscript: "a subscript",
        ast.Lambda: "a lambda",
        ast.Compare: "a comparison",
        ast.BoolOp: "a boolean operator",
        ast.IfExp: "a conditional expression",
    }.get(type(node), f"{type(node).__name__!r}")
    col = getattr(node, "col_offset", None)
    return kind + (f" at column {col + 1}" if col is not None else "")


def _check(node: ast.AST, allowed: Collection[str], names: set[str], depth: int = 0) -> None:
    """Refuse anything but arithmetic on numbers and allowed names; collect the names used."""
    if depth > MAX_DEPTH:
        # Also keeps this walk and the evaluator's far from Python's recursion limit.
        raise ExpressionError(f"expression nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Expression):
        _check(node.body, allowed, names, depth + 1)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, allowed, names, depth + 1)
        _check(node.right, allowed, names, depth + 1)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, allowed, names, depth + 1)
    elif isinstance(node, ast.Constant):
        # bool is an int subclass; True + 1 is not arithmetic anyone means in a metric.
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"{node.value!r} is not a number; only numbers are allowed")
    elif isinstance(node, ast.Name):
        if node.id not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ExpressionError(f"{node.id!r} is not a metric name (known: {known})")
        names.add(node.id)
    else:
        raise ExpressionError(
            f"{_describe(node)} is not allowed: use numbers, metric names, + - * / // % ** "
            "and parentheses"
        )


def _evaluate(node: ast.AST, values: Mapping[str, float]) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, values)
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)  # _check admitted only numbers
        return float(node.value)
    assert isinstance(node, ast.Name)  # _check admitted nothing else
    return float(values[node.id])


@dataclass(frozen=True)
class Expression:
    """A checked arithmetic expression; ``names`` are the metrics it reads."""

    text: str
    names: frozenset[str]
    _tree: ast.Expression

    def evaluate(self, values: Mapping[str, float]) -> float:
        """The expression's value for these metric values.

        Raises:
            ExpressionError: a name has no value, or the arithmetic fails (division by zero,
                overflow) or gives a non-finite number.
        """
        missing = sorted(self.names - set(values))
        if missing:
            raise ExpressionError(f"{self.text!r}: no value for {', '.join(missing)}")
        try:
            # Constants are floats, so ** overflows quickly instead of building a huge integer.
            result = _evaluate(self._tree, values)
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ExpressionError(f"{self.text!r} cannot be evaluated: {exc}") from exc
        # A negative number to a fractional power is complex in Python: not a metric value.
        if not isinstance(result, float) or not math.isfinite(result):
            raise ExpressionError(f"{self.text!r} evaluates to {result}")
        return result


def parse_expression(text: str, allowed_names: Collection[str]) -> Expression:
    """Parse ``text`` as arithmetic over ``allowed_names``.

    Raises:
        ExpressionError: syntax error, too long, or anything but arithmetic on numbers and
            allowed names (calls, attributes, subscripts, strings, unknown names...).
    """
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"{text!r} is not a valid expression: {exc}") from None
    names: set[str] = set()
    _check(tree, allowed_names, names)
    return Expression(text, frozenset(names), tree)
