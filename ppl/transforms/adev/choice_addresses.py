"""The addresses of an expectation's random choices, found by one abstract walk with
a probe strategy that only records them (the first step of the pilot of
``ppl.choose_strategies``)."""

from __future__ import annotations


import jax

from ppl._errors import PPLError
from ppl._gfi import as_args
from ppl.expectations import Expectation
from ppl.transforms.adev.interpreter import Ctx
from ppl.transforms.adev.strategies import Strategy


class _Probe(Strategy):
    """Not a gradient estimator: records each choice's address and distribution
    and draws its value with no derivative (the pilot's address discovery)."""

    name = "probe"

    def __init__(self):
        self.found: dict[tuple, str] = {}

    def check(self, dist, d, addr):
        self.found.setdefault(addr, dist.name)

    def sample(self, site, state):
        return (site.dist_fn.draw(site.key, site.dist_fn.dist(*site.args_p)), None), state


def choice_addresses(f: Expectation, args: tuple) -> dict:
    """The addresses of the random choices of ``f`` at ``args``, in program order.

    Args:
        f: an expectation (``@ppl.expectation``, ``ppl.adev``, ``ppl.E``).
        args: its arguments (a tuple), as for ``f.estimate``.

    Returns:
        A dict, address (a path: a tuple) -> the name of its distribution; for a
        choice whose strategy a policy of ``f`` fixes, ``"?"``. A vmap of a
        distribution is one (batched) choice; a call estimated as a whole
        (a policy of ``reinforce`` at a call with no rule of its own) is one
        address.

    Raises:
        PPLError: if ``f`` is not an expectation or ``args`` not a tuple, or if
            staging ``f`` fails.

    Examples:
        >>> @ppl.expectation
        ... def f(mu):
        ...     return ppl.normal(mu, 1.0) @ "x" + ppl.flip(0.3) @ "b"
        >>> choice_addresses(f, (0.5,))
        {('x',): 'normal', ('b',): 'flip'}
    """
    _check_expectation(f)
    held = as_args(args, f.name)
    probe = _Probe()
    # Every choice with no policy of its own takes the strategy forced at the empty
    # prefix (the probe); policies of the expectation are looked up first.
    ctx = Ctx({}, forced={(): probe})
    flat, tree = jax.tree.flatten(held)

    def walk(*leaves):
        duals = [(p, None) for p in leaves]
        return f._result(ctx, jax.random.key(0), duals, tree, ()).p

    jax.eval_shape(walk, *flat)
    found = dict(probe.found)
    # Addresses the expectation's own policies decide (reached during the walk).
    for addr in sorted(ctx.used & ctx.wanted, key=repr):
        is_call = any(a[: len(addr)] == addr and a != addr for a in found)
        if addr not in found and not is_call:
            found[addr] = "?"
    return found


def _check_expectation(f) -> None:
    if not isinstance(f, Expectation):
        raise PPLError(
            f"choose_strategies takes an expectation (@ppl.expectation, ppl.adev, ppl.E); got "
            f"{type(f).__name__}. Wrap a plain function with ppl.expectation first."
        )
