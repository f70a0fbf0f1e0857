"""The measure-valued derivative (MVD) strategy.

The derivative of a density with respect to a parameter is written as a
weighted difference of two distributions (a *weak derivative*),
``d/dθ p(x; θ) = c(θ) (p⁺(x; θ) - p⁻(x; θ))``, so that

    d/dθ E_p[f(X)] = c(θ) (E_p⁺[f(X⁺)] - E_p⁻[f(X⁻)]),

and the rest of the program is evaluated, primal only, at one extra value
from each side, coupled with the value sampled from ``p`` so that the
difference has low variance. The decompositions used:

* ``flip(p)``: ``d/dp E f = f(True) - f(False)`` (exact).
* ``categorical(probs)`` / ``categorical(logits=...)``: with ``q`` the
  normalised probabilities and ``dq`` their tangent (``sum(dq) = 0``),
  ``dE f = sum_i dq_i (f(i) - f(X))``, ``X ~ q``: every value of the support
  is a positive part, the distribution itself the negative part.
* ``poisson(rate)``: ``d/dλ p(k) = p(k - 1) - p(k)``, so
  ``d/dλ E f(X) = E[f(X + 1) - f(X)]``.
* ``geometric(p)`` (failures before the first success,
  ``p(k) = p (1 - p)^k``): ``d/dp p(k) = p(k) / p - k p(k) / (1 - p)``; the
  second part, normalised, is the law of ``1 + X + X'`` with ``X, X'``
  independent geometric(p), so ``d/dp E f(X) = -E[f(1 + X + X') - f(X)] / p``.
* ``binomial(n, p)``: ``d/dp E f(X) = n E[f(Y + 1) - f(Y)]`` with
  ``Y ~ binomial(n - 1, p)``; the value is drawn as ``X = Y + B``,
  ``B ~ flip(p)``, so one of ``Y``, ``Y + 1`` is ``X`` itself.
* ``normal(loc, scale)``: Rayleigh couplings for the location,
  double-sided Maxwell for the scale.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpyro.distributions as nd

from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev.dual import Result
from ppl.transforms.adev.strategies import Strategy, _is_discrete, _scalar

_FLIP = (nd.BernoulliProbs, nd.BernoulliLogits)
_CATEGORICAL = (nd.CategoricalProbs, nd.CategoricalLogits)
_GEOMETRIC = (nd.GeometricProbs, nd.GeometricLogits)
_BINOMIAL = (nd.BinomialProbs, nd.BinomialLogits)
SUPPORTED = _FLIP + _CATEGORICAL + _GEOMETRIC + _BINOMIAL + (nd.Poisson, nd.Normal)


class MVD(Strategy):
    """Measure-valued derivative: the derivative of the choice's density is a
    weighted difference of two distributions, and the rest of the program is
    evaluated (primal only) at coupled extra values from each. The rest of
    the program need not be differentiable in the value.

    Valid for scalar ``flip``, ``categorical`` (probabilities or logits),
    ``poisson``, ``geometric``, ``binomial`` and ``normal``; the module
    docstring gives each decomposition. Cost: the rest of the program is
    evaluated twice per choice (flip, poisson, geometric, binomial), once per
    value for categorical, and up to 4 times for normal (location and scale);
    nested MVD and enum choices multiply (more than 2**16 branches in all is
    refused). Variance: zero from a flip or categorical choice (the difference
    is exact); for poisson, geometric, binomial and normal it comes from the
    coupled draws, often far below REINFORCE's for unbounded integrands but not
    always (a bounded one can favour REINFORCE; see the Gradient estimators
    page). Inside a ``ppl.scan``/``ppl.vmap`` body or a branch with a run-time
    index it evaluates the rest of the body only, so the choice's value must
    stay inside the body.

    Args:
        gen_fn: the distribution to wrap for one call site.

    Returns:
        The wrapped distribution: call it with its parameters and give the call
        an address.

    Raises:
        PPLError: if ``gen_fn`` is not a distribution; at trace time, naming the
            address, for a distribution not listed above, a choice that is not a
            scalar, a value that leaves a loop body or run-time branch, or more
            than 2**16 nested branches.

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     b = ppl.mvd(ppl.flip)(jax.nn.sigmoid(theta)) @ "b"
        ...     return jnp.where(b, 3.0, -1.0)
        >>> f.grad_estimate(jax.random.key(0), (0.0,))  # dp/dθ (f(True) - f(False)) = 1
        (Array(1., dtype=float32, weak_type=True),)
        >>> @ppl.expectation
        ... def g(rate):
        ...     return (ppl.poisson(rate) @ "n").astype(jnp.float32) ** 2
        >>> (d_rate,) = ppl.adev(g, {"n": ppl.mvd}).grad_estimate(jax.random.key(0), (2.0,))
        >>> # unbiased for d/dλ E[N²] = 1 + 2λ = 5: one estimate is f(n + 1) - f(n) = 2n + 1
        >>> float(d_rate) % 2
        1.0
    """

    name = "mvd"
    needs_continuation = True

    def check(self, dist, d, addr):
        """Refuse (a ``ppl.PPLError`` naming ``addr``) a distribution with no
        weak derivative implemented here, or a choice that is not a scalar."""
        if not isinstance(d, SUPPORTED):
            self._refuse(
                addr,
                dist,
                "mvd is implemented for flip, categorical, poisson, geometric, binomial and "
                "normal only",
                "reinforce (or enum for a finite support)"
                if _is_discrete(d)
                else "reparam or reinforce",
            )
        if not _scalar(d):
            self._refuse(
                addr,
                dist,
                f"mvd is implemented for scalar choices, this one has shape "
                f"{d.batch_shape + d.event_shape}",
                "one scalar choice per address (a ppl.vmap of scalar choices), or "
                + ("reinforce or enum" if _is_discrete(d) else "reparam or reinforce"),
            )

    def branch_count(self, d):
        if isinstance(d, nd.Normal):
            return 4
        if isinstance(d, _CATEGORICAL):
            return int(jnp.shape(_normalised(d))[-1])
        return 2

    def with_continuation(self, site, state, k):
        d = site.dist_fn.dist(*site.args_p)
        if isinstance(d, nd.Normal):
            return _normal(site, state, k, d)
        if isinstance(d, _CATEGORICAL):
            return _categorical(site, state, k, d)
        if isinstance(d, nd.Poisson):
            return _poisson(site, state, k, d)
        if isinstance(d, _GEOMETRIC):
            return _geometric(site, state, k, d)
        if isinstance(d, _BINOMIAL):
            return _binomial(site, state, k, d)
        return _flip(site, state, k, d)


def _with_tangent(here: Result, extra) -> Result:
    return Result(here.p, _dual.add(here.t, extra), here.u)


def _flip(site, state, k, d):
    x = site.dist_fn._to_value(d.sample(site.key))
    _, dprob = site.jvp(lambda *args: site.dist_fn.dist(*args).probs)
    here = k((x, None), state)
    if dprob is None:
        return here
    other = k((~x, None), state).p
    diff = jnp.where(x, here.p - other, other - here.p)
    return _with_tangent(here, dprob * diff)


def _normalised(d):
    if isinstance(d, nd.CategoricalLogits):
        return jax.nn.softmax(d.logits)
    return jnp.asarray(d.probs) / jnp.sum(d.probs)


def _categorical(site, state, k, d):
    x = site.dist_fn.draw(site.key, d)
    _, dq = site.jvp(lambda *args: _normalised(site.dist_fn.dist(*args)))
    if dq is None:
        return k((x, None), state)
    values = site.dist_fn._to_value(d.enumerate_support(expand=False).reshape(-1))
    results = jax.vmap(lambda v: k((v, None), state))(values)
    here = jax.tree.map(lambda r: r[x], results)
    # sum(dq) = 0, so subtracting f(x) leaves the expectation alone and removes
    # the part of the sum that does not depend on which value is better.
    return _with_tangent(here, jnp.tensordot(dq, results.p - here.p, axes=(0, 0)))


def _poisson(site, state, k, d):
    x = site.dist_fn.draw(site.key, d)
    _, drate = site.jvp(lambda *args: site.dist_fn.dist(*args).rate)
    here = k((x, None), state)
    if drate is None:
        return here
    up = k((x + jnp.ones_like(x), None), state).p
    return _with_tangent(here, drate * (up - here.p))


def _geometric(site, state, k, d):
    x = site.dist_fn.draw(site.key, d)
    p, dp = site.jvp(lambda *args: site.dist_fn.dist(*args).probs)
    here = k((x, None), state)
    if dp is None:
        return here
    more = site.dist_fn.draw(jax.random.fold_in(site.key, 1), d)
    later = k((x + 1 + more, None), state).p
    return _with_tangent(here, dp * (here.p - later) / p)


def _binomial(site, state, k, d):
    n, p = d.total_count, d.probs
    _, dp = site.jvp(lambda *args: site.dist_fn.dist(*args).probs)
    k_rest, k_last = jax.random.split(site.key)
    rest = nd.Binomial(jnp.maximum(n - 1, 0), probs=p).sample(k_rest)
    last = jax.random.bernoulli(k_last, p)
    dtype = jax.eval_shape(d.sample, k_rest).dtype
    some = jnp.asarray(n) > 0
    x = jnp.where(some, rest + last, 0).astype(dtype)
    here = k((x, None), state)
    if dp is None:
        return here
    other = jnp.where(some, rest + (1 - last), 0).astype(dtype)
    there = k((other, None), state).p
    diff = jnp.where(last, here.p - there, there - here.p)
    return _with_tangent(here, dp * n * diff)


def _normal(site, state, k, d):
    x = d.sample(site.key)
    (loc, scale), tangents = site.jvp(lambda *args: _loc_scale(site.dist_fn.dist(*args)))
    here = k((x, None), state)
    if tangents is None:
        return here
    dloc, dscale = tangents
    k_ray, k_max = jax.random.split(jax.random.fold_in(site.key, 1))
    t = here.t
    if dloc is not None:
        # d/dloc N(x; loc, scale) = (Rayleigh above loc - Rayleigh below loc) / (scale sqrt(2 pi))
        r = jnp.sqrt(-2.0 * jnp.log1p(-jax.random.uniform(k_ray, jnp.shape(x), x.dtype)))
        up, down = k((loc + scale * r, None), state).p, k((loc - scale * r, None), state).p
        t = _dual.add(t, dloc * (up - down) / (scale * math.sqrt(2 * math.pi)))
    if dscale is not None:
        # d/dscale N = (double-sided Maxwell - N itself) / scale
        g = jax.random.normal(k_max, (4,), x.dtype)
        m = jnp.sqrt(jnp.sum(g[:3] ** 2)) * jnp.sign(g[3])
        t = _dual.add(t, dscale * (k((loc + scale * m, None), state).p - here.p) / scale)
    return Result(here.p, t, here.u)


def _loc_scale(d):
    return d.loc, d.scale


mvd = MVD()
