"""The HMM-under-NUTS example at its --quick size: the exact checks hold, the plots
are written, and the posterior of the levels agrees with a long reference run."""

import numpy as np

from _examples import load_example


# Posterior of the levels mu for the --quick data (T = 100, seed 0), from
# 4 chains x 5000 draws of the same sampler (1000 warm-up): mean and MCSE.
REFERENCE_MEAN = np.array([-1.9941, 0.0044, 2.4457])
REFERENCE_MCSE = np.array([0.0008, 0.0009, 0.0007])


def test_hmm_nuts_quick(tmp_path):
    # Without the NUTS + MH comparison (a second NUTS compilation, ~25 s more).
    out = load_example("examples/hmm_nuts.py").main(
        ["--quick", "--no-alternative", "--out", str(tmp_path)]
    )
    checks = out["checks"]
    assert abs(checks["log_lik"] - checks["log_lik_numpy"]) < 1e-5 * abs(checks["log_lik_numpy"])
    assert checks["ffbs_worst_z"] < 5.0 and checks["ffbs_p_value"] > 1e-3
    assert checks["viterbi_mismatches"] == 0
    assert (tmp_path / "hmm_nuts_states.png").exists()
    assert (tmp_path / "hmm_nuts_params.png").exists()

    s = out["result"].summary()["means"]
    mean, mcse = np.asarray(s["mean"]), np.asarray(s["mcse"])
    assert np.all(np.abs(mean - REFERENCE_MEAN) < 5 * np.hypot(mcse, REFERENCE_MCSE)), (mean, mcse)
    # the state posterior finds the regimes
    accuracy = np.mean(out["state_probs"].argmax(axis=1) == out["z_true"])
    assert accuracy > 0.9
