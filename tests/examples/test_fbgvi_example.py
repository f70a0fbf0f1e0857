"""The FB-GVI example at its quick size: on the Gaussian target FB-GVI reaches
the exact posterior, and every method's KL is finite and nonnegative up to
the quadrature's error."""

import numpy as np

from _examples import load_example


def test_fbgvi_example_quick(capsys, tmp_path):
    out = tmp_path / "fbgvi.png"
    rows = load_example("examples/fbgvi_logistic.py").main(["--quick", "--out", str(out)])
    assert out.exists()
    assert "FB-GVI deterministic" in capsys.readouterr().out
    by = {(target, method): kl for target, method, _, _, kl, _, _ in rows}
    gaussian = [k for k in by if k[0].startswith("Gaussian")]
    assert gaussian
    assert by[("Gaussian (linear regression)", "FB-GVI deterministic")] < 1e-3
    assert all(np.isfinite(kl) and kl > -1e-3 for kl in by.values())
