"""The implicit-VI BNN example at its quick size: it runs the two VI methods,
prints its table and saves its plot; mean-field VI has no cross-layer
correlation beyond Monte Carlo noise, and the implicit family has some."""

import numpy as np

from _examples import load_example


def test_implicit_bnn_quick(capsys, tmp_path):
    out = tmp_path / "bnn.png"
    table = load_example("examples/implicit_bnn.py").main(["--quick", "--out", str(out)])
    assert out.exists()
    assert "held-out LL" in capsys.readouterr().out
    by = {name: (ll, cross) for name, _, ll, cross, _, _ in table}
    assert set(by) == {"mean-field VI", "implicit VI (linearized ELBO)"}  # no NUTS when quick
    assert all(np.isfinite(ll) for ll, _ in by.values())
    assert by["mean-field VI"][1] < 0.1
    assert by["implicit VI (linearized ELBO)"][1] > by["mean-field VI"][1]
