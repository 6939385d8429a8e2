"""A solver target given as an am:// reference is fetched from a live Assumptions Manager."""

from __future__ import annotations

from pathlib import Path

import pytest

from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.server import BackgroundServer, create_app, issue_token
from livecalc.engines.solver import SolverEngine
from test_solver import PricingEvaluator, premium_goal

SECRET = "t" * 40


class TestTargetFromAssumptionsManager:
    def test_goal_seek_hits_the_served_target(self, tmp_path: Path) -> None:
        """The target row 'mean' of am://pricing-targets@v3 is the value the goal-seek hits."""
        (tmp_path / "root" / "pricing-targets").mkdir(parents=True)
        (tmp_path / "root" / "pricing-targets" / "v3.csv").write_text("name,value\nmean,80\n")
        engine = SolverEngine()
        with BackgroundServer(create_app(tmp_path / "root", SECRET)) as server:
            creds = AMCredentials(
                am_url=server.url,
                am_token=issue_token(SECRET, "pricing"),
                cache_dir=str(tmp_path / "cache"),
            )
            engine.initialize(premium_goal("am://pricing-targets@v3"), creds)
        evaluator = PricingEvaluator()
        engine.bind_evaluator(evaluator)

        engine.run_chunk(evaluator.records({}), None)

        opt = engine.get_outputs()["optimization"]
        assert 80.0 == opt["objective"]["target"]
        assert 80.0 == pytest.approx(opt["objective_value"], abs=1e-9)
