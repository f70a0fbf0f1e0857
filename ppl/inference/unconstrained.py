"""Unconstrained coordinates for the gradient kernels, built in program order.

MALA, HMC and NUTS move the selected continuous choices in unconstrained
coordinates: each choice ``x`` is the image of a real ``z`` under numpyro's
``biject_to(support)``. A support may depend on other choices (``a ~
uniform(0, 1)``, then ``b ~ uniform(0, 1 - a)``), so the bijection of ``b``
must be built from the value of ``a`` at the point being evaluated, not from
the trace the kernel started from. ``constrain`` therefore runs the model
once, in program order: at each selected choice it builds the distribution
from the values computed so far, maps ``z`` to ``x`` with the bijection of that
support, and adds ``log |det J|`` (the Jacobian of the whole map is triangular
in program order, so these terms are its log determinant).

The run descends into ``@gen`` functions, ``ppl.vmap``/``ppl.repeat`` (per
element) and ``ppl.scan`` (step by step); a distribution wrapped in a
call-site strategy (``ppl.reparam(ppl.uniform)(lo, hi) @ "x"``) is the
distribution. A selected choice inside any other
generative function is mapped with the support recorded in its trace, which is
only right if that support cannot change: it must have no parameters taken
from arguments (``real``, ``positive``, ``unit_interval``, ``simplex``, ...),
otherwise ``constrain`` raises an error naming the address.

The inverse, ``unconstrain``, reads the supports off the current trace:
its distributions were built from the current values, so
``constrain(trace, s, unconstrain(trace, s))`` gives back the trace's values.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.distributions.transforms import biject_to

from ppl._errors import PPLError, at_address, fmt_addr
from ppl.choices import ChoiceMap, select_all
from ppl.combinators import Scan, Vmap
from ppl.distributions import Distribution
from ppl.gen import StaticGenerativeFunction
from ppl.inference._sites import Site, empty_selection_error, sites
from ppl.inference._util import selection_of
from ppl.transforms._sites import zero_score
from ppl.transforms.adev.strategies import WithStrategy


class Constrained(NamedTuple):
    """What ``constrain`` returns.

    ``choices``: the constrained values of the selected choices (a
    ``ppl.ChoiceMap`` with the addressing of the selection);
    ``log_density``: the model's log density at those values (the other choices
    keep the trace's values); ``log_det``: ``log |det dx/dz|``. The density of
    ``z`` is ``exp(log_density + log_det)``.
    """

    choices: ChoiceMap
    log_density: jax.Array
    log_det: jax.Array


def selected_sites(trace, selection, algorithm: str) -> ChoiceMap:
    """The ``ppl.inference._sites.Site`` markers of the selected choices,
    checked to be continuous.

    Args:
        trace: a trace of the model.
        selection: the choices the kernel moves.
        algorithm: the kernel's name, for messages.

    Returns:
        A choice map of ``Site`` markers, restricted to ``selection``.

    Raises:
        PPLError: if the selection matches no choice, or a selected choice is
            discrete (its support has no bijection to the reals).

    Examples:
        >>> selected_sites(trace, ppl.select("a", "b"), "nuts").addresses()
        [('a',), ('b',)]
    """
    site_map = sites(trace, selection)
    if site_map.is_empty():
        raise empty_selection_error(trace, selection, algorithm)
    for addr in site_map.addresses():
        site = site_map[addr]
        if not isinstance(site, Site):
            raise PPLError(
                f"{algorithm}: the value at {fmt_addr(addr)} is not made by a distribution this "
                f"kernel can see (its trace records {type(site).__name__}); gradient kernels need "
                f"each selected choice's distribution. Leave it out of the selection and move it "
                "with ppl.inference.mh."
            )
        _check_continuous(site.dtrace.gen_fn.dist(*site.dtrace.args), site.name, addr, algorithm)
    return site_map


def _check_continuous(d, name, addr, algorithm):
    if getattr(d.support, "is_discrete", False):
        raise PPLError(
            f"{algorithm} needs continuous choices, but {fmt_addr(addr)} is drawn from {name} (a "
            f"discrete distribution). Leave it out of the selection and move it with "
            "ppl.inference.mh, e.g. cycle(hmc(select(...continuous...)), mh(select(...)))."
        )


def _per_choice(dtrace, fn, *values):
    """``fn(distribution, *values)`` for each choice of a distribution trace that
    combinators may have stacked (one leading axis per level: the score's rank)."""

    def one(args, *vals):
        return fn(dtrace.gen_fn.dist(*args), *vals)

    for _ in range(jnp.ndim(dtrace.score)):
        one = jax.vmap(one)
    return one(dtrace.args, *values)


def unconstrain(trace, selection, algorithm: str = "gradient kernel") -> ChoiceMap:
    """The unconstrained coordinates ``z`` of the selected choices of ``trace``.

    Each value ``x`` becomes ``biject_to(support).inv(x)``, with the support of
    the distribution recorded in the trace (built from the current values).

    Args:
        trace: a trace of the model.
        selection: the continuous choices to map.
        algorithm: the kernel's name, for messages.

    Returns:
        A choice map with the addressing of the selected choices; each value has
        the unconstrained shape (e.g. ``k - 1`` entries for a ``k``-simplex).

    Raises:
        PPLError: as ``selected_sites``.

    Examples:
        >>> z = unconstrain(trace, ppl.select("p"))   # p ~ beta(...): z = logit(p)
    """
    site_map = selected_sites(trace, selection, algorithm)

    def inv(d, x):
        return biject_to(d.support).inv(x)

    return jax.tree.map(lambda s: _per_choice(s.dtrace, inv, s.value), site_map, is_leaf=_is_site)


def _is_site(x):
    return isinstance(x, Site)


def constrain(trace, selection, z: ChoiceMap, algorithm: str = "gradient kernel") -> Constrained:
    """Map unconstrained coordinates to the selected choices, in program order.

    Runs ``trace.gen_fn`` on ``trace.args`` once. At a selected choice the
    distribution is built from the values computed before it (so a support
    that depends on other choices follows their new values); the choices not
    selected keep the values of ``trace`` and are rescored.

    Args:
        trace: the current trace (its unselected values and its structure are used).
        selection: the choices that ``z`` holds; must match ``z``'s addresses.
        z: unconstrained coordinates, as from ``unconstrain``.
        algorithm: the kernel's name, for messages.

    Returns:
        ``Constrained``: the values, the log density and ``log |det J|``.

    Raises:
        PPLError: if a selected choice is discrete, or sits inside a generative
            function other than a distribution, ``@gen`` function, ``ppl.vmap``,
            ``ppl.repeat`` or ``ppl.scan`` and its support has parameters
            taken from arguments (they might depend on other choices; the error
            names the address and the way out).

    Examples:
        >>> out = constrain(trace, ppl.select("a", "b"), z)
        >>> potential = -(out.log_density + out.log_det)
    """
    del selection  # z's addresses are the selection
    score, log_det, x, _ = _run(trace.gen_fn, trace, trace.args, z, (), algorithm)
    return Constrained(x, score, log_det)


def _run(gen_fn, old, args, z: ChoiceMap, path: tuple, algorithm: str):
    """``(log density, log |det J|, constrained choices, return value)`` of one call."""
    if z.is_empty():
        score, retval = gen_fn.assess(old.choices, args)
        return score, zero_score(), ChoiceMap.empty(), retval
    if isinstance(gen_fn, Distribution):
        return _choice(gen_fn, args, z, path, algorithm)
    if isinstance(
        gen_fn, WithStrategy
    ):  # reparam(uniform)(lo, hi) @ "x": the distribution, for ADEV's sake
        return _choice(gen_fn.dist_fn, gen_fn.params_and_extra(args)[0], z, path, algorithm)
    if isinstance(gen_fn, StaticGenerativeFunction):
        return _static(gen_fn, old, args, z, path, algorithm)
    if isinstance(gen_fn, Vmap):
        return _vmap(gen_fn, old, args, z, path, algorithm)
    if isinstance(gen_fn, Scan):
        return _scan(gen_fn, old, args, z, path, algorithm)
    return _recorded(gen_fn, old, args, z, path, algorithm)


def _choice(gen_fn, args, z, path, algorithm):
    d = gen_fn.dist(*args)
    _check_continuous(d, gen_fn.name, path, algorithm)
    bijection = biject_to(d.support)
    u = z.get_value()
    x = bijection(u)
    log_det = jnp.sum(bijection.log_abs_det_jacobian(u, x))
    # In the support by construction, and of the distribution's shape: no checks needed.
    return gen_fn.log_density(x, args), log_det, ChoiceMap.value(x), x


def _static(gen_fn, old, args, z, path, algorithm):
    scores, log_dets, xs = [], [], {}

    def on_site(site, site_args):
        sub = z.get_submap(site.addr)
        with at_address(site.addr):
            score, log_det, x, retval = _run(
                site.gen_fn, old.subtraces[site.addr], site_args, sub, (*path, site.addr), algorithm
            )
        scores.append(score)
        log_dets.append(log_det)
        if not x.is_empty():
            xs[site.addr] = x
        return retval

    retval = gen_fn.program(args).run(args, on_site)
    return _total(scores), _total(log_dets), ChoiceMap(xs), retval


def _total(terms):
    out = zero_score()
    for t in terms:
        out = out + t
    return out


def _vmap(gen_fn, old, args, z, path, algorithm):
    axes = gen_fn.in_axes if isinstance(gen_fn.in_axes, tuple) else (gen_fn.in_axes,) * len(args)

    def element(tr, zz, a):
        return _run(gen_fn.gen_fn, tr, a, zz, path, algorithm)

    score, log_det, x, retval = jax.vmap(element, in_axes=(0, 0, axes))(old.inner, z, args)
    return jnp.sum(score), jnp.sum(log_det), x, retval


def _scan(gen_fn, old, args, z, path, algorithm):
    init, xs = args

    def step(carry, inputs):
        tr, zz, x_t = inputs
        score, log_det, x, (carry, y) = _run(gen_fn.step, tr, (carry, x_t), zz, path, algorithm)
        return carry, (score, log_det, x, y)

    carry, (score, log_det, x, ys) = jax.lax.scan(step, init, (old.inner, z, xs))
    return jnp.sum(score), jnp.sum(log_det), x, (carry, ys)


def _log_det(d, u, x):
    return jnp.sum(biject_to(d.support).log_abs_det_jacobian(u, x))


def _parameter_free(support) -> bool:
    """Whether a support is fixed whatever the distribution's arguments: its only
    parameters are numbers written into numpyro (``positive``'s 0, ``unit_interval``'s
    0 and 1), not arrays that came from arguments."""
    return all(isinstance(leaf, (int, float)) for leaf in jax.tree.leaves(support))


def _recorded(gen_fn, old, args, z, path, algorithm):
    """Any other generative function: supports as recorded in its trace, which
    is right only when they are fixed numbers."""
    site_map = selected_sites(old, select_all() if z.has_value() else selection_of(z), algorithm)
    xs, log_dets = {}, []
    for addr in z.addresses():
        site = site_map[addr]
        support = site.dtrace.gen_fn.dist(*site.dtrace.args).support
        if not _parameter_free(support):
            full = (*path, *addr)
            raise PPLError(
                f"{algorithm}: the support of {fmt_addr(full)} ({support}) has parameters, taken "
                f"from the arguments of its distribution inside {gen_fn.name}, so they may depend "
                f"on other choices, and {algorithm} can build unconstrained coordinates in program "
                "order only through distributions, @gen functions, ppl.vmap, ppl.repeat and "
                "ppl.scan. Move this choice with ppl.inference.mh instead, e.g. "
                f"cycle({algorithm}(select(...the others...)), mh(select({fmt_addr(full)}))), or "
                f"write the part of the model that makes it with those constructs."
            )
        u = z[addr]
        x = _per_choice(site.dtrace, lambda d, v: biject_to(d.support)(v), u)
        log_det = _per_choice(site.dtrace, _log_det, u, x)
        xs[addr] = x
        log_dets.append(jnp.sum(log_det))
    x = ChoiceMap.d(xs)
    score, retval = gen_fn.assess(old.choices | x, args)
    return score, _total(log_dets), x, retval


__all__ = ["Constrained", "constrain", "selected_sites", "unconstrain"]
