"""A generative function defined inside another may use the outer one's
arguments: the values it closes over are passed to the call site explicitly,
so every interface method, jit, grad and ADEV see the values of each run."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import gen, normal

KEY = jax.random.key(0)


@gen
def outer(w, s):
    @gen
    def inner(x):  # closes over w and s, arguments of outer
        return normal(w * x, s) @ "y"

    a = inner(1.0) @ "first"
    return inner(a) @ "second"


def _log_joint(w, s, choices):
    a, b = choices["first"]["y"], choices["second"]["y"]
    return nd.Normal(w, s).log_prob(a) + nd.Normal(w * a, s).log_prob(b)


def test_interface_methods_see_the_values_of_each_call():
    tr = outer.simulate(KEY, (2.0, 0.5))
    np.testing.assert_allclose(tr.score, _log_joint(2.0, 0.5, tr.choices), rtol=1e-5)
    # The same program staged once serves other values of the arguments.
    for w, s in [(2.0, 0.5), (-1.0, 2.0)]:
        logp, _ = outer.assess(tr.choices, (w, s))
        np.testing.assert_allclose(logp, _log_joint(w, s, tr.choices), rtol=1e-5)
    new, w_upd, _ = outer.update(KEY, tr, ppl.ChoiceMap.empty(), (-1.0, 2.0))
    np.testing.assert_allclose(
        w_upd, _log_joint(-1.0, 2.0, tr.choices) - tr.score, rtol=1e-4, atol=1e-4
    )


def test_jit_and_grad_through_a_closure():
    tr = outer.simulate(KEY, (2.0, 0.5))
    logp = jax.jit(lambda w: outer.assess(tr.choices, (w, 0.5))[0])
    np.testing.assert_allclose(logp(1.3), _log_joint(1.3, 0.5, tr.choices), rtol=1e-5)
    g = jax.grad(lambda w: outer.assess(tr.choices, (w, 0.5))[0])(1.3)
    g_ref = jax.grad(lambda w: _log_joint(w, 0.5, tr.choices))(1.3)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4)


def test_adev_gradient_through_a_closure_is_unbiased():
    @ppl.expectation
    def f(w):
        @gen
        def q():
            return normal(w, 1.0) @ "z"

        choices, _ = ppl.sim(q)() @ "q"
        return choices["z"] ** 2

    # E[z^2] = w^2 + 1, so the gradient is 2w; a reparameterised estimate is 2z with sd 2.
    n, w = 4000, 1.5
    grads = jax.vmap(lambda k: f.grad_estimate(k, (w,))[0])(jax.random.split(KEY, n))
    assert abs(float(jnp.mean(grads)) - 2 * w) < 5 * 2.0 / np.sqrt(n)


def test_a_combinator_over_a_closure_is_refused_with_the_fix():
    @gen
    def chain(w):
        @gen
        def step(c, x):
            z = normal(w * c + x, 1.0) @ "z"
            return z, z

        return ppl.scan(step, length=3)(0.0, jnp.zeros(3)) @ "s"

    with pytest.raises(ppl.PPLError, match="(?s)(?=.*step)(?=.*scan)(?=.*closure)(?=.*carry)"):
        chain.simulate(KEY, (2.0,))
