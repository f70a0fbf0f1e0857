"""Random expectation programs with branches, and their exact expected values.

A spec is a selector (how the branch index is drawn) and a list of branches.
Each branch is a ``@ppl.gen`` function of ``theta`` that makes at most one
normal and one flip choice, returns a value that also depends on ``theta``
directly, and may add a cost. The program returns an affine function of the
branch's value, so its expected value has a closed form: the selector's
probabilities times each branch's expected value (E[x] = m, E[x^2] = m^2 +
s^2 for the normal, E[y] = p for the flip). ``exact(spec, theta)`` computes
that with plain JAX, without going through any ppl interpreter, and
``jax.grad`` of it is the exact derivative the estimators must match.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from hypothesis import strategies as st

import ppl

sig = jax.nn.sigmoid


@dataclasses.dataclass(frozen=True)
class Branch:
    normal: tuple | None  # (a, b, w1, w2): x ~ N(a theta, 0.5 + sig(b theta)), adds w1 x + w2 x^2
    flip: tuple | None  # (a, v): y ~ flip(sig(a theta)), adds v y
    direct: float  # adds direct * theta
    cost: float  # add_cost(cost * theta^2)


@dataclasses.dataclass(frozen=True)
class Spec:
    selector: str  # "cond" (flip), "switch" (categorical index), "mix" (ppl.mix)
    a: float  # the selector's parameters depend on a * theta
    branches: tuple
    scale: float  # the program returns scale * value + theta


def _normal_params(n, theta):
    a, b, _, _ = n
    return a * theta, 0.5 + sig(b * theta)


def branch_fn(br: Branch):
    @ppl.gen
    def body(theta):
        value = br.direct * theta
        if br.normal is not None:
            loc, scale = _normal_params(br.normal, theta)
            x = ppl.normal(loc, scale) @ "x"
            value = value + br.normal[2] * x + br.normal[3] * x**2
        if br.flip is not None:
            y = ppl.flip(sig(br.flip[0] * theta)) @ "y"
            value = value + br.flip[1] * jnp.where(y, 1.0, 0.0)
        if br.cost:
            ppl.add_cost(br.cost * theta**2)
        return value

    return body


def selector_probs(spec: Spec, theta):
    if spec.selector == "cond":  # branch 0 runs when the flip is true
        p = sig(spec.a * theta)
        return jnp.stack([p, 1.0 - p])
    return jax.nn.softmax(_logits(spec, theta))


def _logits(spec, theta):
    n = len(spec.branches)
    return jnp.stack([spec.a * theta * (j - 1) + 0.3 * j for j in range(n)])


def build(spec: Spec):
    """The expectation program of ``spec``; its selector lives at ``"i"`` (for
    ``mix``, at ``("s", "component")``) and the branch at ``"s"``."""
    fns = [branch_fn(b) for b in spec.branches]

    @ppl.expectation
    def f(theta):
        if spec.selector == "cond":
            c = ppl.flip(sig(spec.a * theta)) @ "i"
            value = ppl.cond(fns[0], fns[1])(c, theta) @ "s"
        elif spec.selector == "switch":
            i = ppl.categorical(logits=_logits(spec, theta)) @ "i"
            value = ppl.switch(*fns)(i, theta) @ "s"
        else:
            value = ppl.mix(*fns)(_logits(spec, theta), theta) @ "s"
        return spec.scale * value + theta

    return f


def selector_address(spec: Spec) -> str | tuple[str, ...]:
    return ("s", "component") if spec.selector == "mix" else "i"


def inner_prefix(spec: Spec) -> tuple[str, ...]:
    return ("s", "value") if spec.selector == "mix" else ("s",)


def _branch_mean(br: Branch, theta):
    m = br.direct * theta + br.cost * theta**2
    if br.normal is not None:
        loc, scale = _normal_params(br.normal, theta)
        m = m + br.normal[2] * loc + br.normal[3] * (loc**2 + scale**2)
    if br.flip is not None:
        m = m + br.flip[1] * sig(br.flip[0] * theta)
    return m


def exact(spec: Spec, theta):
    """The expected value of ``build(spec)`` at ``theta``, in closed form."""
    p = selector_probs(spec, theta)
    # Costs are not scaled: they add to the expectation's value as they are.
    means = jnp.stack(
        [
            spec.scale * (_branch_mean(b, theta) - b.cost * theta**2) + b.cost * theta**2
            for b in spec.branches
        ]
    )
    return jnp.sum(p * means) + theta


coef = st.sampled_from([-1.0, -0.5, 0.5, 1.0])
branch = st.builds(
    Branch,
    normal=st.none() | st.tuples(coef, coef, coef, st.sampled_from([0.0, 0.5])),
    flip=st.none() | st.tuples(coef, st.sampled_from([-1.0, 2.0])),
    direct=st.sampled_from([0.0, 1.0, -2.0]),
    cost=st.sampled_from([0.0, 0.0, 1.5]),
)


@st.composite
def specs(draw):
    selector = draw(st.sampled_from(["cond", "switch", "mix"]))
    n = 2 if selector == "cond" else draw(st.sampled_from([2, 3]))
    branches = tuple(draw(branch) for _ in range(n))
    return Spec(selector, draw(coef), branches, draw(st.sampled_from([1.0, -0.5])))


SELECTOR_STRATEGIES = {
    "cond": [ppl.reinforce, ppl.enum, ppl.enum_sequential, ppl.mvd],
    "switch": [ppl.reinforce, ppl.enum, ppl.enum_sequential],
    "mix": [ppl.reinforce, ppl.enum, ppl.enum_sequential],
}


@st.composite
def specs_and_policies(draw):
    """A spec and a policy: a strategy for the selector, and one for each choice
    inside a branch (reparam or reinforce for the normal, reinforce for the flip),
    or REINFORCE for the whole switch call."""
    spec = draw(specs())
    policy = {selector_address(spec): draw(st.sampled_from(SELECTOR_STRATEGIES[spec.selector]))}
    if draw(st.booleans()) and spec.selector != "mix":
        policy["s"] = ppl.reinforce  # the whole call, by policy
        return spec, policy
    prefix = inner_prefix(spec)
    if any(b.normal is not None for b in spec.branches):
        policy[prefix + ("x",)] = draw(st.sampled_from([ppl.reparam, ppl.reinforce]))
    return spec, policy
