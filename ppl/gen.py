"""``@gen``: generative functions written as Python functions.

Inside an ``@gen`` function, ``dist(args) @ "addr"`` makes a random choice and
``other(args) @ "addr"`` calls another generative function whose choices then
live under ``"addr"``. The function is staged to a jaxpr once per argument
shape; each interface method is an interpreter over it (``ppl.transforms``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import equinox as eqx

from ppl._args import call
from ppl._errors import PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap
from ppl.core import Program, closes_over_tracers, hoist_closure, program_cache
from ppl.transforms import assess as _assess
from ppl.transforms import generate as _generate
from ppl.transforms import simulate as _simulate
from ppl.transforms import update as _update
from ppl.transforms._sites import total


class StaticTrace(Trace):
    """The trace of an ``@gen`` function: one sub-trace per address."""

    gen_fn: Any = eqx.field(static=True)
    args: tuple
    subtraces: dict
    retval: Any
    score: Any

    @property
    def choices(self) -> ChoiceMap:
        return ChoiceMap({addr: tr.choices for addr, tr in self.subtraces.items()})

    def project(self, selection):
        return total(tr.project(selection.child(a)) for a, tr in self.subtraces.items())


class StaticGenerativeFunction(GenerativeFunction):
    """A Python function of random choices; build with ``gen``."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self._programs = program_cache()
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))

    def program(self, args: tuple) -> Program:
        """The staged program for arguments of these shapes."""
        return self._programs(self.fn, args, self.name)

    def hoisted(self, args):
        """A function defined inside another generative function may use that
        function's arguments (a closure over values being traced). At a call
        site those values become explicit arguments of an equivalent function,
        so the site sees the values of each run."""
        if not closes_over_tracers(self.fn):
            return self, args
        converted, values = hoist_closure(self._call, args)
        converted.__qualname__ = self.name
        return StaticGenerativeFunction(converted), (*args, values)

    def _call(self, *args):
        return call(self.fn, args, self.name)

    def retval_abstract(self, args):
        return self._call(*args)

    def _trace(self, args, subtraces, retval):
        return StaticTrace(
            self, args, subtraces, retval, total(tr.score for tr in subtraces.values())
        )

    def _simulate(self, key, args):
        subtraces, retval = _simulate.simulate(self.program(args), key, args)
        return self._trace(args, subtraces, retval)

    def _assess(self, choices, args):
        return _assess.assess(self.program(args), choices, args, self.name)

    def _generate(self, key, constraints, args):
        subtraces, retval, w = _generate.generate(
            self.program(args), key, constraints, args, self.name
        )
        return self._trace(args, subtraces, retval), w

    def _update(self, key, trace, constraints, args):
        subtraces, retval, w, discard = _update.update(
            self.program(args), key, trace, constraints, args, self.name
        )
        return self._trace(args, subtraces, retval), w, discard

    def _regenerate(self, key, trace, selection, args):
        subtraces, retval, w = _update.regenerate(self.program(args), key, trace, selection, args)
        return self._trace(args, subtraces, retval), w

    def __repr__(self):
        return f"@gen {self.name}"


def gen(fn: Callable) -> StaticGenerativeFunction:
    """Make a generative function of a Python function that makes random choices.

    Inside ``fn``, ``dist(args) @ "addr"`` makes a random choice and
    ``other(args) @ "addr"`` calls another generative function, whose choices
    live under ``"addr"``. Everything else is ordinary JAX code. The function is
    staged once per argument shape (on the first interface call), so it must be
    traceable by JAX: its Python control flow may depend only on static values.

    Args:
        fn: the function; its positional arguments are the generative
            function's arguments (array leaves traced, other leaves static).

    Returns:
        A ``ppl.GenerativeFunction`` with ``fn``'s name and docstring.

    Raises:
        PPLError: if ``fn`` is not callable; and, not when decorating but when the
            function is staged (its first
            ``simulate``, ``assess``...): for an address used twice, and for a
            random choice inside raw ``jax.lax.scan``/``cond``/``while_loop``,
            ``jax.vmap`` or ``jax.grad`` (the message names the combinator to
            use instead).

    Examples:
        >>> @ppl.gen
        ... def model(mu):
        ...     x = ppl.normal(mu, 1.0) @ "x"
        ...     return ppl.normal(x, 0.5) @ "y"
        >>> tr = model.simulate(jax.random.key(0), (0.0,))
        >>> tr.choices.addresses(), tr.score.shape
        ([('x',), ('y',)], ())
    """
    if not callable(fn):
        raise PPLError(
            f"ppl.gen decorates a Python function, got {fn!r}; write @ppl.gen above a def."
        )
    return StaticGenerativeFunction(fn)
