"""Smoke tests: the inference examples run end to end with --quick (the benchmark
has its own --quick mode: python benchmarks/mcmc_numpyro.py --quick)."""

import importlib.util
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load(rel):
    spec = importlib.util.spec_from_file_location(pathlib.Path(rel).stem, ROOT / rel)
    assert spec is not None and spec.loader is not None  # a .py path always has both
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hmm_smc_quick(tmp_path):
    results = _load("examples/hmm_smc.py").main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "hmm_smc.png").exists()
    prior, trained = results["prior proposal"], results["VI-trained proposal"]
    assert np.mean(trained[1]) > np.mean(prior[1])  # more effective particles


def test_mcmc_regression_quick(capsys, tmp_path):
    nuts_result, mh_result = _load("examples/mcmc_regression.py").main(
        ["--quick", "--chains", "2", "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert "r_hat" in out and "effective samples per second" in out
    assert "posterior predictive check" in out and "p = " in out
    assert (tmp_path / "mcmc_regression_ppc.png").exists()
    assert abs(float(nuts_result.samples["b"].mean()) - float(mh_result.samples["b"].mean())) < 0.1
