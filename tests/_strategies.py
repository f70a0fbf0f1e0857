"""Random generative functions for property-based tests, with a reference density.

A *spec* describes a program: a list of nodes, each making one random choice
(a distribution, a nested ``@gen`` call, or a combinator) whose parameters are
a function of an earlier choice or of the program's scalar argument.
``build(spec)`` turns it into an ``@ppl.gen`` function; ``_reference.py``
walks the same spec over a plain nested dict of values and adds up numpyro
``log_prob``s, without going through any ppl interpreter. The two share only
the parameter maps below, so the reference checks addressing, nesting,
branching, scoring and weight bookkeeping independently of ppl's machinery.

Switches and conds may take their index from a random choice, branches may
share the address ``"sh"`` (made by some of them only), and with
``random_index=True`` branches also appear inside loops and other branches
(a traced index): see ``specs``.
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
    Family(
        "normal_vec",
        lambda u: ppl.normal(jnp.stack([u, -u, 0.5]), jnp.array([1.0, 0.5, 2.0])),
        lambda u: nd.Normal(jnp.stack([u, -u, 0.5]), jnp.array([1.0, 0.5, 2.0])),
    ),
    Family(
        "mv_normal",
        lambda u: ppl.mv_normal(jnp.stack([u, 1.0 - u]), _COV2),
        lambda u: nd.MultivariateNormal(jnp.stack([u, 1.0 - u]), _COV2),
    ),
    Family(
        "mv_normal_diag",
        lambda u: ppl.mv_normal_diag(jnp.stack([u, 2 * u]), jnp.array([0.5, 1.5])),
        lambda u: nd.Normal(jnp.stack([u, 2 * u]), jnp.array([0.5, 1.5])).to_event(1),
    ),
    Family("uniform", lambda u: ppl.uniform(-2.0, 3.0), lambda u: nd.Uniform(-2.0, 3.0)),
    Family("beta", lambda u: ppl.beta(1.0 + _sp(u), 2.0), lambda u: nd.Beta(1.0 + _sp(u), 2.0)),
    Family("gamma", lambda u: ppl.gamma(1.0 + _sp(u), 1.5), lambda u: nd.Gamma(1.0 + _sp(u), 1.5)),
    Family(
        "exponential",
        lambda u: ppl.exponential(0.5 + _sp(u)),
        lambda u: nd.Exponential(0.5 + _sp(u)),
    ),
    Family("laplace", lambda u: ppl.laplace(u, 0.8), lambda u: nd.Laplace(u, 0.8)),
    Family("logistic", lambda u: ppl.logistic(u, 0.6), lambda u: nd.Logistic(u, 0.6)),
    Family("cauchy", lambda u: ppl.cauchy(u, 1.0), lambda u: nd.Cauchy(u, 1.0)),
    Family("student_t", lambda u: ppl.student_t(3.0, u, 1.0), lambda u: nd.StudentT(3.0, u, 1.0)),
    Family("lognormal", lambda u: ppl.lognormal(u, 0.5), lambda u: nd.LogNormal(u, 0.5)),
    Family(
        "dirichlet",
        lambda u: ppl.dirichlet(jnp.stack([1.0, 1.0 + _sp(u), 2.0])),
        lambda u: nd.Dirichlet(jnp.stack([1.0, 1.0 + _sp(u), 2.0])),
    ),
    Family(
        "flip",
        lambda u: ppl.flip(jax.nn.sigmoid(u)),
        lambda u: nd.Bernoulli(probs=jax.nn.sigmoid(u)),
        True,
    ),
    Family("flip_logits", lambda u: ppl.flip(logits=u), lambda u: nd.Bernoulli(logits=u), True),
    Family(
        "categorical",
        lambda u: ppl.categorical(jax.nn.softmax(jnp.stack([u, 0.0, -u]))),
        lambda u: nd.Categorical(probs=jax.nn.softmax(jnp.stack([u, 0.0, -u]))),
        True,
    ),
    Family(
        "geometric",
        lambda u: ppl.geometric(0.2 + 0.6 * jax.nn.sigmoid(u)),
        lambda u: nd.Geometric(probs=0.2 + 0.6 * jax.nn.sigmoid(u)),
        True,
    ),
    Family(
        "poisson", lambda u: ppl.poisson(0.5 + _sp(u)), lambda u: nd.Poisson(0.5 + _sp(u)), True
    ),
    Family(
        "binomial",
        lambda u: ppl.binomial(5, jax.nn.sigmoid(u)),
        lambda u: nd.Binomial(5, probs=jax.nn.sigmoid(u)),
        True,
    ),
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
    """``family(u) @ addr``."""

    addr: str
    family: str
    dep: int  # index of an earlier node, or -1 for the argument
    shift: float


@dataclasses.dataclass(frozen=True)
class Call:
    """``build(sub)(u) @ addr``."""

    addr: str
    sub: "Spec"
    dep: int
    shift: float


@dataclasses.dataclass(frozen=True)
class Repeat:
    """``ppl.repeat(build(sub), n)(u) @ addr`` (mapped=False) or
    ``ppl.vmap(build(sub), subsample_of=subsample_of)(u + OFFSETS[:n]) @ addr``
    (mapped=True; its densities scaled by ``subsample_of / n`` when given)."""

    addr: str
    sub: "Spec"
    dep: int
    shift: float
    n: int
    mapped: bool
    subsample_of: int | None = None


@dataclasses.dataclass(frozen=True)
class Scan:
    """``ppl.scan(step, length=n)(u, XS[:n]) @ addr`` where
    ``step(c, x)`` makes ``build(sub)(c + x) @ "body"`` and returns it twice."""

    addr: str
    sub: "Spec"
    dep: int
    shift: float
    n: int


@dataclasses.dataclass(frozen=True)
class Switch:
    """``ppl.switch(*branches)(index, u) @ addr`` or, with ``cond``,
    ``ppl.cond(branches[1], branches[0])(pred, u) @ addr``. The index is
    ``switch_index(u)`` (the predicate ``floor(u + 0.25)``, a float) or, with ``on >= 0``,
    the value of the discrete choice of node ``on`` (mod the number of branches;
    the predicate: the value itself). Branches' addresses are disjoint but for
    ``"sh"``, which some branches may make with one family."""

    addr: str
    branches: tuple
    dep: int
    shift: float
    on: int = -1
    cond: bool = False


@dataclasses.dataclass(frozen=True)
class Mix:
    """``ppl.mix(*components)(stack([u, -u, ...]), u) @ addr``: choices at
    ``(addr, "component")`` and ``(addr, "value", ...)``."""

    addr: str
    branches: tuple
    dep: int
    shift: float


@dataclasses.dataclass(frozen=True)
class Spec:
    nodes: tuple

    def __repr__(self):
        return "Spec(" + ", ".join(_node_repr(n) for n in self.nodes) + ")"


def _node_repr(n):
    head = f"in={n.dep}{n.shift:+.2f}"
    if isinstance(n, Leaf):
        return f"{n.addr}~{n.family}({head})"
    if isinstance(n, Call):
        return f"{n.addr}=call({head}){n.sub!r}"
    if isinstance(n, Repeat):
        of = "" if n.subsample_of is None else f" of {n.subsample_of}"
        return f"{n.addr}={'vmap' if n.mapped else 'repeat'}[{n.n}{of}]({head}){n.sub!r}"
    if isinstance(n, Scan):
        return f"{n.addr}=scan[{n.n}]({head}){n.sub!r}"
    kind = (
        "mix"
        if isinstance(n, Mix)
        else ("cond" if n.cond else "switch") + (f"@{n.on}" if n.on >= 0 else "")
    )
    return f"{n.addr}={kind}({head})[" + " | ".join(map(repr, n.branches)) + "]"


OFFSETS = jnp.array([0.0, 0.4, -0.6, 1.1])
XS = jnp.array([-0.3, 0.2, 0.5, -0.1])


# Off the grid of sums of arguments and shifts (multiples of 0.1), so float
# rounding cannot put an input on a threshold.
THRESHOLDS = (-0.15, 0.65)
COND_OFFSET = 0.25  # a cond's predicate is floor(u + COND_OFFSET)


def switch_index(u, n_branches: int):
    return sum(jnp.asarray(u > t, jnp.int32) for t in THRESHOLDS[: n_branches - 1])


def mix_logits(u, n_branches: int):
    return jnp.stack([u, -u, 0.5 * u][:n_branches])


def branch_argument(node: Switch, u, on_value):
    """What the program passes to the switch (an index) or cond (a predicate)."""
    if node.on >= 0:
        return on_value if node.cond else jnp.asarray(on_value, jnp.int32) % len(node.branches)
    return jnp.floor(u + COND_OFFSET) if node.cond else switch_index(u, len(node.branches))


_BUILT: dict = {}


def build(spec: Spec) -> ppl.GenerativeFunction:
    """The ``@gen`` function described by ``spec`` (one argument, a scalar)."""
    if spec in _BUILT:
        return _BUILT[spec]
    makers = [_maker(node) for node in spec.nodes]

    def program(a):
        feats, vals = [], []
        for node, make in zip(spec.nodes, makers):
            u = (a if node.dep < 0 else feats[node.dep]) + node.shift
            v = make(u, vals) @ node.addr
            vals.append(v)
            feats.append(feature(v[0] if isinstance(node, Scan) else v))
        return feats[-1]

    program.__qualname__ = f"spec{len(_BUILT)}"
    g = ppl.gen(program)
    _BUILT[spec] = g
    return g


def _maker(node):
    """``(u, earlier values) -> invocation`` for one node (combinators are built once, here)."""
    if isinstance(node, Leaf):
        return lambda u, _: FAMILY[node.family].ppl_call(u)
    if isinstance(node, Call):
        sub = build(node.sub)
        return lambda u, _: sub(u)
    if isinstance(node, Repeat):
        sub = build(node.sub)
        if node.mapped:
            comb = ppl.vmap(sub, subsample_of=node.subsample_of)
            return lambda u, _: comb(u + OFFSETS[: node.n])
        comb = ppl.repeat(sub, node.n)
        return lambda u, _: comb(u)
    if isinstance(node, Scan):
        sub = build(node.sub)

        def step(c, x):
            r = sub(c + x) @ "body"
            return r, r

        step.__qualname__ = f"step_of_{sub.name}"
        comb = ppl.scan(ppl.gen(step), length=node.n)
        return lambda u, _: comb(u, XS[: node.n])
    fns = [build(b) for b in node.branches]
    if isinstance(node, Switch):
        comb = ppl.cond(fns[1], fns[0]) if node.cond else ppl.switch(*fns)
        return lambda u, vals: comb(
            branch_argument(node, u, vals[node.on] if node.on >= 0 else None), u
        )
    comb = ppl.mix(*fns)
    return lambda u, _: comb(mix_logits(u, len(fns)), u)


def _prefixed(spec: Spec, prefix: str) -> Spec:
    """The same program with its top-level addresses renamed ``prefix + addr``."""
    return Spec(tuple(dataclasses.replace(n, addr=prefix + n.addr) for n in spec.nodes))


DISCRETE_INDEX = ("flip", "flip_logits", "categorical")


@st.composite
def specs(
    draw,
    depth: int = 2,
    max_nodes: int = 4,
    families=None,
    combinators: bool = True,
    det: bool = True,
    plain: bool = True,
    branches: bool = True,
    random_index: bool = False,
    subsample: bool = False,
):
    """Random programs. ``det``: the argument is a deterministic function of the
    top-level argument (so a switch on it picks the same branch in every run
    with the same arguments); ``plain``: not inside a vmap/scan body (where a
    switch index would be traced, not known); ``branches``: switch and mix
    allowed (not inside another switch/mix). ``random_index``: switch and cond
    anywhere (inside loops and branches too), their index possibly a random
    choice of the program (for laws that expect -inf where a constrained
    address is not made). ``subsample``: a vmap may be a subsample
    (``subsample_of``), its densities scaled."""
    names = families or [f.name for f in FAMILIES]
    n = draw(st.integers(1, max_nodes))
    nodes = []
    kinds = ["leaf"] * 6
    if depth > 0:
        kinds += ["call"]
        if combinators:
            kinds += ["repeat", "vmap", "scan"]
            if random_index:
                kinds += ["mix", "switch", "cond"]
            elif plain and branches:
                kinds += ["mix"] + (["switch", "cond"] if det else [])
    for i in range(n):
        addr = f"a{i}"
        kind = draw(st.sampled_from(kinds))
        dep = (
            -1 if kind in ("switch", "cond") and not random_index else draw(st.integers(-1, i - 1))
        )
        shift = draw(st.sampled_from([-0.5, 0.0, 0.3, 1.0]))
        sub_det = det and dep == -1

        def sub(**kw):
            opts = dict(
                depth=depth - 1,
                max_nodes=2,
                families=families,
                combinators=combinators,
                det=sub_det,
                plain=plain,
                branches=branches,
                random_index=random_index,
                subsample=subsample,
            )
            opts.update(kw)
            return draw(specs(**opts))

        if kind == "leaf":
            nodes.append(Leaf(addr, draw(st.sampled_from(names)), dep, shift))
        elif kind == "call":
            nodes.append(Call(addr, sub(), dep, shift))
        elif kind in ("repeat", "vmap"):
            n_el = draw(st.integers(1, 3))
            of = None
            if subsample and kind == "vmap":
                of = draw(st.sampled_from([None, n_el, n_el + 2]))
            nodes.append(Repeat(addr, sub(plain=False), dep, shift, n_el, kind == "vmap", of))
        elif kind == "scan":
            nodes.append(
                Scan(addr, sub(plain=False, det=False), dep, shift, draw(st.integers(1, 3)))
            )
        else:
            k = 2 if kind == "cond" else draw(st.integers(2, 3))
            bs = [_prefixed(sub(branches=False), f"b{j}") for j in range(k)]
            if draw(st.booleans()):  # "sh": made by some branches, with one family
                fam, makers = draw(st.sampled_from(names)), subset(draw, list(range(k))) or [0]
                for j in makers:
                    bs[j] = Spec(
                        (
                            *bs[j].nodes,
                            Leaf("sh", fam, draw(st.integers(-1, len(bs[j].nodes) - 1)), 0.2),
                        )
                    )
            if kind == "mix":
                nodes.append(Mix(addr, tuple(bs), dep, shift))
                continue
            ons = [
                j for j, m in enumerate(nodes) if isinstance(m, Leaf) and m.family in DISCRETE_INDEX
            ]
            on = draw(st.sampled_from([*ons, -1])) if random_index and ons else -1
            nodes.append(Switch(addr, tuple(bs), dep, shift, on, kind == "cond"))
    return Spec(tuple(nodes))


def has_combinator(spec: Spec) -> bool:
    return any(
        not isinstance(n, (Leaf, Call)) or (isinstance(n, Call) and has_combinator(n.sub))
        for n in spec.nodes
    )


static_specs = specs(combinators=False)
# Families whose samplers compile quickly: programs with combinators compile
# their loops and branches afresh for every new program.
CHEAP = [
    "normal",
    "normal_vec",
    "mv_normal_diag",
    "uniform",
    "exponential",
    "laplace",
    "logistic",
    "lognormal",
    "flip",
    "flip_logits",
    "categorical",
]
combinator_specs = specs(max_nodes=3, families=CHEAP, subsample=True).filter(has_combinator)

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
