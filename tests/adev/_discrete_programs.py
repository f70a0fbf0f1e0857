"""Random programs around finite discrete choices, with exact answers by enumeration.

Three classes, each with a plain-JAX/numpy exact answer that goes through no
ppl interpreter:

* ``sum_out_cases``: ``_strategies`` specs (built by ``_strategies.build``,
  scored by ``_reference``) mixing flips, categoricals and binomials with
  continuous choices, at the top level, in nested calls, and in
  ``ppl.repeat`` / ``ppl.vmap`` / ``ppl.scan`` bodies, with a random subset of
  the discrete choices to sum out. ``brute_force`` gives the reference log
  joint of every joint assignment of the summed choices (one ``jax.vmap`` of
  ``_reference.reference_slots``).
* ``rb_specs``: a model and a guide over the same latent choices (flips,
  categoricals, normals), some of the model's choices observed instead.
  Discrete parameters depend only on discrete choices and normal means are
  affine in earlier choices, so ``log p - log q`` is quadratic in the normals
  and ``exact_elbo`` (enumeration over the discrete latents, 5-point
  Gauss-Hermite over the normals, exact for polynomials of degree <= 9) is the
  exact ELBO.
* ``loop_specs``: an expectation over a ``ppl.scan`` (a carry fed by the
  step's flip or categorical) or a ``ppl.repeat`` / ``ppl.vmap`` of discrete
  choices; ``loop_exact`` sums over every path.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import ppl

from _reference import layout, reference_slots
from _strategies import FAMILY, OFFSETS, XS, Call, Leaf, Repeat, Scan, Spec, build

sig = jax.nn.sigmoid

# ---------------------------------------------------------------------------
# 1. sum_out
# ---------------------------------------------------------------------------

SUPPORT = {"flip": 2, "flip_logits": 2, "categorical": 3, "binomial": 6}
SUMMABLE = tuple(SUPPORT)
CONTINUOUS = ("normal", "normal_vec", "laplace")
MAX_BRUTE = 1500  # joint assignments enumerated by the reference


@st.composite
def _leaves(draw, n_max: int, families, n_min: int = 1):
    n = draw(st.integers(n_min, n_max))
    return Spec(
        tuple(
            Leaf(
                f"a{i}",
                draw(st.sampled_from(families)),
                draw(st.integers(-1, i - 1)),
                draw(st.sampled_from([-0.5, 0.0, 0.3, 1.0])),
            )
            for i in range(n)
        )
    )


def _value_depends(node, summed: set, prefix=()) -> bool:
    """Whether the value a node passes on (its return) depends on a summed choice."""
    here = (*prefix, node.addr)
    if isinstance(node, Leaf):
        return here in summed
    inner = (*here, "body") if isinstance(node, Scan) else here
    return _value_depends(node.sub.nodes[-1], summed, inner)


@dataclasses.dataclass(frozen=True)
class SumOutCase:
    spec: Spec
    summed: tuple  # paths of the summed choices
    free: tuple  # top-level continuous leaves left free in a partial generate
    refused_free: tuple  # top-level continuous leaves whose prior depends on a summed choice
    arg: float
    seed: int

    def __repr__(self):
        return (
            f"SumOutCase({self.spec!r}, summed={self.summed}, free={self.free}, "
            f"refused_free={self.refused_free}, arg={self.arg}, seed={self.seed})"
        )


def n_assignments(spec: Spec, summed) -> int:
    lay = layout(spec)
    return int(np.prod([SUPPORT[lay[p][0]] ** int(np.prod(lay[p][1])) for p in summed]))


@st.composite
def sum_out_cases(draw, max_nodes: int = 4):
    """A program that ``ppl.sum_out`` supports, and which of its discrete choices to sum.

    Loops (repeat, vmap, scan) are at the top level and make leaves only, the
    last one continuous: the program reads every node's return (the rest of
    the program must not read what depends on a separately summed call's
    summed choices, which sum_out refuses, as documented). So a scan's carry
    is a function of its step's last, kept choice."""
    n = draw(st.integers(2, max_nodes))
    leaf_fams = SUMMABLE + CONTINUOUS
    nodes: list = []

    def loop_body():
        body = draw(_leaves(2, leaf_fams))
        last = body.nodes[-1]
        if last.family in SUPPORT:
            last = dataclasses.replace(last, family=draw(st.sampled_from(CONTINUOUS)))
        return Spec((*body.nodes[:-1], last))

    for i in range(n):
        kind = draw(st.sampled_from(["leaf", "leaf", "leaf", "call", "repeat", "vmap", "scan"]))
        shift = draw(st.sampled_from([-0.5, 0.0, 0.3, 1.0]))
        dep = draw(st.integers(-1, i - 1))
        if kind == "leaf":
            nodes.append(Leaf(f"a{i}", draw(st.sampled_from(leaf_fams)), dep, shift))
        elif kind == "call":
            nodes.append(Call(f"a{i}", draw(_leaves(3, leaf_fams)), dep, shift))
        elif kind in ("repeat", "vmap"):
            n_el = draw(st.integers(1, 3))
            nodes.append(Repeat(f"a{i}", loop_body(), dep, shift, n_el, kind == "vmap"))
        else:
            nodes.append(Scan(f"a{i}", loop_body(), dep, shift, draw(st.integers(1, 3))))
    spec = Spec(tuple(nodes))
    discrete = [p for p, (fam, _) in layout(spec).items() if fam in SUPPORT]
    assume(discrete)
    summed = [p for p in discrete if draw(st.booleans())] or [discrete[0]]
    summed_set = set(summed)
    # Which nodes' values vary with the summed choices, as ppl decides it (by
    # batching): a scan's carry does whenever its initial value does.
    tainted: list[bool] = []
    for node in spec.nodes:
        reads = node.dep >= 0 and tainted[node.dep]
        tainted.append(_value_depends(node, summed_set) or (isinstance(node, Scan) and reads))
    free, refused = [], []
    for node in spec.nodes:
        if isinstance(node, Leaf) and node.family in CONTINUOUS:
            reads = node.dep >= 0 and tainted[node.dep]
            (refused if reads else free).append((node.addr,))
    free = [p for p in free if draw(st.booleans())]
    arg = draw(st.sampled_from([-1.0, 0.0, 0.4, 1.3]))
    return SumOutCase(
        spec, tuple(summed), tuple(free), tuple(refused), arg, draw(st.integers(0, 2**20))
    )


def random_values(spec: Spec, seed: int) -> dict:
    """A value for every choice of ``spec`` (none has a branch: all are made), drawn
    from its family at input 0, as a nested dict of numpy arrays."""
    out: dict = {}
    key = jax.random.key(seed)
    for j, (path, (family, stack)) in enumerate(sorted(layout(spec).items())):
        v = np.asarray(
            FAMILY[family].numpyro(jnp.asarray(0.0)).sample(jax.random.fold_in(key, j), stack)
        )
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = v.astype(bool) if family.startswith("flip") else v
    return out


def to_choice_map(values: dict, skip=()) -> ppl.ChoiceMap:
    """The choice map of a nested dict of values, without the paths in ``skip``."""
    flat = {}

    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, (*prefix, k))
            elif (*prefix, k) not in set(skip):
                flat[(*prefix, k)] = jnp.asarray(v)

    walk(values, ())
    return ppl.ChoiceMap.d(flat)


def _get(d: dict, path) -> np.ndarray:
    for k in path[:-1]:
        d = d[k]
    return np.asarray(d[path[-1]])


def _set(d: dict, path, v) -> dict:
    """A copy of the nested dict ``d`` with ``v`` at ``path``."""
    out = dict(d)
    if len(path) == 1:
        out[path[0]] = v
    else:
        out[path[0]] = _set(d[path[0]], path[1:], v)
    return out


def assignments(spec: Spec, summed, dtypes: dict) -> dict:
    """Every joint value of the summed choices: ``{path: array (A, *stack)}``,
    in mixed-radix order (the first path's first slot varies slowest)."""
    lay = layout(spec)
    positions = []
    for p in summed:
        stack = lay[p][1]
        positions += [(p, idx) for idx in np.ndindex(*stack)] if stack else [(p, ())]
    combos = list(itertools.product(*[range(SUPPORT[lay[p][0]]) for p, _ in positions]))
    out = {p: np.zeros((len(combos), *lay[p][1]), np.int64) for p in summed}
    for a, combo in enumerate(combos):
        for (p, idx), v in zip(positions, combo):
            out[p][(a, *idx)] = v
    return {p: jnp.asarray(v.astype(dtypes[p])) for p, v in out.items()}


def assignment_index(spec: Spec, summed, values: dict) -> np.ndarray:
    """The mixed-radix index (as in ``assignments``) of stacked values ``{path: (N, *stack)}``."""
    lay = layout(spec)
    index = 0
    for p in summed:
        k = SUPPORT[lay[p][0]]
        v = np.asarray(values[p]).astype(np.int64).reshape(len(values[p]), -1)
        for j in range(v.shape[1]):
            index = index * k + v[:, j]
    return np.asarray(index)


def brute_force(spec: Spec, values: dict, summed, a) -> tuple[jax.Array, jax.Array]:
    """The reference log joint of every assignment of the summed choices (the
    other choices from the nested dict ``values``), and their logsumexp."""
    values = jax.tree.map(np.asarray, values)  # numpy: indexing them stays concrete
    dtypes = {p: _get(values, p).dtype for p in summed}
    assign = assignments(spec, summed, dtypes)

    def one(assigned):
        vals = values
        for p in summed:
            vals = _set(vals, p, assigned[p])
        slots, _ = reference_slots(spec, vals, a)
        return sum(jnp.asarray(v, jnp.float32) for v in slots.values())

    lps = jax.jit(jax.vmap(one))(assign)
    return lps, logsumexp(lps)


def free_logp(spec: Spec, values: dict, free, a) -> jax.Array:
    """The reference log prior of the free top-level leaves at these values."""
    slots, _ = reference_slots(spec, values, a)
    return jnp.sum(
        jnp.stack([jnp.float32(0.0), *(lp for (p, _), lp in slots.items() if p in free)])
    )


# ---------------------------------------------------------------------------
# 2. Rao-Blackwellized REINFORCE: model / guide pairs
# ---------------------------------------------------------------------------

CAT_VALUES = jnp.array([-1.0, 0.5, 2.0])
GUIDE_SCALE = 0.8
MODEL_SCALE = 1.0


def real(kind, v):
    """A real summary of a choice, read by later choices."""
    if kind == "flip":
        return jnp.where(v, 1.0, -1.0)
    if kind == "cat":
        return CAT_VALUES[v]
    return v


@dataclasses.dataclass(frozen=True)
class RBNode:
    kind: str  # "flip" | "cat" | "normal"
    observed: object  # None (a latent, in the guide) or the observed value
    m_dep: int  # the model's parameter reads node m_dep (-1: none)
    m_coef: float
    m_shift: float
    g_dep: int  # the guide's parameter reads latent node g_dep (-1: none)
    g_coef: float


@dataclasses.dataclass(frozen=True)
class RBSpec:
    nodes: tuple

    @property
    def latent(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.observed is None]

    def __repr__(self):
        parts = []
        for i, n in enumerate(self.nodes):
            m = (
                f"{n.m_shift:+.1f}{n.m_coef:+.1f}*x{n.m_dep}"
                if n.m_dep >= 0
                else f"{n.m_shift:+.1f}"
            )
            if n.observed is None:
                g = f"th+{n.g_coef:+.1f}*x{n.g_dep}" if n.g_dep >= 0 else "th"
                parts.append(f"x{i}~{n.kind}(p:{m}; q:{g})")
            else:
                parts.append(f"x{i}={n.observed!r}~{n.kind}({m})")
        return "RBSpec(" + ", ".join(parts) + ")"


def _dist(kind, u, scale=MODEL_SCALE):
    if kind == "flip":
        return ppl.flip(sig(u))
    if kind == "cat":
        return ppl.categorical(logits=jnp.stack([u, -u, jnp.asarray(0.3, u.dtype)]))
    return ppl.normal(u, scale)


def _logpdf(kind, u, v, scale=MODEL_SCALE):
    """log density of ``_dist(kind, u, scale)`` at ``v`` in plain JAX (broadcasting)."""
    if kind == "flip":
        return jnp.where(v, jax.nn.log_sigmoid(u), jax.nn.log_sigmoid(-u))
    if kind == "cat":
        logits = jnp.stack(jnp.broadcast_arrays(u, -u, jnp.full_like(u, 0.3)), -1)
        v = jnp.broadcast_to(jnp.asarray(v), jnp.shape(u)).astype(jnp.int32)
        return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), v[..., None], -1)[..., 0]
    return norm.logpdf(v, u, scale)


@st.composite
def rb_specs(draw):
    """At most 4 discrete and 2 normal latents, at least one discrete latent."""
    n = draw(st.integers(2, 5))
    coef = st.sampled_from([-1.0, -0.5, 0.5, 1.0])
    nodes: list[RBNode] = []
    n_disc = n_norm = 0
    for i in range(n):
        kinds = ["flip", "cat", "normal"] if n_norm < 2 else ["flip", "cat"]
        kind = draw(st.sampled_from(kinds))
        observed = None
        if draw(st.integers(0, 3)) == 0 or (kind != "normal" and n_disc >= 4):
            observed = {
                "flip": draw(st.booleans()),
                "cat": draw(st.integers(0, 2)),
                "normal": draw(st.sampled_from([-0.7, 0.4, 1.2])),
            }[kind]
        elif kind == "normal":
            n_norm += 1
        else:
            n_disc += 1
        # discrete parameters read discrete choices only (log p stays quadratic in the normals)
        m_deps = [j for j, m in enumerate(nodes) if kind == "normal" or m.kind != "normal"]
        g_deps = [j for j, m in enumerate(nodes) if m.observed is None and m.kind != "normal"]
        nodes.append(
            RBNode(
                kind,
                observed,
                draw(st.sampled_from([-1, *m_deps])),
                draw(coef),
                draw(st.sampled_from([-0.5, 0.0, 0.4])),
                draw(st.sampled_from([-1, *g_deps])) if observed is None else -1,
                draw(coef),
            )
        )
    spec = RBSpec(tuple(nodes))
    if not any(spec.nodes[i].kind != "normal" for i in spec.latent):
        return draw(rb_specs())
    return spec


def rb_model(spec: RBSpec):
    @ppl.gen
    def model():
        xs = []
        for i, n in enumerate(spec.nodes):
            u = n.m_shift + (
                n.m_coef * real(spec.nodes[n.m_dep].kind, xs[n.m_dep]) if n.m_dep >= 0 else 0.0
            )
            xs.append(_dist(n.kind, jnp.asarray(u, jnp.float32)) @ f"x{i}")

    return model


def rb_guide(spec: RBSpec):
    @ppl.gen
    def guide(theta):
        xs = {}
        for k, i in enumerate(spec.latent):
            n = spec.nodes[i]
            u = theta[k] + (
                n.g_coef * real(spec.nodes[n.g_dep].kind, xs[n.g_dep]) if n.g_dep >= 0 else 0.0
            )
            xs[i] = _dist(n.kind, u, GUIDE_SCALE) @ f"x{i}"

    return guide


def rb_observations(spec: RBSpec) -> ppl.ChoiceMap:
    return ppl.ChoiceMap.d(
        {
            f"x{i}": jnp.asarray(n.observed)
            for i, n in enumerate(spec.nodes)
            if n.observed is not None
        }
    )


def exact_elbo(spec: RBSpec, theta):
    """E_q[log p(x, obs) - log q(x)]: a sum over every discrete latent value and a
    5-point Gauss-Hermite rule over each normal latent (exact: the integrand is a
    quadratic polynomial in the normals), vectorised over the grid."""
    gh_x, gh_w = np.polynomial.hermite_e.hermegauss(5)
    gh_w = gh_w / np.sqrt(2 * np.pi)
    axes = []
    for i in spec.latent:
        kind = spec.nodes[i].kind
        axes.append(range(5) if kind == "normal" else range(2 if kind == "flip" else 3))
    grid = np.array(list(itertools.product(*axes)))  # (G, n_latent)
    col = {i: grid[:, k] for k, i in enumerate(spec.latent)}
    values, logq, log_gh = {}, jnp.zeros(len(grid)), jnp.zeros(len(grid))
    for k, i in enumerate(spec.latent):  # the guide, in order; normals by their nodes
        n = spec.nodes[i]
        u = theta[k] + (
            n.g_coef * real(spec.nodes[n.g_dep].kind, values[n.g_dep]) if n.g_dep >= 0 else 0.0
        )
        u = jnp.broadcast_to(u, (len(grid),))
        if n.kind == "normal":
            values[i] = u + GUIDE_SCALE * jnp.asarray(gh_x)[col[i]]
            log_gh = log_gh + jnp.log(jnp.asarray(gh_w))[col[i]]
        else:
            values[i] = jnp.asarray(col[i] == 1) if n.kind == "flip" else jnp.asarray(col[i])
            logq = logq + _logpdf(n.kind, u, values[i], GUIDE_SCALE)
    normal_logq = sum(
        (
            _logpdf(
                "normal",
                values[i] - GUIDE_SCALE * jnp.asarray(gh_x)[col[i]],
                values[i],
                GUIDE_SCALE,
            )
            for i in spec.latent
            if spec.nodes[i].kind == "normal"
        ),
        jnp.zeros(len(grid)),
    )
    logp = jnp.zeros(len(grid))
    for i, n in enumerate(spec.nodes):
        v = values[i] if n.observed is None else jnp.asarray(n.observed)
        if n.observed is not None:
            values[i] = v
        u = n.m_shift + (
            n.m_coef * real(spec.nodes[n.m_dep].kind, values[n.m_dep]) if n.m_dep >= 0 else 0.0
        )
        logp = logp + _logpdf(
            n.kind, jnp.broadcast_to(jnp.asarray(u, jnp.float32), (len(grid),)), v
        )
    # the weight of a grid point: q of its discrete values times the Gauss-Hermite weights
    weight = jnp.exp(logq + log_gh)
    return jnp.sum(weight * (logp - logq - normal_logq))


# ---------------------------------------------------------------------------
# 3. Loops around discrete choices
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    loop: str  # "scan" | "repeat" | "vmap"
    kind: str  # "flip" | "cat"
    n: int  # length (2-4)
    a: float  # the choice's parameter: a * theta (+ c * carry for scan, + offset / xs)
    c: float
    decay: float  # scan: carry' = decay * carry + real(b)
    cost: float  # add_cost(cost * real(b) * carry) in the scan step
    w_sq: float  # the program returns w_sq * total^2 + w_lin * total + w_th * theta
    w_lin: float
    w_th: float
    wrap: str  # how the choice gets reinforce: "default" | "call_site" | "policy" | "baseline"
    rao_blackwell: bool
    # The choice feeds only costs added inside the body, not its outputs (where enum
    # and mvd sum it against the rest of the body)
    local: bool = False


loop_specs = st.builds(
    LoopSpec,
    loop=st.sampled_from(["scan", "scan", "repeat", "vmap"]),
    kind=st.sampled_from(["flip", "cat"]),
    n=st.integers(2, 4),
    a=st.sampled_from([-1.0, -0.5, 0.5, 1.0]),
    c=st.sampled_from([-0.5, 0.0, 0.5, 1.0]),
    decay=st.sampled_from([0.0, 0.5, 1.0]),
    cost=st.sampled_from([0.0, 0.0, 1.0]),
    w_sq=st.sampled_from([0.0, 0.5, 1.0]),
    w_lin=st.sampled_from([-1.0, 1.0, 2.0]),
    w_th=st.sampled_from([0.0, 1.0]),
    wrap=st.sampled_from(["default", "call_site", "policy", "baseline"]),
    rao_blackwell=st.booleans(),
    local=st.booleans(),
)

LOOP_ADDRESS = ("loop", "b")


def _loop_u(spec: LoopSpec, theta, t, carry):
    if spec.loop == "scan":
        return spec.a * theta + spec.c * carry + XS[t]
    if spec.loop == "vmap":
        return spec.a * theta + OFFSETS[t]
    return spec.a * theta


def loop_program(spec: LoopSpec, strategy=None):
    """The expectation program of ``spec``; with ``strategy``, the policy gives it to
    the loop's choice (else per ``spec.wrap``)."""

    def choice(u):
        d = (
            (lambda u: ppl.flip(sig(u)))
            if spec.kind == "flip"
            else (lambda u: ppl.categorical(logits=jnp.stack([u, -u, jnp.zeros_like(u)])))
        )
        if spec.wrap == "call_site" and strategy is None:
            dist = ppl.flip if spec.kind == "flip" else ppl.categorical
            if spec.kind == "flip":
                return ppl.reinforce(dist)(sig(u))
            return ppl.reinforce(dist)(logits=jnp.stack([u, -u, jnp.zeros_like(u)]))
        if spec.wrap == "baseline" and strategy is None:
            if spec.kind == "flip":
                return ppl.reinforce(ppl.flip, baseline=0.5)(sig(u))
            return ppl.reinforce(ppl.categorical, baseline=0.5)(
                logits=jnp.stack([u, -u, jnp.zeros_like(u)])
            )
        return d(u)

    if spec.loop == "scan":

        @ppl.gen
        def step(carry, x):
            b = choice(spec.a * x[0] + spec.c * carry + x[1]) @ "b"
            r = real(spec.kind, b)
            if spec.local:
                ppl.add_cost(_local_cost(spec, r, carry))
                return spec.decay * carry + x[1], carry
            if spec.cost:
                ppl.add_cost(spec.cost * r * carry)
            return spec.decay * carry + r, r

        @ppl.expectation
        def f(theta):
            xs = jnp.stack([jnp.full(spec.n, theta), XS[: spec.n]], -1)
            carry, ys = ppl.scan(step, length=spec.n)(jnp.asarray(0.0), xs) @ "loop"
            total = jnp.sum(ys) + carry
            return spec.w_sq * total**2 + spec.w_lin * total + spec.w_th * theta

    else:

        @ppl.gen
        def element(u):
            r = real(spec.kind, choice(u) @ "b")
            if spec.local:
                ppl.add_cost(_local_cost(spec, r, u))
                return u
            return r

        comb = ppl.vmap(element) if spec.loop == "vmap" else ppl.repeat(element, spec.n)

        @ppl.expectation
        def f(theta):
            us = spec.a * theta + (OFFSETS[: spec.n] if spec.loop == "vmap" else 0.0)
            ys = comb(us) @ "loop"
            total = jnp.sum(ys)
            return spec.w_sq * total**2 + spec.w_lin * total + spec.w_th * theta

    f = f.with_rao_blackwell(spec.rao_blackwell)
    if strategy is not None:
        return ppl.adev(f, {LOOP_ADDRESS: strategy})
    if spec.wrap == "policy":
        return ppl.adev(f, {LOOP_ADDRESS: ppl.reinforce})
    return f


def _local_cost(spec: LoopSpec, r, other):
    """The cost a local choice feeds: ``r`` its real value, ``other`` the carry or
    the element's parameter."""
    return (spec.cost or 1.0) * r * (1.0 + other) + spec.w_sq * r**2


def loop_exact(spec: LoopSpec, theta):
    """The expected value of ``loop_program(spec)`` by a sum over every path."""
    k = 2 if spec.kind == "flip" else 3
    total_e = 0.0
    for path in itertools.product(range(k), repeat=spec.n):
        logp, carry, ys, cost = 0.0, 0.0, 0.0, 0.0
        for t, v in enumerate(path):
            u = _loop_u(spec, theta, t, carry)
            value = (v == 1) if spec.kind == "flip" else v
            if spec.kind == "flip":
                logp = logp + _logpdf("flip", u, value)
            else:
                logp = logp + jax.nn.log_softmax(jnp.stack([u, -u, jnp.zeros_like(u)]))[v]
            r = real(spec.kind, jnp.asarray(value))
            if spec.local:
                cost = cost + _local_cost(spec, r, carry if spec.loop == "scan" else u)
                ys = ys + (carry if spec.loop == "scan" else u)
                carry = spec.decay * carry + XS[t] if spec.loop == "scan" else carry
                continue
            if spec.loop == "scan":
                cost = cost + spec.cost * r * carry
                carry = spec.decay * carry + r
            ys = ys + r
        total = ys + carry
        value = spec.w_sq * total**2 + spec.w_lin * total + spec.w_th * theta + cost
        total_e = total_e + jnp.exp(logp) * value
    return total_e


# ---------------------------------------------------------------------------
# 1b. sum_out of a ppl.scan whose carry is its step's summed choice (an HMM)
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChainCase:
    """``ppl.sum_out(ppl.scan(step, length=n), summed)`` called with ``(arg, XS[:n])``,
    where ``step(c, x)`` makes ``build(body)(c + x) @ "body"`` and returns it twice
    (as a ``_strategies.Scan`` node does); the body's last choice is summed, so
    the carry is a function of it: the forward recursion runs over a chain."""

    body: Spec
    n: int
    summed: tuple  # paths inside the step, under "body"
    arg: float
    seed: int

    @property
    def spec(self) -> Spec:
        """The same chain as a one-node ``_strategies`` spec, for ``_reference``."""
        return Spec((Scan("s", self.body, -1, 0.0, self.n),))

    @property
    def spec_summed(self) -> tuple:
        return tuple(("s", *p) for p in self.summed)


@st.composite
def chain_cases(draw):
    body = draw(_leaves(3, SUMMABLE[:3] + CONTINUOUS, n_min=2))
    last = body.nodes[-1]
    if last.family not in SUPPORT:
        last = dataclasses.replace(last, family=draw(st.sampled_from(SUMMABLE[:3])))
    body = Spec((*body.nodes[:-1], last))
    discrete = [("body", m.addr) for m in body.nodes[:-1] if m.family in SUPPORT]
    summed = [("body", last.addr), *(p for p in discrete if draw(st.booleans()))]
    return ChainCase(
        body,
        draw(st.integers(1, 3)),
        tuple(summed),
        draw(st.sampled_from([-1.0, 0.0, 0.4, 1.3])),
        draw(st.integers(0, 2**20)),
    )


def chain_scan(case: ChainCase) -> ppl.GenerativeFunction:
    sub = build(case.body)

    def step(c, x):
        r = sub(c + x) @ "body"
        return r, r

    return ppl.scan(ppl.gen(step), length=case.n)
