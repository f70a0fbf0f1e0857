"""``vmap`` and ``repeat``: one generative function applied along an axis.

The choices of all elements are stacked along a leading axis under the
combinator's address, and the score is the sum of the elements' scores.
Constraints and choice maps given to the interface carry that axis too, and
a trace's length is fixed: ``update`` cannot change it. Masked entries (from a
``ppl.switch`` inside, see ``ppl.choices``) carry one flag per element.

With ``subsample_of=N`` the elements are a uniform random subsample of ``N``
(a minibatch of the data), and every log density and weight of the call is
the elements' sum scaled by ``N / len``: an unbiased estimate of the sum over
all ``N``, which objectives linear in the log density (``vi.elbo``) may use
and every other algorithm refuses (``ppl.inference._subsampling``).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl._errors import AddressError, PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap
from ppl.combinators._stacked import check_leading_axis, per_element
from ppl.transforms.assess import assess_site
from ppl.transforms.generate import generate_site
from ppl.transforms.update import update_site


class VmapTrace(Trace):
    gen_fn: Any = eqx.field(static=True)
    args: tuple
    inner: Trace
    score: Any

    @property
    def retval(self):
        return self.inner.retval

    @property
    def choices(self) -> ChoiceMap:
        return self.inner.choices

    def project(self, selection):
        per_element = jax.vmap(lambda tr: tr.project(selection))(self.inner)
        return self.gen_fn._total(per_element, self.args)


class Vmap(GenerativeFunction):
    """``gen_fn`` mapped over axis 0 of the arguments marked in ``in_axes``.

    ``in_axes`` is one entry per argument (0 or None), as in ``jax.vmap``;
    with ``axis_size`` and no mapped argument it repeats ``gen_fn``; with
    ``subsample_of`` its densities are scaled to that many elements.
    """

    def __init__(
        self,
        gen_fn: GenerativeFunction,
        in_axes: int | None | tuple[int | None, ...] = 0,
        axis_size: int | None = None,
        subsample_of: int | None = None,
    ):
        if not isinstance(gen_fn, GenerativeFunction):
            raise PPLError(
                f"ppl.vmap takes a generative function (e.g. an @gen function), got {gen_fn!r}."
            )
        is_int = isinstance(subsample_of, int) and not isinstance(subsample_of, bool)
        if subsample_of is not None and (not is_int or subsample_of < 1):
            raise PPLError(
                f"ppl.vmap's subsample_of is the number of elements the mapped arguments are a "
                f"random subsample of, a positive int (the size of the full data); got "
                f"{subsample_of!r}."
            )
        self.gen_fn, self.in_axes, self.axis_size = gen_fn, in_axes, axis_size
        self.subsample_of = subsample_of
        self.inner = (gen_fn,)

    @property
    def name(self) -> str:
        return f"vmap({self.gen_fn.name})"

    def _axes(self, args) -> tuple:
        axes = self.in_axes if isinstance(self.in_axes, tuple) else (self.in_axes,) * len(args)
        if len(axes) != len(args):
            raise PPLError(
                f"{self.name} has in_axes for {len(axes)} arguments but was called with "
                f"{len(args)}."
            )
        return axes

    def _size(self, args) -> int:
        if self.axis_size is not None:
            return self.axis_size
        sizes = set()
        for i, (a, ax) in enumerate(zip(args, self._axes(args))):
            if ax is None:
                continue
            for leaf in jax.tree.leaves(a):
                if jnp.ndim(leaf) == 0:
                    raise PPLError(
                        f"{self.name} maps over axis 0 of argument {i}, but it is a scalar. Mark "
                        "arguments shared by every element with None in in_axes, e.g. "
                        "ppl.vmap(g, in_axes=(0, None))."
                    )
                sizes.add(jnp.shape(leaf)[0])
        if len(sizes) != 1:
            raise PPLError(
                f"{self.name} maps over axis 0 of its arguments, which must all have the same "
                f"length; found lengths {sorted(sizes) or 'none'}. Use ppl.repeat(g, n) to repeat "
                "a function without mapped arguments."
            )
        return sizes.pop()

    def scale(self, args) -> float:
        """The factor on the elements' summed densities: ``subsample_of / len``, else 1.

        Raises:
            PPLError: if the call has more elements than ``subsample_of``.
        """
        if self.subsample_of is None:
            return 1.0
        n = self._size(args)
        if n > self.subsample_of:
            raise PPLError(
                f"{self.name} was called with {n} elements, but subsample_of={self.subsample_of} "
                "says they are a subsample of that many. Pass the size of the full data as "
                "subsample_of (a minibatch has at most that many rows)."
            )
        return self.subsample_of / n

    def _total(self, per_element, args):
        total = jnp.sum(per_element)
        return total * self.scale(args) if self.subsample_of is not None else total

    def _keys(self, key, args):
        return jax.random.split(key, self._size(args))

    def _check_batched(self, choices: ChoiceMap, args) -> ChoiceMap:
        n = self._size(args)
        check_leading_axis(choices, n, self.name, "axis", "element")
        return per_element(choices, n)

    def _map(self, fn, batched, args):
        return jax.vmap(fn, in_axes=(*(0,) * len(batched), self._axes(args)))(*batched, args)

    def retval_abstract(self, args):
        # One element's return value, stacked: jax.vmap would meet the random
        # choices themselves, which have no batching rule.
        n = self._size(args)
        element = tuple(
            a if ax is None else jax.tree.map(lambda x: x[0], a)
            for a, ax in zip(args, self._axes(args))
        )
        retval = self.gen_fn.retval_abstract(element)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), retval)

    def _trace(self, args, inner):
        return VmapTrace(self, args, inner, self._total(inner.score, args))

    def _simulate(self, key, args):
        inner = self._map(self.gen_fn.simulate, (self._keys(key, args),), args)
        return self._trace(args, inner)

    def _assess(self, choices, args):
        choices = self._check_batched(choices, args)
        logp, retval = self._map(lambda c, a: assess_site(self.gen_fn, c, a), (choices,), args)
        return self._total(logp, args), retval

    def _generate(self, key, constraints, args):
        constraints = self._check_batched(constraints, args)
        inner, w = self._map(
            lambda k, c, a: generate_site(self.gen_fn, k, c, a),
            (self._keys(key, args), constraints),
            args,
        )
        return self._trace(args, inner), self._total(w, args)

    def _update(self, key, trace, constraints, args):
        n, old = self._size(args), self._size(trace.args)
        if n != old:
            raise AddressError(
                f"update of {self.name} at {{addr}}: the new arguments have length {n} along the "
                "mapped "
                f"axis, but the trace has {old} elements. A vmap's length is fixed in a trace (its "
                "choices are stacked along that axis, and shapes are static): for another length, "
                "simulate or generate a new trace with the new arguments."
            )
        for addr in constraints.addresses():
            shape = jnp.shape(constraints[addr])
            if shape[:1] != (n,):
                raise AddressError(
                    f"update of {self.name}: the constraint at {{addr}} has shape {shape}, but the "
                    f"trace has {n} elements, stacked along a leading axis. A vmap's length is "
                    "fixed "
                    f"in a trace: give one value per element (a leading axis of length {n}), or, "
                    "for "
                    "another length, simulate or generate a new trace with new arguments.",
                    addr,
                )
        constraints = per_element(constraints, n)
        inner, w, discard = self._map(
            lambda k, tr, c, a: update_site(self.gen_fn, k, tr, c, a),
            (self._keys(key, args), trace.inner, constraints),
            args,
        )
        return self._trace(args, inner), self._total(w, args), discard

    def _regenerate(self, key, trace, selection, args):
        def regen(k, tr, a):
            return self.gen_fn.regenerate(k, tr, selection, a)

        inner, w = self._map(regen, (self._keys(key, args), trace.inner), args)
        return self._trace(args, inner), self._total(w, args)


def vmap(
    gen_fn: GenerativeFunction,
    in_axes: int | None | tuple[int | None, ...] = 0,
    *,
    subsample_of: int | None = None,
) -> Vmap:
    """Map ``gen_fn`` over axis 0 of its arguments; choices stack along axis 0.

    Args:
        gen_fn: the generative function run once per element.
        in_axes: ``0`` (every argument is mapped over its axis 0), or one entry
            per argument, ``0`` (mapped) or ``None`` (shared by all elements), as
            in ``jax.vmap``.
        subsample_of: ``None``, or the number ``N`` of elements (rows of the
            full data) that the mapped arguments are a uniform random subsample
            of, as in ``vi.fit(..., data=, subsample=True)``. The call's log
            densities and weights are then the elements' sum times ``N / len``,
            an unbiased estimate of the full data's. Only objectives linear in
            the log density (``vi.elbo``) accept such a model; importance
            sampling, SMC, MCMC, enumeration and the nonlinear objectives
            (``vi.iwelbo``, ...) raise an error naming the address.

    Returns:
        A generative function of the same arguments, whose choices and return
        value have a leading axis with one entry per element.

    Raises:
        PPLError: if ``gen_fn`` is not a generative function or ``subsample_of``
            not a positive int; when called, if ``in_axes`` does not match the
            arguments, a mapped argument is a scalar, the mapped arguments
            disagree on the length of axis 0 (or it exceeds ``subsample_of``),
            or ``gen_fn`` uses a traced value it closes over.
        AddressError: if a constraint has no leading axis of the right length,
            or ``update`` would change the number of elements.

    Examples:
        >>> @ppl.gen
        ... def point(x, mu):
        ...     return ppl.normal(mu + x, 1.0) @ "y"
        >>> xs = jnp.arange(3.0)
        >>> points = ppl.vmap(point, in_axes=(0, None))
        >>> points.simulate(jax.random.key(0), (xs, 0.5)).choices["y"].shape
        (3,)
        >>> log_p, _ = points.assess({"y": xs}, (xs, 0.5))
        >>> scaled = ppl.vmap(point, in_axes=(0, None), subsample_of=30)
        >>> bool(jnp.isclose(scaled.assess({"y": xs}, (xs, 0.5))[0], 10 * log_p))
        True
    """
    return Vmap(gen_fn, in_axes, subsample_of=subsample_of)


def repeat(gen_fn: GenerativeFunction, n: int) -> Vmap:
    """Run ``gen_fn`` ``n`` times independently with the same arguments.

    Args:
        gen_fn: the generative function to repeat.
        n: the number of repeats, a positive Python int.

    Returns:
        A generative function of ``gen_fn``'s arguments whose choices and return
        value have a leading axis of length ``n``.

    Raises:
        PPLError: if ``n`` is not a positive int or ``gen_fn`` not a generative
            function.
        AddressError: as for ``vmap`` (constraints without the leading axis).

    Examples:
        >>> coins = ppl.repeat(ppl.flip, 10)
        >>> tr = coins.simulate(jax.random.key(0), (0.3,))
        >>> tr.retval.shape, tr.retval.dtype
        ((10,), dtype('bool'))
    """
    if not isinstance(n, int) or n < 1:
        raise PPLError(f"ppl.repeat needs a positive int number of repeats, got {n!r}.")
    return Vmap(gen_fn, None, axis_size=n)
