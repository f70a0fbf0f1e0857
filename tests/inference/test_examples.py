"""Smoke tests: the inference examples run end to end with --quick (the benchmark
has its own --quick mode: python benchmarks/mcmc_numpyro.py --quick)."""

import numpy as np

from _examples import load_example


def test_hmm_smc_quick(tmp_path):
    results = load_example("examples/hmm_smc.py").main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "hmm_smc.png").exists()
    prior, trained = results["prior proposal"], results["VI-trained proposal"]
    assert np.mean(trained[1]) > np.mean(prior[1])  # more effective particles


def test_mcmc_regression_quick(capsys, tmp_path):
    nuts_result, mh_result = load_example("examples/mcmc_regression.py").main(
        ["--quick", "--chains", "2", "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert "r_hat" in out and "effective samples per second" in out
    assert "posterior predictive check" in out and "p = " in out
    assert (tmp_path / "mcmc_regression_ppc.png").exists()
    assert abs(float(nuts_result.samples["b"].mean()) - float(mh_result.samples["b"].mean())) < 0.1
