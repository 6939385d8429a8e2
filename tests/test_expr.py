"""Safe arithmetic expressions over metric names (custom metrics): parsed, never eval'd."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.solver.expr import MAX_LENGTH, ExpressionError, parse_expression

NAMES = {"mean", "std", "cte_95", "p99_5"}


class TestParseExpression:
    def test_arithmetic_over_metrics(self) -> None:
        """+ - * / // % ** and parentheses compute as in Python, with floats."""

        expr = parse_expression("(cte_95 - 0.5 * std) / mean + 2 ** 3 - 7 // 2 + 7 % 4", NAMES)

        assert frozenset({"cte_95", "std", "mean"}) == expr.names
        assert (10.0 - 0.5 * 4.0) / 2.0 + 8.0 - 3.0 + 3.0 == expr.evaluate(
            {"cte_95": 10.0, "std": 4.0, "mean": 2.0}
        )

    def test_unary_minus(self) -> None:
        """Unary minus and plus apply to names and numbers."""

        assert -1.5 == parse_expression("-mean + +0.5", NAMES).evaluate({"mean": 2.0})

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("__import__('os')", "function call"),
            ("abs(mean)", "function call"),
            ("mean.real", "attribute access"),
            ("(1).__class__", "attribute access"),
            ("mean[0]", "subscript"),
            ("'a' * 3", "not a number"),
            ("True + mean", "not a number"),
            ("mean if std else 0", "conditional"),
            ("mean > std", "comparison"),
            ("lambda: 1", "lambda"),
            ("[mean]", "'List'"),
            ("os", "'os' is not a metric name"),
            ("__builtins__", "not a metric name"),
            ("mean; std", "not a valid expression"),
            ("mean +", "not a valid expression"),
        ],
    )
    def test_anything_but_arithmetic_is_refused(self, text: str, fragment: str) -> None:
        """Calls, attributes, subscripts, strings, unknown names and bad syntax are refused."""

        with pytest.raises(ExpressionError, match=fragment):
            parse_expression(text, NAMES)

    def test_too_long_is_refused(self) -> None:
        """An expression past MAX_LENGTH is refused before parsing."""

        with pytest.raises(ExpressionError, match="longer than"):
            parse_expression("+".join(["mean"] * MAX_LENGTH), NAMES)

    def test_deep_nesting_is_refused(self) -> None:
        """A chain of 900 unary minus signs is refused, not a RecursionError."""

        with pytest.raises(ExpressionError, match="nested deeper than"):
            parse_expression("-" * 900 + "mean", NAMES)

    def test_division_by_zero_is_a_clear_error(self) -> None:
        """Dividing by a zero metric raises ExpressionError naming the expression."""

        with pytest.raises(ExpressionError, match="'mean / std' cannot be evaluated"):
            parse_expression("mean / std", NAMES).evaluate({"mean": 1.0, "std": 0.0})

    def test_overflow_and_complex_are_refused(self) -> None:
        """Huge powers and negative numbers to fractional powers are not metric values."""

        with pytest.raises(ExpressionError, match="cannot be evaluated"):
            parse_expression("10 ** 400", NAMES).evaluate({})
        with pytest.raises(ExpressionError, match="evaluates to"):
            parse_expression("mean ** 0.5", NAMES).evaluate({"mean": -4.0})

    def test_missing_value_is_named(self) -> None:
        """Evaluating without a value for a used name says which."""

        with pytest.raises(ExpressionError, match="no value for std"):
            parse_expression("mean - std", NAMES).evaluate({"mean": 1.0})

    @settings(max_examples=40, deadline=None)
    @given(
        st.floats(min_value=-1e6, max_value=1e6),
        st.floats(min_value=-1e6, max_value=1e6),
        st.floats(min_value=1e-3, max_value=1e3),
    )
    def test_agrees_with_python_arithmetic(self, a: float, b: float, c: float) -> None:
        """A fixed formula gives what Python computes for the same numbers."""

        expr = parse_expression("(mean - std) * cte_95 / p99_5 - -mean", NAMES)

        expected = (a - b) * c / c - -a
        assert expected == expr.evaluate({"mean": a, "std": b, "cte_95": c, "p99_5": c})
