"""Exact inference by enumeration, for models whose latent choices are all
finite discrete (flip, categorical, binomial, ...): the joint density of every
combination of latent values, summed exactly. Used as ground truth in tests.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import as_args
from ppl.choices import ChoiceMap
from ppl.inference._subsampling import refuse_in_trace
from ppl.inference._sites import site_items, sites
from ppl.inference._util import as_choices, selection_of


class Enumeration(eqx.Module):
    """The exact posterior of ``enumerate_posterior``: every joint
    combination of the latent values with its log joint density.

    From them, exactly: ``log_marginal_likelihood`` (``log p(observations)``),
    ``log_probs`` and ``probs`` (the posterior probability of each
    combination), ``expectation(f)`` (``E[f(choices) | observations]``, ``f``
    vectorised over combinations with ``vmap``) and ``marginal(addr,
    values)`` (the posterior probability that each element of the choice at
    ``addr`` takes each of ``values``).

    Attributes:
        choices: a ``ppl.ChoiceMap`` of the latent choices, every
            combination stacked along a leading axis.
        log_joint: ``log p(combination, observations)`` of each, shape
            ``(combinations,)``.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     rain = ppl.flip(0.2) @ "rain"
        ...     return ppl.flip(jnp.where(rain, 0.9, 0.1)) @ "wet"
        >>> post = ppl.inference.enumerate_posterior(model, {"wet": True}, ())
        >>> post.choices["rain"].tolist(), [round(float(p), 3) for p in post.probs]
        ([False, True], [0.308, 0.692])
        >>> round(float(jnp.exp(post.log_marginal_likelihood)), 3)  # 0.8 * 0.1 + 0.2 * 0.9
        0.26
        >>> [round(float(p), 3) for p in post.marginal("rain", [False, True])]
        [0.308, 0.692]
    """

    choices: ChoiceMap
    log_joint: jax.Array

    @property
    def log_marginal_likelihood(self):
        """``log p(observations)``, exactly."""
        return jax.scipy.special.logsumexp(self.log_joint)

    @property
    def log_probs(self):
        """Posterior log probability of each combination."""
        return self.log_joint - self.log_marginal_likelihood

    @property
    def probs(self):
        return jnp.exp(self.log_probs)

    def expectation(self, f):
        """``E[f(choices)]`` under the posterior, exactly."""
        vals = jax.vmap(f)(self.choices)
        p = self.probs.reshape((-1,) + (1,) * (jnp.ndim(vals) - 1))
        return jnp.sum(jnp.where(p > 0, p * vals, 0.0), axis=0)

    def marginal(self, addr, values):
        """Posterior probability that each element of the choice at ``addr`` takes
        each of ``values``: an array of shape ``value_shape + (len(values),)``."""
        x = self.choices[addr]
        hits = x[..., None] == jnp.asarray(values)
        p = self.probs.reshape((-1,) + (1,) * (hits.ndim - 1))
        return jnp.sum(p * hits, axis=0)


def _support_values(addr, site):
    d = site.dist
    if not getattr(d, "has_enumerate_support", False):
        raise PPLError(
            f"enumeration needs finite discrete latent choices, but {fmt_addr(addr)} is drawn from "
            f"{site.name}, whose support cannot be enumerated. Observe it, or use importance "
            "sampling, SMC or MCMC instead."
        )
    vals = np.asarray(d.enumerate_support(expand=False))
    k = vals.shape[0]
    flat = vals.reshape(k, -1)
    if not np.all(flat == flat[:, :1]):
        raise PPLError(
            f"enumeration: the elements of {fmt_addr(addr)} have different supports; enumerate "
            f"them as separate choices."
        )
    return flat[:, 0].astype(np.asarray(site.value).dtype)


def enumerate_posterior(model, observations, args, max_combinations=2**20) -> Enumeration:
    """The exact posterior over the latent choices of ``model`` given
    ``observations``, by evaluating ``assess`` on every combination.

    Every latent choice must be finite discrete (``flip``, ``categorical``,
    ``binomial``: a numpyro distribution with ``enumerate_support``), with
    one support for all elements of a vector-valued choice. The model is
    staged once (a ``generate`` at ``jax.random.key(0)`` reads the latent
    choices and their supports), then the log joint density of every
    combination is computed in one compiled ``vmap`` of ``assess``. The cost
    is the number of combinations, the product of the support sizes over
    every latent element, in time and memory: exponential in the number of
    latent choices. Meant for small models and as ground truth in tests;
    ``ppl.sum_out`` sums discrete choices out along the model's structure
    (per element of a ``ppl.vmap``, by the forward recursion of a
    ``ppl.scan``) at far lower cost. A model with a subsampled
    ``ppl.vmap(..., subsample_of=N)`` is refused (its scaled density is not
    the posterior's).

    Args:
        model: the generative function.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        max_combinations: the most joint combinations to enumerate (default
            ``2**20``).

    Returns:
        An ``Enumeration``: the combinations and their log joint
        densities, with the exact log marginal likelihood, posterior
        probabilities, expectations and marginals.

    Raises:
        PPLError: if a latent choice's support cannot be enumerated (a
            continuous choice: observe it or use importance sampling, SMC or
            MCMC), its elements have different supports, there are no latent
            choices, there are more than ``max_combinations`` combinations
            (naming each choice's count), a latent choice is made in a
            ``ppl.switch``/``ppl.cond``/``ppl.mix`` branch picked at run time,
            or the model subsamples.
        AddressError: if an observation is at an address the model does not make.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     coin = ppl.flip(0.5) @ "coin"
        ...     return ppl.binomial(3, jnp.where(coin, 0.8, 0.3)) @ "heads"
        >>> post = ppl.inference.enumerate_posterior(model, {"heads": 3}, ())
        >>> round(float(post.expectation(lambda c: c["coin"].astype(float))), 3)
        0.95
    """
    observations = as_choices(observations)
    args = as_args(args, model.name)
    # Jitted: an eager run would dispatch every primitive one by one.
    trace, _ = jax.jit(lambda o, a: model.generate(jax.random.key(0), o, a))(observations, args)
    refuse_in_trace(trace, "enumeration")
    latent = sites(trace).without(selection_of(observations))
    items = site_items(latent)
    if not items:
        raise PPLError(f"enumeration: {model.name} has no latent choices given these observations.")
    supports, sizes, total = [], [], 1
    for addr, site in items:
        vals = _support_values(addr, site)
        n_elem = int(np.prod(np.shape(site.value)))
        supports.append(vals)
        sizes.append(n_elem)
        total *= len(vals) ** n_elem
        if total > max_combinations:
            shown = ", ".join(
                f"{fmt_addr(a)} ({len(_support_values(a, s))}^{int(np.prod(np.shape(s.value)))})"
                for a, s in items
            )
            raise PPLError(
                f"enumeration: the latent choices of {model.name} have more than "
                f"{max_combinations} joint combinations ({shown}). Raise max_combinations, or use "
                f"SMC or MCMC."
            )
    # Mixed-radix digits: combination index -> one support index per element.
    radices = [len(v) for v, n in zip(supports, sizes) for _ in range(n)]
    digits = (
        np.stack(np.unravel_index(np.arange(total), radices), axis=1)
        if radices
        else np.zeros((1, 0), int)
    )
    values, col = [], 0
    for (addr, site), vals, n in zip(items, supports, sizes):
        idx = digits[:, col : col + n].reshape((total,) + np.shape(site.value))
        values.append((addr, jnp.asarray(vals[idx])))
        col += n
    combos = ChoiceMap.d(dict(values))
    log_joint = jax.jit(jax.vmap(lambda c: model.assess(c | observations, args)[0]))(combos)
    return Enumeration(combos, log_joint)
