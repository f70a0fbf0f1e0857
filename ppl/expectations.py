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

from typing import Callable, overload

from ppl._errors import PPLError
from ppl._gfi import GenerativeFunction
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.expectation import (
    Expectation,
    _AdevOnly,
    _Averaged,
    bind_cost,
    density_of,
    sim_of,
)


@overload
def expectation(fn: Callable, *, strategies=None) -> Expectation: ...
@overload
def expectation(fn: None = None, *, strategies=None) -> Callable[[Callable], Expectation]: ...
def expectation(
    fn: Callable | None = None, *, strategies=None
) -> Expectation | Callable[[Callable], Expectation]:
    """Mark ``fn(*args) -> real`` as an expectation program; its random choices
    (``dist(args) @ "addr"``) are sampled with gradient-estimation strategies.

    Args:
        fn: the program, returning a real number. Used bare (``@ppl.expectation``)
            or with a policy (``@ppl.expectation(strategies=...)``).
        strategies: a policy, address -> strategy (``{"z": ppl.reinforce}``), for
            choices that do not fix their strategy at the call site. Choices with
            no strategy get the default for their distribution (``reparam`` for
            reparameterizable ones, ``reinforce`` otherwise).

    Returns:
        An :class:`Expectation` with ``estimate(key, args)`` (an unbiased estimate
        of the expected value) and ``grad_estimate(key, args)`` (an unbiased
        estimate of its gradient with respect to ``args``); with only
        ``strategies`` given, a decorator that makes one.

    Raises:
        PPLError: if ``strategies`` is not a mapping of addresses to strategies.

    Example:
        >>> @ppl.expectation
        ... def loss(mu):
        ...     z = ppl.normal(mu, 1.0) @ "z"
        ...     return z**2
        >>> g = loss.grad_estimate(jax.random.key(0), (0.5,))  # unbiased for 2 * mu
    """
    policy = _adev.check_policy(strategies)
    if fn is None:
        return lambda f: Expectation(f, policy)
    return Expectation(fn, policy)


def adev(f, strategies=None) -> Expectation:
    """``f`` (an expectation, or a plain function to make one) with a strategy
    policy ``{address: strategy}``; later policies override earlier ones and the
    call-site wrappers, which override the defaults. Nested choices are
    addressed by path: ``{("model", "z"): ppl.reinforce}``.

    ``strategies="auto"`` is an error: choosing needs a pilot run at a key and
    arguments; ``ppl.choose_strategies(f, key, args).policy`` gives the policy."""
    _adev.check_policy(strategies)  # before making an expectation of f
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


def sim(q: GenerativeFunction) -> _AdevOnly:
    """Sampling ``q`` inside an expectation: ``choices, logq = sim(q)(*args) @ "q"``.

    For a generative function with an estimated density (``ppl.marginal``),
    ``logq`` is an estimate whose expectation is at least the true log density,
    so objectives that subtract it stay lower bounds.

    Args:
        q: the generative function to sample (a variational family).

    Returns:
        A callee for one call inside an ``@ppl.expectation``: called with ``q``'s
        arguments and given an address, it makes ``(choices, logq)``. Each choice
        of ``q`` is sampled with its own strategy (from the call site or the
        policy, under the call's address), so the gradient flows through ``q``.

    Raises:
        PPLError: when the call is run outside an expectation (by ``simulate``
            and the other interface methods), where it has no meaning.

    Example:
        >>> @ppl.expectation
        ... def elbo(mu):
        ...     choices, logq = ppl.sim(guide)(mu) @ "q"
        ...     logp, _ = model.assess(choices, ())
        ...     return logp - logq
    """
    return sim_of(q)


def density(p: GenerativeFunction) -> Callable:
    """``density(p)(choices, *args)``: ``log p(choices)``, deterministic and
    differentiable in the choices and the arguments.

    For a generative function with an estimated density (``ppl.marginal``), an
    estimate whose expectation is at most the true log density (use it inside
    an expectation)."""
    return density_of(p)
