"""``scan``: a generative function iterated over time, like ``jax.lax.scan``.

``step(carry, x) -> (carry, y)`` is a generative function; ``scan(step,
length=T)`` is called with ``(init, xs)`` and returns ``(carry, ys)``. The
choices of all steps are stacked along a leading time axis, and the loop
compiles to one ``lax.scan`` under every interface method.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl._errors import PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap
from ppl.combinators._stacked import check_leading_axis, per_element
from ppl.transforms.assess import assess_site
from ppl.transforms.generate import generate_site
from ppl.transforms.update import update_site


class ScanTrace(Trace):
    gen_fn: Any = eqx.field(static=True)
    args: tuple
    inner: Trace  # the step's trace, stacked along time
    carry: Any
    score: Any

    @property
    def retval(self):
        return self.carry, self.inner.retval[1]

    @property
    def choices(self) -> ChoiceMap:
        return self.inner.choices

    def project(self, selection):
        return jnp.sum(jax.vmap(lambda tr: tr.project(selection))(self.inner))


class Scan(GenerativeFunction):
    def __init__(self, step: GenerativeFunction, length: int | None = None):
        if not isinstance(step, GenerativeFunction):
            raise PPLError(
                f"ppl.scan takes a generative function step(carry, x) -> (carry, y), got {step!r}."
            )
        self.step, self.length = step, length
        self.inner = (step,)

    @property
    def name(self) -> str:
        return f"scan({self.step.name})"

    def _split_args(self, args):
        if len(args) != 2:
            raise PPLError(f"{self.name} is called with (init, xs); got {len(args)} arguments.")
        return args

    def _length(self, xs) -> int:
        lengths = {jnp.shape(leaf)[0] for leaf in jax.tree.leaves(xs)}
        if self.length is not None:
            lengths.add(self.length)
        if len(lengths) != 1:
            raise PPLError(
                f"{self.name}: the scanned inputs xs and length disagree on the number of steps "
                f"({sorted(lengths) or 'no length given'}). Pass length=T, or xs with leading axis "
                "T."
            )
        return lengths.pop()

    def _check_stacked(self, choices: ChoiceMap, T: int) -> ChoiceMap:
        check_leading_axis(choices, T, self.name, "time axis", "step")
        return per_element(choices, T)

    def _loop(self, body, args, per_step):
        """Scan ``body(carry, per_step_t, x_t) -> (carry, out_t)``."""
        init, xs = self._split_args(args)

        def f(carry, inputs):
            step_in, x = inputs
            return body(carry, step_in, x)

        return jax.lax.scan(f, init, (per_step, xs), length=self._length(xs))

    def _carry_of(self, tr):
        retval = tr.retval
        if not (isinstance(retval, tuple) and len(retval) == 2):
            raise PPLError(
                f"{self.name}: the step must return a pair (carry, y); it returned {retval!r:.120}."
            )
        return retval[0]

    def retval_abstract(self, args):
        init, xs = self._split_args(args)
        return jax.lax.scan(
            lambda c, x: self.step.retval_abstract((c, x)), init, xs, length=self._length(xs)
        )

    def _trace(self, args, inner, carry):
        return ScanTrace(self, args, inner, carry, jnp.sum(inner.score))

    def _keys(self, key, args):
        return jax.random.split(key, self._length(self._split_args(args)[1]))

    def _simulate(self, key, args):
        def body(carry, k, x):
            tr = self.step.simulate(k, (carry, x))
            return self._carry_of(tr), tr

        carry, inner = self._loop(body, args, self._keys(key, args))
        return self._trace(args, inner, carry)

    def _assess(self, choices, args):
        choices = self._check_stacked(choices, self._length(self._split_args(args)[1]))

        def body(carry, c, x):
            logp, (carry, y) = assess_site(self.step, c, (carry, x))
            return carry, (logp, y)

        carry, (logp, ys) = self._loop(body, args, choices)
        return jnp.sum(logp), (carry, ys)

    def _generate(self, key, constraints, args):
        constraints = self._check_stacked(constraints, self._length(self._split_args(args)[1]))

        def body(carry, kc, x):
            tr, w = generate_site(self.step, kc[0], kc[1], (carry, x))
            return self._carry_of(tr), (tr, w)

        carry, (inner, w) = self._loop(body, args, (self._keys(key, args), constraints))
        return self._trace(args, inner, carry), jnp.sum(w)

    def _update(self, key, trace, constraints, args):
        constraints = self._check_stacked(constraints, self._length(self._split_args(args)[1]))
        if self._length(args[1]) != self._length(trace.args[1]):
            raise PPLError(
                f"{self.name}: update cannot change the number of steps "
                f"({self._length(trace.args[1])} -> {self._length(args[1])}); the shapes are "
                "static. "
                "To grow a sequence, build the model over the full horizon and constrain step by "
                "step."
            )

        def body(carry, ktc, x):
            k, old, c = ktc
            tr, w, d = update_site(self.step, k, old, c, (carry, x))
            return self._carry_of(tr), (tr, w, d)

        carry, (inner, w, discard) = self._loop(
            body, args, (self._keys(key, args), trace.inner, constraints)
        )
        return self._trace(args, inner, carry), jnp.sum(w), discard

    def _regenerate(self, key, trace, selection, args):
        def body(carry, kt, x):
            tr, w = self.step.regenerate(kt[0], kt[1], selection, (carry, x))
            return self._carry_of(tr), (tr, w)

        carry, (inner, w) = self._loop(body, args, (self._keys(key, args), trace.inner))
        return self._trace(args, inner, carry), jnp.sum(w)


def scan(step: GenerativeFunction, length: int | None = None) -> Scan:
    """Iterate a generative function over time, like ``jax.lax.scan``.

    Call the result with ``(init, xs)``; it returns ``(carry, ys)``. The choices
    of all steps are stacked along a leading time axis (``("chain", "z")`` has
    shape ``(T, ...)``), and constraints carry that axis: every step is
    constrained at the same addresses. Use it instead of a raw ``lax.scan``
    around random choices, which staging refuses. ``update`` cannot change the
    number of steps.

    Args:
        step: a generative function ``step(carry, x) -> (carry, y)``. It may not
            close over values traced in an enclosing function (pass them in the
            carry or in ``xs``).
        length: the number of steps ``T``; needed when ``xs`` is ``None``,
            otherwise it must match the leading axis of ``xs``.

    Returns:
        A generative function of ``(init, xs)`` returning ``(carry, ys)``, ``ys``
        stacked along time.

    Raises:
        PPLError: if ``step`` is not a generative function; when run, if it is
            not called with two arguments, if ``xs`` and ``length`` disagree on
            (or neither gives) the number of steps, or if the step does not
            return a pair.
        AddressError: if a constraint's value has no leading axis of length ``T``.

    Examples:
        >>> @ppl.gen
        ... def step(z, x):
        ...     z = ppl.normal(0.9 * z, 1.0) @ "z"
        ...     return z, ppl.normal(z, 0.5) @ "x"
        >>> chain = ppl.scan(step, length=4)
        >>> tr = chain.simulate(jax.random.key(0), (0.0, None))
        >>> tr.choices["z"].shape, tr.retval[1].shape
        ((4,), (4,))
        >>> tr, log_w = chain.generate(jax.random.key(1), {"x": jnp.zeros(4)}, (0.0, None))
        >>> log_w.shape
        ()
    """
    return Scan(step, length)
