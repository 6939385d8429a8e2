"""Regenerate the examples' small data files (committed; run only to change them).

.venv/bin/python examples/make_example_data.py
"""

from __future__ import annotations

from pathlib import Path

from livecalc.io.generate import (
    generate_policies,
    generate_scenarios,
    write_policies,
    write_scenarios,
)

HERE = Path(__file__).parent


def main() -> None:
    """200 seeded policies, and 100 Hull-White scenarios of 50 years for the projection-only
    example (the other examples run the ESG themselves)."""
    (HERE / "data").mkdir(exist_ok=True)
    write_policies(HERE / "data" / "policies.parquet", generate_policies(200, seed=42))
    scenarios = generate_scenarios(outer=1, inner=100, years=50, seed=7)
    write_scenarios(HERE / "data" / "scenarios.parquet", scenarios)


if __name__ == "__main__":
    main()
