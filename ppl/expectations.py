"""Expectations: programs whose expected value ppl differentiates (ADEV).

>>> @ppl.expectation
... def f(theta):
...     x = ppl.normal(theta, 1.0) @ "x"                    # reparam by default
...     b = ppl.enum(ppl.flip)(jax.nn.sigmoid(theta)) @ "b"  # strategy at the call site
...     return x ** 2 + jnp.where(b, 1.0, -1.0) * x
>>> value = f.estimate(jax.random.key(0), (0.5,))        # unbiased estimate of E[...]
>>> (grad,) = f.grad_estimate(jax.random.key(0), (0.5,))  # unbiased estimate of its gradient
>>> g = ppl.adev(f, strategies={"x": ppl.mvd})   # switch estimators without editing f

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
        An ``Expectation`` with ``estimate(key, args)`` (an unbiased estimate
        of the expected value) and ``grad_estimate(key, args)`` (an unbiased
        estimate of its gradient with respect to ``args``); with only
        ``strategies`` given, a decorator that makes one.

    Raises:
        PPLError: if ``strategies`` is not a mapping of addresses to strategies.

    Examples:
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
    """``f`` with a strategy policy: switch gradient estimators without editing ``f``.

    A policy given here overrides earlier policies of ``f`` and the call-site
    wrappers (``ppl.reinforce(ppl.flip)(p) @ "b"``), which override the
    defaults (``reparam`` where valid, otherwise ``reinforce``). Nested choices
    are addressed by path: ``{("model", "z"): ppl.reinforce}``; a strategy at
    the address of a call (``{"call": ppl.reinforce}``) estimates every choice
    inside it by the score function.

    Args:
        f: an ``Expectation``, or a plain function of random choices to
            make one (as ``ppl.expectation`` would).
        strategies: ``None`` or a dict, address -> strategy (``ppl.reparam``,
            ``ppl.reinforce``, ``ppl.enum``, ...).

    Returns:
        A new ``Expectation``; ``f`` is unchanged.

    Raises:
        PPLError: if ``strategies`` is ``"auto"`` (choosing needs a pilot at a
            key and arguments: use ``ppl.choose_strategies(f, key,
            args).policy``), is not a dict, or maps an address to something that
            is not a strategy. When the result is estimated: for an address
            where ``f`` makes no random choice, and for a strategy that cannot
            serve its choice (the message names the address and the fix).

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     b = ppl.flip(jax.nn.sigmoid(theta)) @ "b"  # reinforce by default
        ...     return jnp.where(b, 3.0, -1.0)
        >>> exact = ppl.adev(f, strategies={"b": ppl.enum})
        >>> exact.grad_estimate(jax.random.key(0), (0.0,))  # d/dθ (4 sigmoid(θ) - 1) = 1
        (Array(1., dtype=float32, weak_type=True),)
    """
    _adev.check_policy(strategies)  # before making an expectation of f
    if not isinstance(f, Expectation):
        f = Expectation(f)
    return f.with_strategies(strategies)


def E(f, n: int, loo: bool = False) -> Expectation:
    """The average of ``n`` independent estimates of ``f`` (vectorised).

    The average is unbiased with ``1/n`` of ``f``'s variance, at ``n`` times the
    compute and memory (the samples run at once under ``jax.vmap``). Call it at
    the top level (``ppl.E(f, n).grad_estimate(key, args)``) or inside another
    expectation (``ppl.E(f, n)(*args) @ "avg"``).

    Args:
        f: an ``Expectation``, or a plain function to make one.
        n: the number of samples, a positive int (at least 2 with ``loo``).
        loo: give every reinforce choice of each sample a leave-one-out
            baseline, the mean value of the other ``n - 1`` samples (as in
            VIMCO); still unbiased, since a sample's baseline does not depend on
            its own choices.

    Returns:
        An ``Expectation`` of the same arguments.

    Raises:
        PPLError: if ``n`` is not a positive int, or ``n < 2`` with ``loo=True``.

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     return ppl.normal(theta, 1.0) @ "x"
        >>> avg = ppl.E(f, 8)
        >>> avg.grad_estimate(jax.random.key(0), (0.5,))  # reparam: d/dθ E[x] = 1 exactly
        (Array(1., dtype=float32, weak_type=True),)
        >>> avg.estimate(jax.random.key(0), (0.5,)).shape
        ()
    """
    if not isinstance(f, Expectation):
        f = Expectation(f)
    if not isinstance(n, int) or n < 1 or (loo and n < 2):
        raise PPLError(f"E(f, n) needs an integer n >= 1 (n >= 2 with loo=True); got n={n!r}.")
    return _Averaged(f, n, loo)


def add_cost(x) -> None:
    """Add ``x`` (a differentiable real) to the value of the enclosing expectation.

    Also allowed inside an ``@gen`` function called from an expectation; when
    such a function is simulated on its own the cost is ignored. A cost is a
    term of the value: with Rao-Blackwellization (the default) it meets the
    scores of only the REINFORCE choices it depends on, and inside
    ``ppl.scan``/``ppl.vmap`` bodies it is what ``enum`` and ``mvd`` choices
    there may feed.

    Args:
        x: a real scalar (sum an array first).

    Returns:
        ``None``; the cost is added to the expectation's value.

    Raises:
        PPLError: if ``x`` is not a scalar (when the expectation runs), or when
            called outside any ppl program (the message calls it a random
            choice at ``'add_cost'``).

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     x = ppl.normal(theta, 1.0) @ "x"
        ...     ppl.add_cost(-0.5 * theta**2)  # a penalty on theta
        ...     return x
        >>> f.grad_estimate(jax.random.key(0), (0.5,))  # 1 - θ
        (Array(0.5, dtype=float32, weak_type=True),)
    """
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
        PPLError: if ``q`` is a distribution or a combinator (wrap it in an
            ``@ppl.gen`` function; ``ppl.marginal``, ``ppl.normalize`` and
            ``ppl.sum_out`` have rules of their own), and when the call is run
            outside an expectation (by ``simulate`` and the other interface
            methods), where it has no meaning.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "x"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> @ppl.expectation
        ... def elbo(mu):
        ...     z, log_q = ppl.sim(guide)(mu) @ "q"
        ...     return ppl.density(model)(z | ppl.ChoiceMap.d({"x": 1.0})) - log_q
        >>> elbo.grad_estimate(jax.random.key(0), (0.0,))[0].shape  # unbiased for 1 - 2 mu
        ()
    """
    return sim_of(q)


def density(p: GenerativeFunction) -> Callable:
    """``density(p)(choices, *args)``: ``log p(choices)``, differentiable in the
    choices and the arguments.

    For most generative functions this is ``p.assess``, exact and
    deterministic, usable anywhere; it counts ``ppl.factor`` terms. For
    ``ppl.marginal`` it is an estimate (``n`` fresh auxiliary samples) whose
    expectation is at most the true log density, so it must run inside an
    expectation (its samples are random choices there).

    Args:
        p: the generative function (a model).

    Returns:
        A function ``(choices, *args) -> log density``, ``choices`` a
        ``ppl.ChoiceMap`` or a dict with a value for every choice of ``p``.

    Raises:
        AddressError: from the returned function, as ``p.assess``: a choice
            with no value, or a value where ``p`` makes no choice.
        PPLError: from the returned function for ``ppl.normalize`` (its density
            has no unbiased estimate).

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "x"
        >>> log_p = ppl.density(model)({"z": 0.0, "x": 1.0})  # log N(0; 0, 1) + log N(1; 0, 1)
        >>> round(float(log_p), 3)
        -2.338
    """
    return density_of(p)
