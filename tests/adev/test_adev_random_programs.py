"""hypothesis: random small programs (chains of choices whose parameters depend
on theta and on the previous choice) under random strategy assignments agree
with a low-variance reference (reparam for continuous choices, exact
enumeration for discrete ones)."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
from ppl import categorical, enum, enum_sequential, flip, mvd, normal, reinforce, reparam

from _adev_util import grad_samples

sig = jax.nn.sigmoid
CAT = jnp.array([-1.0, 0.5, 2.0])
VALID = {
    "normal": [reparam, reinforce, mvd],
    "flip": [reinforce, enum, enum_sequential, mvd],
    "cat": [reinforce, enum, enum_sequential],
}
REFERENCE = {"normal": reparam, "flip": enum, "cat": enum}


def _node(kind, a, c, theta, prev):
    if kind == "normal":
        return normal(a * theta + c * prev, 0.5 + sig(theta))
    if kind == "flip":
        return flip(sig(a * theta + c * prev))
    return categorical(jax.nn.softmax(jnp.stack([a * theta, c * prev, 0.0])))


def _as_real(kind, x):
    if kind == "flip":
        return jnp.where(x, 1.0, -0.5)
    if kind == "cat":
        return CAT[x]
    return x


def build(spec):
    @ppl.expectation
    def f(theta):
        prev, total = 0.0, 0.0
        for i, (kind, a, c, w) in enumerate(spec):
            x = _as_real(kind, _node(kind, a, c, theta, prev) @ f"x{i}")
            total = total + w * (x + 0.5 * jnp.tanh(x))
            prev = x
        return total

    return f


coef = st.sampled_from([-1.0, -0.5, 0.5, 1.0])
node = st.tuples(
    st.sampled_from(["normal", "flip", "cat"]), coef, coef, st.sampled_from([0.5, 1.0, 2.0])
)


@st.composite
def program_and_policy(draw):
    spec = draw(st.lists(node, min_size=1, max_size=3))
    policy = {f"x{i}": draw(st.sampled_from(VALID[kind])) for i, (kind, *_) in enumerate(spec)}
    return spec, policy


@settings(max_examples=10)
@given(program_and_policy(), st.sampled_from([-0.6, 0.2, 0.9]))
def test_random_program_gradient_matches_reference(spec_policy, theta):
    spec, policy = spec_policy
    f = build(spec)
    reference = ppl.adev(f, {f"x{i}": REFERENCE[kind] for i, (kind, *_) in enumerate(spec)})
    ref = grad_samples(reference, (theta,), n=8000, seed=1)
    est = grad_samples(ppl.adev(f, policy), (theta,), n=8000, seed=2)
    se = np.sqrt(ref.var() / ref.size + est.var() / est.size)
    err = abs(ref.mean() - est.mean())
    assert err <= 5 * se + 1e-4 * (1 + abs(ref.mean())), (
        f"{spec} with {policy}: {est.mean()} vs reference {ref.mean()} (5 se = {5 * se})"
    )
