"""The generative-function interface shared by every kind of generative function.

Public methods check and normalise their inputs (keys, argument tuples, choice
maps) and then call the ``_simulate``/``_assess``/... method that each kind
implements. All of them are pure and work under ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl._args import hold, staging_name
from ppl._errors import PPLError
from ppl.choices import ChoiceMap, Selection, check_selects_some, select_all
from ppl.core import Callee, bind_sample, closes_over_tracers, refuse_as_array


class Trace(eqx.Module):
    """A record of one execution of a generative function.

    Made by the interface methods, never directly; a pytree, so traces pass
    through ``jit`` and ``vmap``. ``tr[addr]`` is ``tr.choices[addr]`` (an
    ``ppl.AddressError`` where there is no choice).

    Attributes:
        gen_fn: the generative function that ran.
        args: the arguments it ran with (a tuple).
        retval: its return value.
        score: ``log p`` of the choices (not its negation), including
            ``ppl.factor`` terms.
        choices: the random choices made, a ``ppl.ChoiceMap``.

    Examples:
        >>> @ppl.gen
        ... def model(mu):
        ...     return ppl.normal(mu, 1.0) @ "x"
        >>> tr = model.simulate(jax.random.key(0), (0.0,))
        >>> bool(tr.retval == tr["x"]), bool(tr.score == model.assess(tr.choices, (0.0,))[0])
        (True, True)
    """

    if TYPE_CHECKING:  # every kind of trace has these fields; declared for the type checker only

        @property
        def gen_fn(self) -> Any: ...
        @property
        def args(self) -> tuple: ...
        @property
        def retval(self) -> Any: ...
        @property
        def score(self) -> jax.Array: ...

    @property
    @abc.abstractmethod
    def choices(self) -> ChoiceMap:
        """The random choices of this execution."""

    def get_choices(self) -> ChoiceMap:
        return self.choices

    @abc.abstractmethod
    def project(self, selection: Selection) -> jax.Array:
        """The sum of the log densities of the selected random choices."""

    def __getitem__(self, addr):
        return self.choices[addr]


class _AttributeMisuse(PPLError, AttributeError):
    """An attribute read on an ``Invocation`` (``model(x).score``)."""


class Invocation:
    """``gen_fn(*args)``, waiting for an address: ``gen_fn(*args) @ "addr"``.

    It is not a value: using it as one (arithmetic, comparisons, ``if``,
    ``float``, ``jnp.asarray``, indexing, attributes such as ``.score``)
    raises a ``PPLError`` that says what to write instead, inside a
    generative function (``@ "addr"``) or outside one (``simulate``).

    >>> ppl.normal(0.0, 1.0).score
    Traceback (most recent call last):
    ppl._gfi._AttributeMisuse: normal(0.0, 1.0) was asked for .score, but calling a ...
    """

    __slots__ = ("gen_fn", "args")

    def __init__(self, gen_fn, args):
        self.gen_fn, self.args = gen_fn, args

    def __matmul__(self, addr):
        if not isinstance(addr, str):
            raise PPLError(f'address {addr!r} must be a string, as in normal(0.0, 1.0) @ "x".')
        return bind_sample(self.gen_fn, self.args, addr)

    def _misuse(self, what: str, error=PPLError):
        g = self.gen_fn
        call = f"{_name(g)}({_short(self.args)})"
        if staging_name() is not None:
            return error(
                f"in {staging_name()}, {call} was {what}, but it is a random choice without an "
                "address, "
                "not a value. "
                f'Write `{call} @ "addr"` to make the choice and use its value.'
            )
        name, args = _name(g), _short(self.args, 1)
        run = (
            f"`{name}.estimate(key, ({args}))` or `{name}.grad_estimate(key, ({args}))`"
            if hasattr(g, "estimate")
            else f"`{name}.simulate(key, ({args}))` (a trace: .retval, .score, .choices) or "
            f"`{name}.assess(choices, ({args}))`"
        )
        return error(
            f"{call} was {what}, but calling a generative function does not run it: it only "
            "describes a call, to be given an address inside another generative function "
            f'(`{call} @ "addr"`). To run it, use {run}.'
        )

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise self._misuse(f"asked for .{attr}", _AttributeMisuse)

    def __bool__(self):
        raise self._misuse("used as a condition (if, while, and/or, bool())")

    def __jax_array__(self):
        raise self._misuse("used as an array")

    def __array__(self, *_, **__):
        raise self._misuse("used as an array")

    def __getitem__(self, _):
        raise self._misuse("indexed")

    def __iter__(self):
        raise self._misuse("iterated over (or unpacked)")

    def __len__(self):
        raise self._misuse("asked for its length")

    def __repr__(self):
        return f'{self.gen_fn!r}(...) awaiting an address: write `{self.gen_fn!r}(...) @ "addr"`'


def _name(g) -> str:
    return getattr(g, "__name__", None) or getattr(g, "name", None) or "gen_fn"


def _short(args: tuple, tuple_comma: int = 0) -> str:
    """The arguments as written, numbers shown and anything larger as ``...``."""
    parts = [repr(a) if isinstance(a, (bool, int, float, str)) else "..." for a in args]
    return ", ".join(parts) + ("," if tuple_comma and len(parts) == 1 else "")


def _misuse_op(what):
    def op(self, *_):
        raise self._misuse(what)

    return op


for _op in (
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "divmod",
    "and",
    "or",
    "xor",
    "lshift",
    "rshift",
):
    setattr(Invocation, f"__{_op}__", _misuse_op("used in arithmetic"))
    setattr(Invocation, f"__r{_op}__", _misuse_op("used in arithmetic"))
setattr(Invocation, "__rmatmul__", _misuse_op("used in arithmetic"))
for _op in ("neg", "pos", "abs", "invert", "round", "trunc", "floor", "ceil"):
    setattr(Invocation, f"__{_op}__", _misuse_op("used in arithmetic"))
for _op in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(Invocation, f"__{_op}__", _misuse_op("compared"))
for _op in ("float", "int", "index", "complex"):
    setattr(Invocation, f"__{_op}__", _misuse_op("converted to a number"))
Invocation.__hash__ = object.__hash__  # defining __eq__ would otherwise make it unhashable
refuse_as_array(Invocation, lambda inv: inv._misuse("used as an array (passed to a JAX function)"))


def as_key(key):
    """Accept both ``jax.random.key`` and legacy ``jax.random.PRNGKey`` keys."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    try:
        arr = jnp.asarray(key)
    except TypeError:  # not array-like at all, e.g. a string
        arr = None
    if arr is not None and arr.dtype == jnp.uint32 and arr.shape[-1:] == (2,):
        return jax.random.wrap_key_data(arr)
    raise PPLError(
        "expected a PRNG key from jax.random.key(seed) or jax.random.PRNGKey(seed), got "
        f"{type(key).__name__} with shape {getattr(arr, 'shape', None)}."
    )


def as_args(args, name) -> tuple:
    if not isinstance(args, tuple):
        raise PPLError(
            f"arguments of {name} must be a tuple, e.g. ({args!r},) for one argument; got "
            f"{type(args).__name__}."
        )
    return hold(args, name)


def as_choices(choices) -> ChoiceMap:
    if isinstance(choices, ChoiceMap):
        return choices
    if isinstance(choices, Mapping):
        return ChoiceMap.d(choices)
    if choices is None:
        return ChoiceMap.empty()
    raise PPLError(
        f"expected a ChoiceMap (or a dict of address -> value), got {type(choices).__name__}."
    )


def as_selection(selection) -> Selection:
    if isinstance(selection, Selection):
        return selection
    raise PPLError(f"expected a selection from ppl.select(...), got {type(selection).__name__}.")


class GenerativeFunction(Callee, abc.ABC):
    """Something that makes random choices: a distribution, an ``@gen`` function or a
    combinator.

    Inside another generative function, call it and give the call an address,
    ``g(*args) @ "addr"``; the call alone is not a value (using it as one raises
    ``ppl.PPLError``). Its interface methods are pure JAX functions;
    arguments are always a tuple. A new kind subclasses this and implements
    ``_simulate``, ``_assess``, ``_generate``, ``_update`` and ``_regenerate``;
    inside an expectation it needs ``ppl.reinforce`` as the policy at its address.

    Args:
        *args: the arguments of a subclass's constructor (the base class takes none).
        **kwargs: the keyword arguments of a subclass's constructor.

    Examples:
        >>> @ppl.gen
        ... def model(mu):
        ...     x = ppl.normal(mu, 1.0) @ "x"
        ...     return ppl.normal(x, 0.5) @ "y"
        >>> isinstance(model, ppl.GenerativeFunction)
        True
        >>> tr, log_w = model.generate(jax.random.key(0), ppl.ChoiceMap.d({"y": 0.2}), (0.0,))
        >>> round(float(tr["y"]), 2), tr.choices.addresses()
        (0.2, [('x',), ('y',)])
    """

    def __call__(self, *args) -> Invocation:
        return Invocation(self, args)

    # -- the interface ------------------------------------------------------
    def simulate(self, key, args: tuple) -> Trace:
        """Run forward, sampling every choice.

        Args:
            key: a ``jax.random`` key.
            args: the arguments, a tuple.

        Returns:
            A ``Trace``; its ``score`` is ``log p`` of its choices.

        Raises:
            PPLError: if ``key`` is not a key or ``args`` is not a tuple.
        """
        return self._simulate(as_key(key), as_args(args, self.name))

    def assess(self, choices, args: tuple) -> tuple[jax.Array, Any]:
        """The log density of a complete choice map, and the return value.

        Args:
            choices: a value for every random choice (a ``ChoiceMap`` or a
                dict of address to value).
            args: the arguments, a tuple.

        Returns:
            ``(log_density, retval)``.

        Raises:
            AddressError: if a choice has no value, or a value has no choice.
            PPLError: if ``choices`` is not a choice map or ``args`` not a tuple.
        """
        return self._assess(as_choices(choices), as_args(args, self.name))

    def generate(self, key, constraints, args: tuple) -> tuple[Trace, jax.Array]:
        """Run with some choices constrained, sampling the others.

        Args:
            key: a ``jax.random`` key.
            constraints: the values of the constrained choices (a
                ``ChoiceMap``, a dict, or ``None``).
            args: the arguments, a tuple.

        Returns:
            ``(trace, log_weight)`` with weight = log p(all choices) - log q(the
            sampled ones); with every choice constrained it is the score.

        Raises:
            AddressError: if a constraint is at an address with no choice.
            PPLError: if the key, constraints or arguments have the wrong type.
        """
        return self._generate(as_key(key), as_choices(constraints), as_args(args, self.name))

    def update(
        self, key, trace: Trace, constraints=None, args: tuple | None = None
    ) -> tuple[Trace, jax.Array, ChoiceMap]:
        """Move ``trace`` to new arguments and constrained values.

        Args:
            key: a ``jax.random`` key (for choices the new run makes afresh).
            trace: a trace of this generative function.
            constraints: the new values (default: none).
            args: new arguments (default: the trace's).

        Returns:
            ``(new_trace, log_weight, discard)``: weight = log p(new) - log p(old)
            - log q(newly sampled); ``discard`` holds the values replaced, so
            updating back with it restores the old trace.

        Raises:
            AddressError: if a constraint is at an address with no choice.
            PPLError: if the key, constraints or arguments have the wrong type.
        """
        args = trace.args if args is None else as_args(args, self.name)
        return self._update(as_key(key), trace, as_choices(constraints), args)

    def regenerate(
        self, key, trace: Trace, selection=None, args: tuple | None = None
    ) -> tuple[Trace, jax.Array]:
        """``(new_trace, log_weight)``: resample the selected choices from the prior;
        the weight is the Metropolis-Hastings log ratio for that move.

        Args:
            key: a ``jax.random`` key.
            trace: a trace of this generative function.
            selection: the choices to resample (default: all of them).
            args: new arguments (default: the trace's).

        Returns:
            ``(new_trace, log_weight)``.

        Raises:
            PPLError: if ``selection`` is not a selection, or names addresses
                (``ppl.select("x", ...)``) none of which any run of this function
                makes: the move would do nothing.

        Examples:
            >>> @ppl.gen
            ... def model():
            ...     return ppl.normal(0.0, 1.0) @ "z"
            >>> tr = model.simulate(jax.random.key(0), ())
            >>> new_tr, w = model.regenerate(jax.random.key(1), tr, ppl.select("z"))
            >>> float(w)  # a prior move on every choice is always accepted
            0.0
        """
        key = as_key(key)
        args = trace.args if args is None else as_args(args, self.name)
        selection = select_all() if selection is None else as_selection(selection)
        if selection._names():  # a selection naming no address of any run would do nothing
            check_selects_some(selection, self.trace_shape(args).choices, self.name)
        return self._regenerate(key, trace, selection, args)

    @abc.abstractmethod
    def _simulate(self, key, args) -> Trace: ...

    @abc.abstractmethod
    def _assess(self, choices, args) -> tuple[jax.Array, Any]: ...

    @abc.abstractmethod
    def _generate(self, key, constraints, args) -> tuple[Trace, jax.Array]: ...

    @abc.abstractmethod
    def _update(self, key, trace, constraints, args) -> tuple[Trace, jax.Array, ChoiceMap]: ...

    @abc.abstractmethod
    def _regenerate(self, key, trace, selection, args) -> tuple[Trace, jax.Array]: ...

    inner: tuple = ()  # the generative functions a combinator runs

    def hoisted(self, args):
        """``(gen_fn, args)`` to record at a call site; see ``StaticGenerativeFunction``.

        A combinator cannot take the values its inner functions close over as
        extra arguments (a scan step takes exactly (carry, x)), so it refuses them."""
        for g in self.inner:
            if closes_over_tracers(getattr(g, "fn", None)):
                raise PPLError(
                    f"{g.name}, run by {self.name}, uses a value that is being traced in the "
                    "function "
                    "that defines it (a closure over one of its arguments). Inside a combinator "
                    "that "
                    "value would be stale: pass it as an argument instead (for ppl.scan, in the "
                    "carry "
                    "or in xs; for ppl.vmap with in_axes=None)."
                )
        return self, args

    # -- shapes, for staging ------------------------------------------------
    def _shapes(self, in_tree, in_avals):
        return self._shape(
            "trace", lambda a: self.simulate(jax.random.key(0), a), in_tree, in_avals
        )

    def retval_abstract(self, args):
        """The return value for ``args``, traced abstractly (only its shape is used).

        Kinds that can say this without running ``simulate`` override it, so a
        random choice that only has meaning inside an expectation can sit in them."""
        return self.simulate(jax.random.key(0), args).retval

    def trace_shape(self, args: tuple):
        """The shapes of a trace for ``args`` (no computation is run)."""
        flat, tree = jax.tree.flatten(args)
        return self._shapes(tree, tuple(jax.typeof(x) for x in flat))
