"""The draws of ``ppl.inference.chains.run`` and what they say about convergence.

``MCMCResult`` holds the samples (keyed by the addresses written in the
model), the acceptance probabilities and the sampler's statistics of every
kept step; its diagnostics are those of ``ppl.inference.diagnostics``.
``check`` turns them into ``SamplerWarning``\\ s after a run.
"""

from __future__ import annotations

import warnings
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ppl._errors import fmt_addr
from ppl.choices import ChoiceMap
from ppl.inference import diagnostics

# Vehtari et al. (2021) recommend R-hat below 1.01; Stan warns on E-BFMI below 0.3.
RHAT_LIMIT = 1.01
BFMI_LIMIT = 0.3


class SamplerWarning(UserWarning):
    """A run of ``ppl.inference.chains.run`` whose draws should not be trusted
    as they are: divergent transitions, R-hat above 1.01, or a low E-BFMI.

    ``ppl.inference.mcmc_result.check`` issues it after every run (unless
    ``warn=False``); each message names the addresses or chains and what to
    try. Filter it like any warning, e.g.
    ``warnings.simplefilter("error", ppl.inference.SamplerWarning)`` to make
    it an exception, or pass ``warn=False`` to ``run_mcmc``.

    Examples:
        >>> import warnings
        >>> from ppl.inference.mcmc_result import check
        >>> stuck = jnp.stack([jnp.zeros(100), jnp.ones(100)])  # two chains that disagree
        >>> noise = 0.1 * jax.random.normal(jax.random.key(0), (2, 100))
        >>> result = ppl.inference.MCMCResult(
        ...     ppl.ChoiceMap.d({"mu": stuck + noise}), jnp.ones((2, 100)), None)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     check(result)
        >>> [(w.category.__name__, str(w.message)[:25]) for w in caught]
        [('SamplerWarning', 'R-hat is above 1.01 at mu')]
    """


class MCMCResult(eqx.Module):
    """The draws of ``ppl.inference.chains.run`` (``run_mcmc``) and their diagnostics.

    ``summary()`` gives, per address, the mean, sd, median, 5% and 95%
    quantiles, the Monte Carlo standard error of the mean, bulk and tail
    effective sample sizes and rank-normalized split R-hat (Vehtari et al.
    2021; ``ppl.inference.diagnostics``); ``print_summary()`` prints it
    with the divergences, acceptance rates, tree depth and E-BFMI;
    ``ess()``, ``rhat()``, ``divergences`` and ``acceptance_rate`` give the
    pieces; ``to_arviz()`` converts to ArviZ (the ``arviz`` extra, else
    ``ImportError``). The diagnostics run on the host (NumPy) and need at
    least 4 draws per chain (NaN otherwise). Usually returned by
    ``run_mcmc``; any draws of shape ``(chains, draws, ...)`` can be wrapped.

    Attributes:
        samples: a pytree (by default a ``ppl.ChoiceMap`` of the latent
            choices and the ``ppl.deterministic`` values) whose leaves have
            leading axes ``(chains, draws)``.
        accept_prob: the acceptance probability of each step, ``(chains, draws)``.
        final: the last state of each chain (batched along chains).
        stats: the sampler's statistics at each kept step, ``(chains, draws)``
            each (see ``ppl.inference.mcmc.Kernel.stats``): for NUTS
            ``diverging``, ``tree_depth``, ``num_steps``, ``step_size`` and
            ``energy``.

    The diagnostics (``ess``, ``rhat``, ``summary``) are keyed by
    the addresses as written in the model: ``"mu"`` for a top-level choice,
    the tuple ``("sub", "z")`` for a choice made inside a call at ``"sub"``.
    For samples from a custom ``collect``, the keys are the pytree's own keys
    (dict keys, tuple indices, attribute names; a tuple of them for nested
    leaves, ``"value"`` for a bare array).

    Examples:
        >>> draws = jax.random.normal(jax.random.key(0), (2, 100))  # 2 chains of N(0, 1)
        >>> result = ppl.inference.MCMCResult(
        ...     ppl.ChoiceMap.d({"mu": draws}), jnp.ones((2, 100)), None)
        >>> s = result.summary()["mu"]
        >>> bool(abs(s["mean"]) < 3 * s["mcse"]), bool(s["rhat"] < 1.05)
        (True, True)
        >>> result.print_summary()
                mean   sd   median   5%   95%   mcse   ess_bulk   ess_tail   r_hat
        mu ...
        divergences: 0 of 200 draws
        acceptance rate per chain: [1.0, 1.0]
    """

    samples: Any
    accept_prob: jax.Array
    final: Any
    stats: dict = eqx.field(default_factory=dict)

    def _flat(self):
        if isinstance(self.samples, ChoiceMap):
            return {
                _key_of_address(a): np.asarray(self.samples[a]) for a in self.samples.addresses()
            }
        leaves = jax.tree_util.tree_leaves_with_path(self.samples)
        return {_key_of_path(p): np.asarray(x) for p, x in leaves}

    @property
    def acceptance_rate(self):
        """Mean acceptance probability per chain (an array of shape ``(chains,)``)."""
        return np.asarray(self.accept_prob).mean(axis=1)

    @property
    def divergences(self):
        """The number of divergent transitions among the kept draws, per chain.

        Returns:
            An int array of shape ``(chains,)``: zeros for kernels that do not
            report divergences (Metropolis-Hastings).

        Examples:
            >>> int(result.divergences.sum())
        """
        flags = [np.asarray(v) for k, v in self.stats.items() if k.startswith("diverging")]
        n_chains = np.shape(self.accept_prob)[0]
        return sum((f.sum(axis=1) for f in flags), np.zeros(n_chains, np.int64))

    def ess(self) -> dict:
        """Bulk effective sample size per address (rank-normalized split chains).

        Returns:
            A dict from address (``"mu"``, ``("sub", "z")``) to an array with the
            shape of one draw (NaN with fewer than 4 draws per chain).

        Examples:
            >>> result.ess()["mu"]
        """
        return {k: _or_nan(diagnostics.ess_bulk, v) for k, v in self._flat().items()}

    def rhat(self) -> dict:
        """Rank-normalized split R-hat per address (see ``diagnostics.rhat``).

        Returns:
            A dict from address to an array with the shape of one draw (NaN
            with fewer than 4 draws per chain).

        Examples:
            >>> max(float(np.max(r)) for r in result.rhat().values()) < 1.01
        """
        return {k: _or_nan(diagnostics.rhat, v) for k, v in self._flat().items()}

    def summary(self) -> dict:
        """Per address: the posterior mean, sd, median, 5% and 95% quantiles, the
        Monte Carlo standard error of the mean, the bulk and tail effective
        sample sizes and R-hat.

        Returns:
            A dict from address to ``dict(mean=, sd=, median=, q5=, q95=, mcse=,
            ess=, ess_bulk=, ess_tail=, rhat=)``, each an array with the shape of
            one draw (``ess`` is ``ess_bulk``; the effective sizes, MCSE and
            R-hat are NaN with fewer than 4 draws per chain).

        Examples:
            >>> s = result.summary()["mu"]
            >>> abs(s["mean"] - exact) < 5 * s["mcse"]
        """
        out = {}
        for k, v in self._flat().items():
            v = np.asarray(v, dtype=np.float64)
            q5, median, q95 = np.quantile(v, [0.05, 0.5, 0.95], axis=(0, 1))
            bulk = _or_nan(diagnostics.ess_bulk, v)
            out[k] = dict(
                mean=v.mean(axis=(0, 1)),
                sd=v.std(axis=(0, 1)),
                median=median,
                q5=q5,
                q95=q95,
                mcse=_or_nan(diagnostics.mcse_mean, v),
                ess=bulk,
                ess_bulk=bulk,
                ess_tail=_or_nan(diagnostics.ess_tail, v),
                rhat=_or_nan(diagnostics.rhat, v),
            )
        return out

    def print_summary(self, file=None) -> None:
        """Print ``summary`` as a table (one row per scalar element), then the
        divergences, the acceptance rate per chain and, for NUTS, the mean tree
        depth and E-BFMI per chain.

        Args:
            file: where to print (default ``sys.stdout``).

        Examples:
            >>> result.print_summary()
                       mean         sd     median ...   ess_bulk   ess_tail   r_hat
            mu       0.4870     0.2230     0.4868 ...     1520.3     2102.7   1.001
            divergences: 0 of 4000 draws
        """
        columns = ("mean", "sd", "median", "q5", "q95", "mcse", "ess_bulk", "ess_tail", "rhat")
        heads = ("mean", "sd", "median", "5%", "95%", "mcse", "ess_bulk", "ess_tail", "r_hat")
        rows = []
        for k, s in self.summary().items():
            for j in np.ndindex(np.shape(s["mean"])):
                name = _show(k) + (str(list(j)) if j else "")
                rows.append((name, *(float(np.asarray(s[c])[j]) for c in columns)))
        width = max([len(r[0]) for r in rows] + [8])
        print(f"{'':{width}}" + "".join(f" {h:>9}" for h in heads), file=file)
        for name, *values in rows:
            cells = [f"{v:9.4f}" for v in values[:6]] + [f"{v:9.1f}" for v in values[6:8]]
            print(f"{name:{width}} " + " ".join(cells) + f" {values[8]:9.3f}", file=file)
        n_chains, n_draws = np.shape(self.accept_prob)[:2]
        div = self.divergences
        print(f"divergences: {int(div.sum())} of {n_chains * n_draws} draws", file=file)
        print(f"acceptance rate per chain: {_rounded(self.acceptance_rate, 3)}", file=file)
        if "tree_depth" in self.stats:
            depth = np.asarray(self.stats["tree_depth"]).mean(axis=1)
            print(f"mean tree depth per chain: {_rounded(depth, 2)}", file=file)
        if "energy" in self.stats and n_draws > 1:
            e_bfmi = diagnostics.bfmi(self.stats["energy"])
            print(f"E-BFMI per chain: {_rounded(e_bfmi, 3)}", file=file)

    def to_arviz(self):
        """An ``arviz.InferenceData`` of the draws; a nested address becomes the
        variable ``"sub/z"``.

        Returns:
            ``arviz.InferenceData`` with a ``posterior`` group and a
            ``sample_stats`` group holding ``acceptance_rate`` and the sampler's
            statistics under ArviZ's names (``diverging``, ``tree_depth``,
            ``n_steps``, ``step_size``, ``energy``), so ``arviz.summary``,
            ``arviz.bfmi`` and ``arviz.plot_trace`` read them.

        Raises:
            ImportError: if arviz (the optional ``arviz`` extra) is not installed.

        Examples:
            >>> idata = result.to_arviz()
            >>> arviz.summary(idata)
        """
        try:
            # an optional dependency (pip install ppl[arviz])
            import arviz
        except ImportError as e:
            raise ImportError("to_arviz needs arviz: pip install arviz (or ppl[arviz])") from e
        posterior = {_show(k, "/"): np.asarray(v, np.float64) for k, v in self._flat().items()}
        stats = {"acceptance_rate": np.asarray(self.accept_prob)}
        stats |= {_ARVIZ_NAMES.get(k, k): np.asarray(v) for k, v in self.stats.items()}
        return arviz.from_dict(posterior=posterior, sample_stats=stats)


_ARVIZ_NAMES = {"num_steps": "n_steps"}


def check(result: MCMCResult, stacklevel: int = 3) -> None:
    """Warn (``SamplerWarning``) about divergent transitions, R-hat above
    1.01 and E-BFMI below 0.3, naming the addresses and what to try.

    Args:
        result: the draws of a run.
        stacklevel: passed to ``warnings.warn``, so the warning points at the
            user's call.

    Examples:
        >>> check(result)   # run_mcmc(..., warn=True) does this
    """
    n_chains, n_draws = np.shape(result.accept_prob)[:2]
    n_div = int(result.divergences.sum())
    if n_div:
        warnings.warn(
            f"{n_div} of {n_chains * n_draws} draws after warm-up were divergent transitions: "
            "the sampler met curvature its step size cannot follow, and the draws may miss part "
            "of the posterior. Raise the target acceptance (nuts(target_accept=0.95)), or "
            "reparameterize the model (a non-centred form of a hierarchical prior, as in "
            "x = mu + tau * ppl.normal(0, 1) @ 'x_raw').",
            SamplerWarning,
            stacklevel=stacklevel,
        )
    if n_chains >= 2 and n_draws >= diagnostics.MIN_DRAWS:
        worst = {k: float(np.nanmax(r)) for k, r in result.rhat().items() if np.size(r)}
        bad = sorted(((r, k) for k, r in worst.items() if r > RHAT_LIMIT), key=lambda t: -t[0])
        if bad:
            shown = ", ".join(f"{_show(k)} ({r:.3f})" for r, k in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            warnings.warn(
                f"R-hat is above {RHAT_LIMIT} at {shown}{more}: the chains disagree, so they "
                "have not converged to one distribution. Run longer (more n_warmup and "
                "n_samples), look at the chains (result.to_arviz() and arviz.plot_trace), "
                "or reparameterize.",
                SamplerWarning,
                stacklevel=stacklevel,
            )
    if "energy" in result.stats and n_draws > 1:
        low = np.flatnonzero(diagnostics.bfmi(result.stats["energy"]) < BFMI_LIMIT)
        if low.size:
            warnings.warn(
                f"E-BFMI is below {BFMI_LIMIT} in chains {low.tolist()}: the momentum "
                "resampling explores the energy poorly (often a funnel or heavy tails), and the "
                "tails of the posterior may be missed. Reparameterize the model.",
                SamplerWarning,
                stacklevel=stacklevel,
            )


def _rounded(values, digits: int) -> list:
    return [round(float(v), digits) for v in np.asarray(values)]


def _or_nan(fn, v):
    v = np.asarray(v, dtype=np.float64)
    if not diagnostics.enough_draws(v):
        return np.full(v.shape[2:], np.nan)
    return fn(v)


def _key_of_address(addr: tuple):
    return addr[0] if len(addr) == 1 else tuple(addr)


def _key_of_path(path):
    parts = []
    for entry in path:
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                parts.append(getattr(entry, attr))
                break
        else:
            parts.append(str(entry))
    if not parts:
        return "value"
    return parts[0] if len(parts) == 1 else tuple(parts)


def _show(key, sep=None) -> str:
    if isinstance(key, tuple):
        return sep.join(str(p) for p in key) if sep else fmt_addr(key)
    return str(key)


__all__ = ["MCMCResult", "SamplerWarning", "check"]
