"""Enumeration: the exact expectation over a finite support, the rest of the program
evaluated at every value (``enum``: all at once, vectorised; ``enum_sequential``:
one after another)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from ppl.core import is_concrete
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev.dual import Result
from ppl.transforms.adev.strategies import Strategy, _is_discrete, _scalar


def _combine(weights, dweights, results: Result) -> Result:
    """Sum a result over a finite support with (dual) probability weights."""

    def wsum(w, x):
        return jnp.tensordot(w, x, axes=(0, 0))

    p = wsum(weights, results.p)
    t = None if results.t is None else wsum(weights, results.t)
    u = None if results.u is None else wsum(weights, results.u)
    if dweights is not None:
        t = _dual.add(t, wsum(dweights, results.p))
        u = _dual.add(u, jnp.sum(dweights))
    return Result(p, t, u)


# A batched choice (flip of shape (3,)) is enumerated over the product of its
# elements' supports, up to this many joint values.
MAX_JOINT_SUPPORT = 1024


class Enum(Strategy):
    """Exact enumeration (``ppl.enum``, ``ppl.enum_sequential``): sums the rest of
    the program over the whole support, weighted by the (differentiable)
    probabilities.

    Valid for choices with finite support: flip, categorical, and binomial with
    a Python-int count; a batched choice (``flip`` of shape ``(3,)``) is
    enumerated over the product of its elements' supports, up to
    ``MAX_JOINT_SUPPORT`` (1024) joint values. Needs the rest of the program
    as a function of the choice (not its derivative). Cost: K evaluations of the
    rest of the program per choice, K the size of the (joint) support; nested
    enumerations multiply, and more than 2**16 branches in all is refused.
    ``enum`` evaluates the branches in parallel (vectorised with ``jax.vmap``:
    K times the memory); ``enum_sequential`` one after another (less memory,
    longer compilation). Variance: zero from this choice. Inside a
    ``ppl.scan``/``ppl.vmap`` body or a branch with a run-time index it sums
    the rest of the body only, so the choice's value must stay inside the body
    (feed only ``ppl.add_cost`` terms or densities computed there).

    Args:
        gen_fn: the distribution to wrap for one call site.

    Returns:
        The wrapped distribution: call it with its parameters and give the call
        an address.

    Raises:
        PPLError: if ``gen_fn`` is not a distribution; when the expectation is
            staged, naming the address, for a continuous choice, an infinite
            support (geometric, poisson), a traced binomial count, vector-valued
            draws or a joint support over 1024 values, a value that leaves a
            loop body or run-time branch, or more than 2**16 nested branches.

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     b = ppl.flip(jax.nn.sigmoid(theta)) @ "b"
        ...     return jnp.where(b, 3.0, -1.0)
        >>> ppl.adev(f, {"b": ppl.enum}).grad_estimate(jax.random.key(0), (0.0,))
        (Array(1., dtype=float32, weak_type=True),)
        >>> ppl.adev(f, {"b": ppl.enum_sequential}).grad_estimate(jax.random.key(0), (0.0,))
        (Array(1., dtype=float32, weak_type=True),)
    """

    needs_continuation = True

    def __init__(self, parallel=True):
        self.parallel = parallel
        self.name = "enum" if parallel else "enum_sequential"

    def check(self, dist, d, addr):
        if not _is_discrete(d):
            self._refuse(
                addr,
                dist,
                "it is continuous, so there is no finite support to sum over",
                "reparam, mvd (normal) or reinforce",
            )
        if not getattr(d, "has_enumerate_support", False):
            self._refuse(addr, dist, "its support is infinite", "reinforce or mvd")
        count = getattr(d, "total_count", None)
        if count is not None and not is_concrete(count):
            self._refuse(
                addr,
                dist,
                "its number of trials is a traced value, so the size of its support "
                "is not known when the program is staged (pass the count as a Python int, "
                "e.g. binomial(5, p))",
                "reinforce",
            )
        if _scalar(d):
            return
        if d.event_shape != ():
            self._refuse(
                addr,
                dist,
                f"each of its values is a vector of shape {d.event_shape}",
                "reinforce",
            )
        joint = self.branch_count(d)
        if joint > MAX_JOINT_SUPPORT:
            self._refuse(
                addr,
                dist,
                f"it makes a value of shape {d.batch_shape}, whose joint support has {joint} "
                f"values, more than the {MAX_JOINT_SUPPORT} enum evaluates the program at",
                "one scalar choice per address (ppl.repeat / ppl.vmap), or reinforce",
            )

    def branch_count(self, d):
        per_element = int(d.enumerate_support(expand=False).shape[0])
        return per_element ** int(np.prod(d.batch_shape, dtype=int))

    def with_continuation(self, site, state, k):
        d = site.dist_fn.dist(*site.args_p)
        support = d.enumerate_support(expand=False).reshape(-1)
        if _scalar(d):
            w, dw = site.jvp(lambda *args: _probabilities(site.dist_fn.dist(*args), support))
            values = site.dist_fn._to_value(support)
        else:
            w, dw, values = _joint(site, d.batch_shape, support)
        if self.parallel:
            results = jax.vmap(lambda v: k((v, None), state))(values)
        else:
            branches = [k((values[i], None), state) for i in range(values.shape[0])]
            results = jax.tree.map(lambda *xs: jnp.stack(xs), *branches)
        return _combine(w, dw, results)


def _joint(site, batch_shape, support):
    """The probabilities (and their tangents) and the values of every joint value
    of a batched choice: element ``i`` takes ``support[index[j, i]]`` in the
    ``j``-th joint value (the indices are static)."""
    m = int(np.prod(batch_shape, dtype=int))
    index = np.array(list(itertools.product(range(support.shape[0]), repeat=m)), np.int32)

    def probabilities(*args):
        d = site.dist_fn.dist(*args)
        grid = support.reshape((-1,) + (1,) * len(batch_shape))
        per = _probabilities(d, grid).reshape(support.shape[0], m)  # value x element
        return jnp.prod(per[index, np.arange(m)], axis=1)

    w, dw = site.jvp(probabilities)
    values = site.dist_fn._to_value(support[index].reshape((-1,) + tuple(batch_shape)))
    return w, dw, values


def _probabilities(d, support: jax.Array) -> jax.Array:
    """The probability of each value of a finite support, computed so that its
    derivative is right at the boundary too: ``exp(log_prob)`` of numpyro's
    clamped probabilities has derivative 0 at p = 0 or 1, where the
    derivative of ``flip(p)``'s weights is still (-1, 1)."""
    if isinstance(d, nd.BernoulliProbs):
        return jnp.where(support > 0, d.probs, 1.0 - jnp.asarray(d.probs))
    if isinstance(d, nd.BernoulliLogits):
        logits = jnp.asarray(d.logits)
        return jax.nn.sigmoid(jnp.where(support > 0, logits, -logits))
    # A categorical's support is 0..K-1 in order: its probabilities, value axis first
    # (for a batched choice, one column per element).
    if isinstance(d, nd.CategoricalProbs):
        probs = jnp.asarray(d.probs)
        return jnp.moveaxis(probs / jnp.sum(probs, axis=-1, keepdims=True), -1, 0)
    if isinstance(d, nd.CategoricalLogits):
        return jnp.moveaxis(jax.nn.softmax(d.logits, axis=-1), -1, 0)
    if isinstance(d, nd.BinomialProbs):
        n, p = jnp.asarray(d.total_count), jnp.asarray(d.probs)
        ways = jnp.exp(
            jax.scipy.special.gammaln(n + 1.0)
            - jax.scipy.special.gammaln(support + 1.0)
            - jax.scipy.special.gammaln(n - support + 1.0)
        )
        return ways * _power(p, support) * _power(1.0 - p, n - support)
    return jnp.exp(d.log_prob(support))


def _power(x, k):
    """``x ** k`` for integer ``k >= 0`` with a finite derivative at ``x = 0``
    (``0 ** 0`` has derivative ``0 * 0 ** -1`` otherwise)."""
    k = jnp.asarray(k, jnp.result_type(x))
    return jnp.where(k == 0, 1.0, jnp.where(k == 0, 1.0, x) ** k)


enum = Enum(parallel=True)
enum_sequential = Enum(parallel=False)
