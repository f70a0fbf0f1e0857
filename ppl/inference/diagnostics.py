"""Convergence diagnostics of MCMC draws: rank-normalized R-hat, bulk and tail ESS.

The estimators of Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021,
"Rank-normalization, folding, and localization"): chains are split in
half, so a chain that drifts shows up as two that disagree; draws are
replaced by the normal quantiles of their ranks, so heavy tails and
infinite variances do not hide poor mixing. The autocorrelation-based
effective sample size underneath is numpyro's (Geyer's initial monotone
sequence, as in Stan).

Every function takes draws with leading axes ``(chains, draws)`` and returns
one value per element of a draw (the trailing shape).
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin


def _split(x: np.ndarray) -> np.ndarray:
    """Each chain as two half chains, ``(2 chains, draws // 2, ...)``; an odd middle
    draw is dropped."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """The normal quantiles of the ranks of all draws (ties share their mean rank)."""
    flat = x.reshape((-1,) + x.shape[2:])
    ranks = scipy.stats.rankdata(flat, axis=0)
    z = scipy.stats.norm.ppf((ranks - 0.375) / (flat.shape[0] + 0.25))
    return z.reshape(x.shape)


# Split chains of fewer than 2 draws have no autocorrelation to estimate.
MIN_DRAWS = 4


def enough_draws(x) -> bool:
    """Whether ``x`` has the axes ``(chains, draws, ...)`` and at least
    ``MIN_DRAWS`` draws per chain, as every diagnostic here needs.

    Args:
        x: an array of draws.

    Returns:
        A bool.

    Raises:
        Nothing of its own: anything ``np.shape`` reads is answered.

    Examples:
        >>> import numpy as np
        >>> from ppl.inference.diagnostics import enough_draws
        >>> enough_draws(np.zeros((2, 3))), enough_draws(np.zeros((2, 4)))
        (False, True)
    """
    shape = np.shape(x)
    return len(shape) >= 2 and shape[1] >= MIN_DRAWS


def _checked(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not enough_draws(x):
        raise ValueError(
            f"the diagnostics need draws with axes (chains, draws, ...) and at least {MIN_DRAWS} "
            f"draws per chain; got an array of shape {x.shape}. Run more samples "
            f"(n_samples >= {MIN_DRAWS})."
        )
    return x


def _ess(x: np.ndarray) -> np.ndarray:
    # A constant input has no variance, so its ESS is undefined: NaN, without warnings.
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(effective_sample_size(x), dtype=np.float64)
    constant = np.all(x == x[:1, :1], axis=(0, 1))
    return np.where(constant, np.nan, out)


def ess_bulk(x) -> np.ndarray:
    """Bulk effective sample size: the ESS of the rank-normalized split chains.

    It measures how well the centre of the distribution is explored; the
    Monte Carlo standard error of a posterior mean is about ``sd / sqrt(ess)``.

    Args:
        x: draws with leading axes ``(chains, draws)``, at least 4 draws per chain.

    Returns:
        An array with the shape of one draw (NaN where every draw is equal).

    Raises:
        ValueError: for fewer than two axes or fewer than 4 draws per chain.

    Examples:
        >>> import numpy as np
        >>> from ppl.inference.diagnostics import ess_bulk
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))  # 2000 independent draws
        >>> bool(1500 < ess_bulk(draws) < 2500)
        True
        >>> bool(ess_bulk(np.cumsum(draws, axis=1)) < 100)   # random walks mix badly
        True
    """
    return _ess(_z_scale(_split(_checked(x))))


def ess_tail(x) -> np.ndarray:
    """Tail effective sample size: the smaller ESS of the indicators of the 5% and
    95% quantiles, over split chains.

    It measures how well the tails are explored (what a 90% interval needs).

    Args:
        x: draws with leading axes ``(chains, draws)``, at least 4 draws per chain.

    Returns:
        An array with the shape of one draw (NaN where every draw is equal).

    Raises:
        ValueError: for fewer than two axes or fewer than 4 draws per chain.

    Examples:
        >>> import numpy as np
        >>> from ppl.inference.diagnostics import ess_tail
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))
        >>> bool(1000 < ess_tail(draws) < 3000)
        True
    """
    x = _split(_checked(x))
    lo, hi = np.quantile(x, [0.05, 0.95], axis=(0, 1))
    below = _ess((x <= lo).astype(np.float64))
    above = _ess((x <= hi).astype(np.float64))
    return np.fmin(below, above)


def rhat(x) -> np.ndarray:
    """Rank-normalized split R-hat: the larger of the split R-hat of the
    rank-normalized draws and of their folded ranks (distances from the median).

    Values above 1.01 say the chains have not mixed: they disagree in location
    (the bulk term) or in scale (the folded term).

    Args:
        x: draws with leading axes ``(chains, draws)``, at least 4 draws per chain.

    Returns:
        An array with the shape of one draw (NaN where every draw is equal).

    Raises:
        ValueError: for fewer than two axes or fewer than 4 draws per chain.

    Examples:
        >>> import numpy as np
        >>> from ppl.inference.diagnostics import rhat
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))
        >>> bool(rhat(draws) < 1.01)
        True
        >>> bool(rhat(draws + np.arange(4)[:, None]) > 1.01)   # chains at different places
        True
    """
    # numpyro's split R-hat splits the chains itself; the ranks are over all draws.
    x = _checked(x)
    folded = np.abs(x - np.median(x, axis=(0, 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        bulk = split_gelman_rubin(_z_scale(x))
        tail = split_gelman_rubin(_z_scale(folded))
    out = np.fmax(np.asarray(bulk, np.float64), np.asarray(tail, np.float64))
    return np.where(np.all(x == x[:1, :1], axis=(0, 1)), np.nan, out)


def mcse_mean(x) -> np.ndarray:
    """Monte Carlo standard error of the posterior mean: ``sd / sqrt(ESS)``, with
    the ESS of the split chains of the draws themselves (not rank-normalized).

    Args:
        x: draws with leading axes ``(chains, draws)``, at least 4 draws per chain.

    Returns:
        An array with the shape of one draw.

    Raises:
        ValueError: for fewer than two axes or fewer than 4 draws per chain.

    Examples:
        >>> import numpy as np
        >>> from ppl.inference.diagnostics import mcse_mean
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))  # exact mean 0, sd 1
        >>> round(float(mcse_mean(draws)), 2)   # about 1 / sqrt(2000)
        0.02
        >>> bool(abs(draws.mean()) < 4 * mcse_mean(draws))
        True
    """
    x = _checked(x)
    return x.std(axis=(0, 1), ddof=1) / np.sqrt(_ess(_split(x)))


def bfmi(energy) -> np.ndarray:
    """Energy Bayesian fraction of missing information per chain (Betancourt 2016).

    The mean squared change of the Hamiltonian between draws over its variance;
    below 0.3 the momentum resampling explores the energy distribution poorly
    (heavy tails, a funnel), and the posterior's tails may be missed.

    Args:
        energy: the Hamiltonian at each draw, ``(chains, draws)`` (NUTS records
            it as ``MCMCResult.stats["energy"]``).

    Returns:
        An array of shape ``(chains,)`` (NaN for a chain whose energy is constant).

    Raises:
        numpy.exceptions.AxisError: if ``energy`` has fewer than two axes (it is
            a ``ValueError``).

    Examples:
        >>> import numpy as np
        >>> from ppl.inference.diagnostics import bfmi
        >>> energy = np.random.default_rng(0).normal(size=(2, 1000))  # independent energies
        >>> [round(float(b), 1) for b in bfmi(energy)]   # about 2 when they are independent
        [2.0, 2.0]
    """
    e = np.asarray(energy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.square(np.diff(e, axis=1)).mean(axis=1) / e.var(axis=1, ddof=1)


__all__ = ["MIN_DRAWS", "bfmi", "enough_draws", "ess_bulk", "ess_tail", "mcse_mean", "rhat"]
