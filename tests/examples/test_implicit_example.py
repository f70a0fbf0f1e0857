"""The implicit-VI BNN example at its quick size (the implicit family only):
it fits, prints its table and saves its plot, and the family correlates the
layers beyond the Monte Carlo noise of independent draws."""

import numpy as np

from _examples import load_example


def test_implicit_bnn_quick(capsys, tmp_path):
    out = tmp_path / "bnn.png"
    table = load_example("examples/implicit_bnn.py").main(["--quick", "--out", str(out)])
    assert out.exists()
    assert "held-out LL" in capsys.readouterr().out
    [(name, elbo, ll, cross, _, corr)] = table
    assert name == "implicit VI (linearized ELBO)"
    assert np.isfinite(elbo) and np.isfinite(ll)
    assert corr.shape == (10, 10)  # 3 hidden units: 3 + 3 + 3 + 1 weights
    assert cross > 3 * np.sqrt(2 / (np.pi * 500))  # independent draws' |corr| is about that
