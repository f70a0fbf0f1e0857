"""The eight-schools example: the centred model diverges, the non-centred one
does not and agrees with the quadrature reference within 5 Monte Carlo
standard errors."""

import numpy as np

from _examples import load_example


def test_eight_schools_quick(capsys, tmp_path):
    out = load_example("examples/eight_schools.py").main(["--quick", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    for name in ("eight_schools_funnel.png", "eight_schools_tau.png", "eight_schools_ppc.png"):
        assert (tmp_path / name).exists(), name

    # The centred funnel diverges; the non-centred model hardly ever does.
    n_centred = int(out["centred"].divergences.sum())
    n_non_centred = int(out["non_centred"].divergences.sum())
    assert n_centred > 0
    assert n_non_centred <= n_centred // 10
    assert any("divergent" in str(w.message) for w in out["centred_warnings"])
    assert "divergences:" in printed and "E-BFMI" in printed and "r_hat" in printed

    # The centred chains miss the neck: less mass at small tau than the posterior.
    tau = out["tau"]
    assert tau["NUTS, centred"] < tau["quadrature (exact)"]

    # The non-centred means of mu and tau match the quadrature within 5 MCSE.
    summary, ref = out["non_centred"].summary(), out["reference"]
    for addr in ("mu", "tau"):
        mean, mcse = float(summary[addr]["mean"]), float(summary[addr]["mcse"])
        assert np.isfinite(mcse) and mcse > 0
        assert abs(mean - ref[f"{addr}_mean"]) < 5 * mcse, (addr, mean, ref[f"{addr}_mean"], mcse)

    # The guide and the predictive check ran and give sensible numbers.
    guide = out["guides"]["auto_normal"]
    assert abs(guide["mu"].mean() - ref["mu_mean"]) < 1.0
    assert 0.0 < out["p_values"][("NUTS", "max")] < 1.0
