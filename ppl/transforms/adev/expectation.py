"""The callees that only have meaning inside an expectation, and their ADEV rules.

An ``Expectation`` (and its average ``averaged``) is itself a callee
that other expectations can call; ``add_cost`` adds to the value of the
enclosing expectation; ``Sim`` samples a generative function with its
strategies and returns its choices and log density. ``sim_of`` and
``density_of`` give the ADEV form of ``sim(q)`` and ``density(p)`` for each
kind of generative function (estimated densities register their own).
"""

from __future__ import annotations

import copy
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from ppl._args import release
from ppl._errors import PPLError
from ppl._gfi import GenerativeFunction, Invocation, Trace, as_args, as_key
from ppl.choices import ChoiceMap
from ppl.core import Callee, Continue, bind_sample, is_differentiated, program_cache
from ppl.gen import StaticGenerativeFunction
from ppl.transforms.adev import dataflow as _dataflow
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.dual import Result, State


class _AdevOnly(Callee):
    """Things that can be called with ``@ "addr"`` inside an expectation but have
    no meaning as a generative function elsewhere."""

    def __call__(self, *args) -> Invocation:
        return Invocation(self, args)

    def _misuse(self, *_, **__):
        raise PPLError(
            f"{self.name} was called inside a generative function run by simulate/assess/...; "
            "it only has meaning inside an @ppl.expectation (estimate / grad_estimate)."
        )

    simulate = assess = generate = update = regenerate = _misuse

    def _shape_fn(self, args):
        """The return value for ``args``, traced abstractly; each kind defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define _shape_fn(args)")

    def retval_abstract(self, args):
        return self._shape_fn(args)


class Expectation(_AdevOnly):
    """An expected value as a program; build with ``ppl.expectation``.

    ``estimate(key, args)`` is an unbiased estimate of the value and
    ``grad_estimate(key, args)`` an unbiased estimate of its gradient with
    respect to ``args`` (the same pytree); both are jitted, and ``jax.grad`` of
    ``estimate`` is ``grad_estimate``. Inside another expectation,
    ``f(*args) @ "addr"`` gives an unbiased estimate of ``f``'s value with an
    unbiased derivative (its choices live under ``"addr"`` for strategy
    policies); the outer estimate stays unbiased where it uses the inner one
    linearly. Outside an expectation it has no meaning: ``simulate`` and the
    other interface methods raise ``ppl.PPLError``, as do arguments that
    are not a tuple.

    Args:
        fn: the program, a function of the arguments returning a real scalar.
        policy: address (a path tuple) -> strategy; prefer ``ppl.adev``,
            which checks it.
        rao_blackwell: multiply each REINFORCE score only by the terms that
            depend on its choice (see ``with_rao_blackwell``).

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     return ppl.normal(theta, 1.0) @ "x"
        >>> @ppl.expectation
        ... def outer(theta):
        ...     return 2.0 * (f(theta) @ "inner")
        >>> isinstance(f, ppl.Expectation), outer.grad_estimate(jax.random.key(0), (0.5,))
        (True, (Array(2., dtype=float32, weak_type=True),))
    """

    def __init__(self, fn: Callable | None, policy: dict | None = None, rao_blackwell: bool = True):
        self.fn = fn
        self.policy = dict(policy or {})
        self.rao_blackwell = rao_blackwell
        self._programs = program_cache()
        if fn is not None:
            functools.update_wrapper(self, fn)
        self._setup()

    def _setup(self):
        est = jax.custom_jvp(lambda key, args: _adev.top_level(self, key, args, None)[0])

        def rule(primals, tangents):
            p, t = _adev.top_level(self, primals[0], primals[1], tangents[1])
            return p, jnp.zeros_like(p) if t is None else t

        est.defjvp(rule, symbolic_zeros=True)
        self._estimator = est
        self._jit_estimate = jax.jit(est)
        self._jit_grad = jax.jit(jax.grad(lambda args, key: est(key, args), allow_int=True))

    @property
    def name(self) -> str:
        return f"expectation {getattr(self.fn, '__qualname__', '?')}"

    def program(self, args: tuple):
        return self._programs(self.fn, args, self.name)

    def estimate(self, key, args: tuple):
        """An unbiased estimate of the expected value at ``args``; differentiable.

        Args:
            key: a ``jax.random`` key.
            args: the arguments, a tuple.

        Returns:
            A scalar; ``jax.grad`` of it (in ``args``) is ``grad_estimate``.

        Raises:
            PPLError: if the key or arguments have the wrong type, or (when the
                program is staged) a strategy cannot serve its choice, a policy
                names an address with no choice, or the program misuses a
                ppl construct (the message names the address).
        """
        return self._jit_estimate(as_key(key), as_args(args, self.name))

    def grad_estimate(self, key, args: tuple):
        """An unbiased estimate of the gradient with respect to ``args`` (same pytree).

        Args:
            key: a ``jax.random`` key.
            args: the arguments, a tuple; float leaves are differentiated.

        Returns:
            A tuple like ``args``: the gradient estimate for each argument.

        Raises:
            PPLError: as ``estimate``.
        """
        return release(self._jit_grad(as_args(args, self.name), as_key(key)))

    def with_strategies(self, strategies) -> "Expectation":
        """A copy whose policy also assigns ``strategies`` (the new ones win).

        Args:
            strategies: a dict, address -> strategy (as for ``ppl.adev``).

        Returns:
            A new ``Expectation``; this one is unchanged.

        Raises:
            PPLError: as ``ppl.adev``, for a policy that is not a dict of
                strategies.
        """
        new = copy.copy(self)
        new.policy = {**self.policy, **_adev.check_policy(strategies)}
        new._setup()
        return new

    def with_rao_blackwell(self, on: bool) -> "Expectation":
        """A copy with Rao-Blackwellized REINFORCE on (the default) or off.

        On, each score-function choice's score multiplies only the terms of the
        value (the returned value, each ``ppl.add_cost``) that depend on it by
        data flow; off, it multiplies the whole value (plain REINFORCE, the
        behaviour before Rao-Blackwellization). Both are unbiased.

        Args:
            on: whether to Rao-Blackwellize.

        Returns:
            A new ``Expectation``; this one is unchanged.

        Raises:
            PPLError: if ``on`` is not a bool.

        Examples:
            >>> @ppl.expectation
            ... def f(theta):
            ...     return ppl.normal(theta, 1.0) @ "x"
            >>> plain = f.with_rao_blackwell(False)
            >>> plain.grad_estimate(jax.random.key(0), (0.5,))
            (Array(1., dtype=float32, weak_type=True),)
        """
        if not isinstance(on, bool):
            raise PPLError(f"with_rao_blackwell takes True or False; got {on!r}.")
        new = copy.copy(self)
        new.rao_blackwell = on
        new._setup()
        return new

    def _shape_fn(self, args):
        return self._estimator(jax.random.key(0), args)

    def _result(self, ctx, key, duals, tree, path) -> Result:
        program = self.program(jax.tree.unflatten(tree, _dual.primals(duals)))
        if is_differentiated(program.consts):
            raise PPLError(
                f"{self.name} closes over a value that an enclosing jax.grad/jax.jvp "
                "differentiates. "
                "ADEV differentiates an expectation through its arguments only: pass the value as "
                "an argument, e.g. f.estimate(key, (params,)) with def f(params): ..."
            )
        if self.rao_blackwell:
            duals, state = _dataflow.known(duals), State(rb=True)
        else:
            duals, state = [(p, t) for p, t in duals], State()
        return _adev.run(
            ctx.nested(self.policy, path), program, key, duals, state, path, _adev.end_of_program
        )


@_adev.rule.register(Expectation)
def _nested_expectation(e, ctx, site, key, ins, state, k, addr):
    r = e._result(ctx, key, ins, site.in_tree, addr)
    return Continue([(r.p, r.t)], state)


class _Averaged(Expectation):
    def __init__(self, inner: Expectation, n: int, loo: bool):
        self.inner, self.n, self.loo = inner, n, loo
        super().__init__(None)

    @property
    def name(self) -> str:
        return f"E({self.inner.name}, n={self.n}{', loo' if self.loo else ''})"

    def _result(self, ctx, key, duals, tree, path) -> Result:
        ctx = ctx.nested(self.policy, path)
        keys = jax.random.split(key, self.n)
        r = jax.vmap(lambda k: self.inner._result(ctx, k, duals, tree, path))(keys)
        t = r.t
        if self.loo and t is not None and r.u is not None:
            # Each sample's baseline is the mean of the others: independent of its
            # own choices, so the gradient stays unbiased.
            others = (jnp.sum(r.p) - r.p) / (self.n - 1)
            t = t - others * r.u

        def mean(x):
            return None if x is None else jnp.mean(x, axis=0)

        return Result(mean(r.p), mean(t), mean(r.u))


# ---------------------------------------------------------------------------
# add_cost
# ---------------------------------------------------------------------------


class _CostTrace(Trace):
    args: tuple

    is_cost = True  # found in traces by rules that estimate a whole call

    @property
    def retval(self):
        return None

    @property
    def score(self):
        return jnp.zeros((), jnp.result_type(float))

    @property
    def choices(self):
        return ChoiceMap.empty()

    def project(self, selection):
        return self.score


class _Cost(_AdevOnly):
    @property
    def name(self) -> str:
        return "ppl.add_cost"

    addressless = True  # may be called any number of times

    def _shape_fn(self, args):
        return None

    def simulate(self, key, args):
        # Shapes of generative functions are found by simulating them, so a cost
        # inside an @gen function called from an expectation must simulate; a cost
        # is no part of a model's density, so simulation ignores it.
        return _CostTrace(args)


@_adev.rule.register(_Cost)
def _cost_rule(_, ctx, site, key, ins, state, k, addr):
    ((c, dc),) = ins
    if jnp.shape(c) != ():
        raise PPLError(
            f"ppl.add_cost takes one real number; got shape {jnp.shape(c)}. Sum it first."
        )
    # earlier reinforce choices see the cost too: with Rao-Blackwellization, those it depends on
    return Continue([], _dataflow.add_term(state, (c, dc), _dual.deps_of(ins[0])))


COST = _Cost()


def bind_cost(x) -> None:
    """Make the ``add_cost`` call for ``x`` (see ``ppl.add_cost``)."""
    bind_sample(COST, (jnp.asarray(x, jnp.result_type(float)),), "add_cost")


# ---------------------------------------------------------------------------
# sim and density: the building blocks of variational objectives
# ---------------------------------------------------------------------------


class Sim(_AdevOnly):
    """``sim(q)(*args) @ "q"`` samples q's choices with their strategies and
    returns ``(choices, log q(choices))``, both differentiable."""

    def __init__(self, q: GenerativeFunction):
        if not isinstance(q, StaticGenerativeFunction):
            raise PPLError(
                f"ppl.sim takes an @ppl.gen function; got {q!r}. Wrap a single distribution or a "
                "combinator in an @ppl.gen function that calls it at an address."
            )
        self.q = q

    @property
    def name(self) -> str:
        return f"sim({self.q.name})"

    def hoisted(self, args):
        q, args = self.q.hoisted(args)
        return (self if q is self.q else Sim(q)), args

    def _shape_fn(self, args):
        tr = self.q.simulate(jax.random.key(0), args)
        return tr.choices, tr.score


def sim_outputs(st: State, addr) -> list:
    """What ``sim(q)(...) @ addr`` gives the caller once ``q`` has run: the dual
    leaves of the recorded choices, then log q; under Rao-Blackwellization each
    choice depends on what its site's outputs do, and log q on them all."""
    cm, tangents, logq = _adev.recorded_choices(st.rec, addr)
    outs = list(zip(jax.tree.leaves(cm), tangents, strict=True)) + [logq]
    if not st.rb:
        return outs
    tags = _adev.recorded_deps(st.rec, addr)
    logq_deps = _dual.union(_dataflow.entry_deps(e) for e in st.rec)
    tags.append((logq_deps, frozenset()))
    return [_dual.tainted(o, d, a) for o, (d, a) in zip(outs, tags, strict=True)]


@_adev.rule.register(Sim)
def _sim_rule(s, ctx, site, key, ins, state, k, addr):
    outer = state.rec

    def done(_outs, st):
        return k(sim_outputs(st, addr), st._replace(rec=outer))

    program = s.q.program(jax.tree.unflatten(site.in_tree, _dual.primals(ins)))
    return _adev.run(ctx, program, key, ins, state._replace(rec=()), addr, done)


@functools.singledispatch
def sim_of(q: GenerativeFunction) -> _AdevOnly:
    """The ADEV callee of ``ppl.sim(q)`` for a kind of generative function."""
    return Sim(q)


@functools.singledispatch
def density_of(p: GenerativeFunction) -> Callable:
    """``ppl.density(p)`` for a kind of generative function: by default its
    ``assess``, deterministic and differentiable."""

    def log_density(choices, *args):
        return p.assess(choices, args)[0]

    return log_density
