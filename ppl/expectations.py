"""Expectations: programs whose expected value ppl differentiates (ADEV).

>>> @ppl.expectation
... def f(theta):
...     x = ppl.normal(theta, 1.0) @ "x"                    # reparam by default
...     b = ppl.enum(ppl.flip)(jax.nn.sigmoid(theta)) @ "b"  # strategy at the call site
...     return x ** 2 + jnp.where(b, 1.0, -1.0) * x
>>> f.estimate(key, (0.5,))            # unbiased estimate of E[...]
>>> f.grad_estimate(key, (0.5,))       # unbiased estimate of its gradient
>>> ppl.adev(f, strategies={"x": ppl.mvd})   # switch estimators without editing f

``estimate`` is a ``jax.custom_jvp`` function whose derivative rule is the
ADEV forward pass, so ``jax.grad``, ``jit`` and ``vmap`` compose with it.
"""

from __future__ import annotations

from typing import Callable

from ppl._errors import PPLError
from ppl._gfi import GenerativeFunction
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.expectation import (
    Expectation,
    Sim,
    _Averaged,
    bind_cost,
    density_of,
    sim_of,
)


def expectation(fn: Callable = None, *, strategies=None) -> Expectation:
    """Mark ``fn(*args) -> real`` as an expectation program; its random choices
    (``dist(args) @ "addr"``) are sampled with gradient-estimation strategies."""
    if fn is None:
        return lambda f: expectation(f, strategies=strategies)
    return Expectation(fn, _adev.check_policy(strategies))


def adev(f, strategies=None) -> Expectation:
    """``f`` (an expectation, or a plain function to make one) with a strategy
    policy ``{address: strategy}``; later policies override earlier ones and the
    call-site wrappers, which override the defaults. Nested choices are
    addressed by path: ``{("model", "z"): ppl.reinforce}``."""
    if not isinstance(f, Expectation):
        f = Expectation(f)
    return f.with_strategies(strategies)


def E(f, n: int, loo: bool = False) -> Expectation:
    """The average of ``n`` independent estimates of ``f`` (vectorised).

    ``loo=True`` gives every reinforce choice of each sample a leave-one-out
    baseline, the mean value of the other ``n - 1`` samples (as in VIMCO).
    """
    if not isinstance(f, Expectation):
        f = Expectation(f)
    if not isinstance(n, int) or n < 1 or (loo and n < 2):
        raise PPLError(f"E(f, n) needs an integer n >= 1 (n >= 2 with loo=True); got n={n!r}.")
    return _Averaged(f, n, loo)


def add_cost(x) -> None:
    """Add ``x`` (a differentiable real) to the value of the enclosing expectation.

    Also allowed inside an ``@gen`` function called from an expectation; when
    such a function is simulated on its own the cost is ignored."""
    bind_cost(x)


def sim(q: GenerativeFunction) -> Sim:
    """Sampling ``q`` inside an expectation: ``choices, logq = sim(q)(*args) @ "q"``.

    For a generative function with an estimated density (``ppl.marginal``),
    ``logq`` is an estimate whose expectation is at least the true log density,
    so objectives that subtract it stay lower bounds."""
    return sim_of(q)


def density(p: GenerativeFunction) -> Callable:
    """``density(p)(choices, *args)``: ``log p(choices)``, deterministic and
    differentiable in the choices and the arguments.

    For a generative function with an estimated density (``ppl.marginal``), an
    estimate whose expectation is at most the true log density (use it inside
    an expectation)."""
    return density_of(p)
