"""The program IR: a staged generative function, and its two walkers.

A ``Program`` is a flat list of instructions over scoped variables: each
random choice is a top-level ``Site``, every other instruction a JAX
equation without random choices. ``Program.run`` evaluates it directly
with a handler for sites (the interface interpreters); ``Program.walk``
evaluates it in continuation-passing style over a value domain chosen by the
caller (ADEV's dual numbers).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
from jax.extend import core as jex

from ppl._errors import PPLError


@dataclasses.dataclass(frozen=True)
class Site:
    """One random choice of a program: ``gen_fn(*args) @ addr``.

    Attributes:
        index: its position among the program's sites (keys are split by it).
        addr: its address.
        gen_fn: the ``ppl.core.Callee`` called there.
        in_tree: the tree structure of its arguments.
        ins: refs of the flattened arguments in the program's environment.
        outs: refs of the flattened return value (``None`` for unused ones).

    Examples:
        >>> [s.addr for s in model.program((1.0,)).sites]
        ['z', 'y']
    """

    index: int
    addr: Any
    gen_fn: Any
    in_tree: Any
    ins: tuple
    outs: tuple


@dataclasses.dataclass(frozen=True)
class Eqn:
    """A sample-free JAX equation of a program, with its input and output refs.

    Attributes:
        eqn: the JAX equation.
        ins: refs of its inputs.
        outs: refs of its outputs (``None`` for dropped ones).
    """

    eqn: Any
    ins: tuple
    outs: tuple


@dataclasses.dataclass(frozen=True)
class Lit:
    """A literal operand: a constant value in place of a variable ref.

    Attributes:
        val: the value.
    """

    val: Any


@dataclasses.dataclass
class Program:
    """A staged generative function: instructions over scoped variables.

    Made by ``ppl.core.stage``. ``instrs`` holds ``Site`` and
    ``Eqn`` instructions in order; ``sites`` the sites alone. Variables
    are refs ``(scope, jaxpr variable)`` (one scope per inlined call) or
    ``Lit`` constants.

    Examples:
        >>> prog = model.program((1.0,))
        >>> prog.addresses
        ['z', 'y']
        >>> retval = prog.run((1.0,), lambda site, args: site.gen_fn.simulate(key, args).retval)
    """

    instrs: list
    sites: list
    invars: tuple
    outvars: tuple
    const_refs: tuple
    consts: tuple
    in_tree: Any
    out_tree: Any

    @property
    def addresses(self) -> list:
        """The addresses of the program's random choices, in program order."""
        return [s.addr for s in self.sites]

    def run(self, args: tuple, on_site: Callable) -> Any:
        """Evaluate the program directly, with a handler for random choices.

        Args:
            args: the arguments, with the tree structure the program was staged for.
            on_site: ``on_site(site, site_args) -> retval`` at each ``Site``,
                in program order; its result flows on as the choice's value.

        Returns:
            The program's return value.

        Raises:
            PPLError: if ``args`` do not have the staged tree structure.

        Examples:
            >>> prog.run((1.0,), lambda site, a: site.gen_fn.simulate(key, a).retval)
        """
        env = self._initial_env(args)
        for instr in self.instrs:
            _step(instr, env, on_site)
        return self._result(env)

    def walk(self, flat_args, *, lift, apply, on_site, finish, state=None):
        """Continuation-passing evaluation over a value domain chosen by the caller.

        This is what non-standard interpretations (ADEV's dual numbers) need:
        environment values are opaque here. ``lift(x)`` turns a constant or
        literal into a domain value; ``apply(fn, ins)`` evaluates a sample-free
        equation, given ``fn(*raw_inputs) -> list of raw outputs``;
        ``on_site(site, ins, state, k)`` handles a random choice, where ``ins``
        are the domain values of its flattened arguments. A handler either
        returns ``Continue`` (the walk goes on in a loop, so long programs
        do not deepen the Python stack) or returns the result of calling
        ``k(outs, state)`` as many times as it likes. ``finish(outs, state)``
        receives the flat domain values of the program's outputs.

        Args:
            flat_args: the domain values of the flattened arguments.
            lift: ``raw value -> domain value``.
            apply: ``(fn, domain inputs) -> list of domain outputs``.
            on_site: ``(site, domain inputs, state, k) -> Continue | result``.
            finish: ``(domain outputs, state) -> result``.
            state: the initial state threaded through handlers.

        Returns:
            What ``finish`` (or a handler that does not continue) returns.

        Examples:
            >>> prog.walk(duals, lift=lambda x: (x, None), apply=jvp_apply,
            ...           on_site=rule, finish=lambda outs, st: outs)
        """
        env = {}
        _write_all(env, self.const_refs, [lift(c) for c in self.consts])
        _write_all(env, self.invars, list(flat_args))

        def from_(i, env, state):
            def read(ref):
                return lift(ref.val) if isinstance(ref, Lit) else env[ref]

            while i < len(self.instrs):
                instr = self.instrs[i]
                i += 1
                if isinstance(instr, Eqn):
                    _write_all(
                        env, instr.outs, apply(eqn_fn(instr.eqn), [read(r) for r in instr.ins])
                    )
                    continue

                def k(outs, state, i=i, env=env, instr=instr):
                    env = dict(env)
                    _write_all(env, instr.outs, list(outs))
                    return from_(i, env, state)

                res = on_site(instr, [read(r) for r in instr.ins], state, k)
                if not isinstance(res, Continue):
                    return res
                _write_all(env, instr.outs, list(res.outs))
                state = res.state
            return finish([read(r) for r in self.outvars], state)

        return from_(0, env, state)

    def _initial_env(self, args):
        flat, in_tree = jax.tree.flatten(args)
        if in_tree != self.in_tree:
            raise PPLError(
                f"arguments have structure {in_tree}, but the program was staged for "
                f"{self.in_tree}."
            )
        env = {}
        _write_all(env, self.const_refs, self.consts)
        _write_all(env, self.invars, flat)
        return env

    def _result(self, env):
        return jax.tree.unflatten(self.out_tree, [_read(env, r) for r in self.outvars])


@dataclasses.dataclass(frozen=True)
class Continue:
    """What a ``Program.walk`` site handler returns to go on without
    capturing its continuation: the site's output values and the new state.

    Attributes:
        outs: the domain values of the site's flattened return value.
        state: the state after the site.

    Examples:
        >>> def on_site(site, ins, state, k):
        ...     return Continue([value], state)
    """

    outs: list
    state: Any


def eqn_fn(eqn) -> Callable:
    """A sample-free equation as a function of its raw inputs (returns a list).

    A ``custom_vjp`` function cannot be run under forward-mode AD, so it is
    run as its primal jaxpr: tangents then flow through the primal code (the
    custom backward rule is not used).

    Args:
        eqn: a JAX equation without random choices.

    Returns:
        ``fn(*raw_inputs) -> list of outputs``, re-binding the equation's
        primitive with its parameters.

    Examples:
        >>> outs = eqn_fn(instr.eqn)(*inputs)
    """
    if eqn.primitive.name == "custom_vjp_call":
        return jex.jaxpr_as_fun(eqn.params["call_jaxpr"])
    params = eqn.primitive.get_bind_params(eqn.params)

    def fn(*ins):
        outs = eqn.primitive.bind(*ins, **params)
        return list(outs) if eqn.primitive.multiple_results else [outs]

    return fn


def _read(env, ref):
    return ref.val if isinstance(ref, Lit) else env[ref]


def _write_all(env, refs, values):
    for ref, v in zip(refs, values, strict=True):
        if ref is not None:
            env[ref] = v


def _step(instr, env, on_site):
    if isinstance(instr, Site):
        site_args = jax.tree.unflatten(instr.in_tree, [_read(env, r) for r in instr.ins])
        _write_all(env, instr.outs, jax.tree.leaves(on_site(instr, site_args)))
        return
    eqn = instr.eqn
    ins = [_read(env, r) for r in instr.ins]
    outs = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
    if not eqn.primitive.multiple_results:
        outs = [outs]
    _write_all(env, instr.outs, outs)
