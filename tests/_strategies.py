"""Random generative functions for property-based tests, with a reference density.

A *spec* describes a program: a list of nodes, each making one random choice
(a distribution, a nested ``@gen`` call, or a combinator) whose parameters are
a function of an earlier choice or of the program's scalar argument.
``build(spec)`` turns it into an ``@ppl.gen`` function; ``reference(spec,
choices, a)`` walks the same spec over a plain nested dict of values and adds
up numpyro ``log_prob``s, without going through any ppl interpreter. The two
share only the parameter maps below, so the reference checks addressing,
nesting, scoring and weight bookkeeping independently of ppl's machinery.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
from hypothesis import strategies as st

import ppl

# ---------------------------------------------------------------------------
# Distribution families: a ppl call and the equivalent numpyro distribution,
# both as functions of one real input ``u`` (bounded, so parameters stay sane).
# ---------------------------------------------------------------------------


def _sp(u):
    return jax.nn.softplus(u)


_COV2 = jnp.array([[1.0, 0.3], [0.3, 0.5]])


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    ppl_call: Any  # u -> Invocation
    numpyro: Any  # u -> numpyro distribution
    discrete: bool = False


FAMILIES = [
    Family("normal", lambda u: ppl.normal(u, 0.7), lambda u: nd.Normal(u, 0.7)),
    Family("normal_vec", lambda u: ppl.normal(jnp.stack([u, -u, 0.5]), jnp.array([1.0, 0.5, 2.0])),
           lambda u: nd.Normal(jnp.stack([u, -u, 0.5]), jnp.array([1.0, 0.5, 2.0]))),
    Family("mv_normal", lambda u: ppl.mv_normal(jnp.stack([u, 1.0 - u]), _COV2),
           lambda u: nd.MultivariateNormal(jnp.stack([u, 1.0 - u]), _COV2)),
    Family("mv_normal_diag", lambda u: ppl.mv_normal_diag(jnp.stack([u, 2 * u]), jnp.array([0.5, 1.5])),
           lambda u: nd.Normal(jnp.stack([u, 2 * u]), jnp.array([0.5, 1.5])).to_event(1)),
    Family("uniform", lambda u: ppl.uniform(-2.0, 3.0), lambda u: nd.Uniform(-2.0, 3.0)),
    Family("beta", lambda u: ppl.beta(1.0 + _sp(u), 2.0), lambda u: nd.Beta(1.0 + _sp(u), 2.0)),
    Family("gamma", lambda u: ppl.gamma(1.0 + _sp(u), 1.5), lambda u: nd.Gamma(1.0 + _sp(u), 1.5)),
    Family("exponential", lambda u: ppl.exponential(0.5 + _sp(u)), lambda u: nd.Exponential(0.5 + _sp(u))),
    Family("laplace", lambda u: ppl.laplace(u, 0.8), lambda u: nd.Laplace(u, 0.8)),
    Family("logistic", lambda u: ppl.logistic(u, 0.6), lambda u: nd.Logistic(u, 0.6)),
    Family("cauchy", lambda u: ppl.cauchy(u, 1.0), lambda u: nd.Cauchy(u, 1.0)),
    Family("student_t", lambda u: ppl.student_t(3.0, u, 1.0), lambda u: nd.StudentT(3.0, u, 1.0)),
    Family("lognormal", lambda u: ppl.lognormal(u, 0.5), lambda u: nd.LogNormal(u, 0.5)),
    Family("dirichlet", lambda u: ppl.dirichlet(jnp.stack([1.0, 1.0 + _sp(u), 2.0])),
           lambda u: nd.Dirichlet(jnp.stack([1.0, 1.0 + _sp(u), 2.0]))),
    Family("flip", lambda u: ppl.flip(jax.nn.sigmoid(u)), lambda u: nd.Bernoulli(probs=jax.nn.sigmoid(u)), True),
    Family("flip_logits", lambda u: ppl.flip(logits=u), lambda u: nd.Bernoulli(logits=u), True),
    Family("categorical", lambda u: ppl.categorical(jax.nn.softmax(jnp.stack([u, 0.0, -u]))),
           lambda u: nd.Categorical(probs=jax.nn.softmax(jnp.stack([u, 0.0, -u]))), True),
    Family("geometric", lambda u: ppl.geometric(0.2 + 0.6 * jax.nn.sigmoid(u)),
           lambda u: nd.Geometric(probs=0.2 + 0.6 * jax.nn.sigmoid(u)), True),
    Family("poisson", lambda u: ppl.poisson(0.5 + _sp(u)), lambda u: nd.Poisson(0.5 + _sp(u)), True),
    Family("binomial", lambda u: ppl.binomial(5, jax.nn.sigmoid(u)),
           lambda u: nd.Binomial(5, probs=jax.nn.sigmoid(u)), True),
]
FAMILY = {f.name: f for f in FAMILIES}


def feature(v) -> jax.Array:
    """A bounded real summary of any choice value, used as the next input."""
    v = jnp.asarray(v)
    x = jnp.where(v, 1.0, -1.0) if v.dtype == jnp.bool_ else v.astype(jnp.result_type(float))
    return 1.5 * jnp.tanh(jnp.mean(x))


def numpyro_logp(dist, value) -> jax.Array:
    value = jnp.asarray(value)
    if value.dtype == jnp.bool_:
        value = value.astype(jnp.result_type(float))
    return jnp.sum(dist.log_prob(value))


# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Leaf:
    addr: str
    family: str
    dep: int  # index of an earlier node, or -1 for the argument
    shift: float


@dataclasses.dataclass(frozen=True)
class Call:
    addr: str
    sub: "Spec"
    dep: int
    shift: float


@dataclasses.dataclass(frozen=True)
class Spec:
    nodes: tuple

    def __repr__(self):
        return "Spec(" + ", ".join(_node_repr(n) for n in self.nodes) + ")"


def _node_repr(n):
    if isinstance(n, Leaf):
        return f"{n.addr}~{n.family}(in={n.dep}{n.shift:+.2f})"
    if isinstance(n, Call):
        return f"{n.addr}=call(in={n.dep}{n.shift:+.2f}){n.sub!r}"
    return repr(n)


_BUILT: dict = {}


def build(spec: Spec) -> ppl.GenerativeFunction:
    """The ``@gen`` function described by ``spec`` (one argument, a scalar)."""
    if spec in _BUILT:
        return _BUILT[spec]
    subs = [build(n.sub) if isinstance(n, Call) else None for n in spec.nodes]

    def program(a):
        feats = []
        for node, sub in zip(spec.nodes, subs):
            u = (a if node.dep < 0 else feats[node.dep]) + node.shift
            if isinstance(node, Leaf):
                v = FAMILY[node.family].ppl_call(u) @ node.addr
            else:
                v = sub(u) @ node.addr
            feats.append(feature(v))
        return feats[-1]

    program.__qualname__ = f"spec{len(_BUILT)}"
    g = ppl.gen(program)
    _BUILT[spec] = g
    return g


def reference(spec: Spec, values: dict, a) -> tuple[dict, jax.Array]:
    """Per-address numpyro log densities ``{path tuple: logp}`` and the retval,
    for a nested dict of values (as from ``ChoiceMap.to_dict()``)."""
    logps, feats = {}, []
    for node in spec.nodes:
        u = (a if node.dep < 0 else feats[node.dep]) + node.shift
        if isinstance(node, Leaf):
            v = values[node.addr]
            logps[(node.addr,)] = numpyro_logp(FAMILY[node.family].numpyro(u), v)
            feats.append(feature(v))
        else:
            sub_logps, ret = reference(node.sub, values[node.addr], u)
            logps.update({(node.addr, *p): lp for p, lp in sub_logps.items()})
            feats.append(feature(ret))
    return logps, feats[-1]


def addresses(spec: Spec) -> list[tuple]:
    out = []
    for node in spec.nodes:
        if isinstance(node, Leaf):
            out.append((node.addr,))
        else:
            out.extend((node.addr, *p) for p in addresses(node.sub))
    return out


@st.composite
def specs(draw, depth: int = 2, max_nodes: int = 4, families=None):
    names = families or [f.name for f in FAMILIES]
    n = draw(st.integers(1, max_nodes))
    nodes = []
    for i in range(n):
        addr = f"a{i}"
        dep = draw(st.integers(-1, i - 1))
        shift = draw(st.sampled_from([-0.5, 0.0, 0.3, 1.0]))
        if depth > 0 and draw(st.integers(0, 4)) == 0:
            nodes.append(Call(addr, draw(specs(depth - 1, max_nodes=3, families=families)), dep, shift))
        else:
            nodes.append(Leaf(addr, draw(st.sampled_from(names)), dep, shift))
    return Spec(tuple(nodes))


args = st.sampled_from([-1.0, 0.0, 0.4, 1.3])
seeds = st.integers(0, 2**31 - 1)


def subset(draw, items: list) -> list:
    """A hypothesis-chosen subset of ``items`` (order kept)."""
    keep = draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
    return [x for x, k in zip(items, keep) if k]


def choice_map_of(trace_choices: ppl.ChoiceMap, paths) -> ppl.ChoiceMap:
    """The choice map holding ``trace_choices`` at ``paths`` only."""
    return ppl.ChoiceMap.d({p: trace_choices[p] for p in paths})


def assert_close(a, b, rtol=1e-4, atol=1e-4, msg=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=msg)


def assert_choices_equal(c1: ppl.ChoiceMap, c2: ppl.ChoiceMap):
    a1, a2 = sorted(c1.addresses()), sorted(c2.addresses())
    assert a1 == a2, (a1, a2)
    for p in a1:
        np.testing.assert_array_equal(np.asarray(c1[p]), np.asarray(c2[p]), err_msg=str(p))
