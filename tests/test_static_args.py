"""Arguments JAX cannot trace (functions inside equinox modules, string settings)
are held static: every interface method, nested call, combinator, jit and ADEV
see them as given, and only the arrays are traced and differentiated."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi

KEY = jax.random.key(0)
NET = eqx.nn.MLP(2, 2, 8, 1, key=jax.random.key(1))  # holds its activation function


@gen
def point(net, mode, x):
    assert mode in ("plain", "shifted")  # a static setting arrives as the string it was
    shift = 1.0 if mode == "shifted" else 0.0
    z = normal(x * jnp.ones(2) + shift, 1.0) @ "z"
    return normal(net(z), 0.5) @ "y"


@gen
def scene(net, xs):
    ys = ppl.vmap(point, in_axes=(None, None, 0))(net, "shifted", xs) @ "points"
    extra = point(net, "plain", 0.0) @ "extra"
    return ys, extra


def _log_joint(net, choices, xs):
    """The log density written out with numpyro, for the values in ``choices``."""
    import numpyro.distributions as nd

    total = 0.0
    for i, x in enumerate(np.asarray(xs)):
        z = choices["points"]["z"][i]
        total += nd.Normal(x + 1.0, 1.0).log_prob(z).sum()
        total += nd.Normal(net(z), 0.5).log_prob(choices["points"]["y"][i]).sum()
    z = choices["extra"]["z"]
    total += (
        nd.Normal(0.0, 1.0).log_prob(z).sum()
        + nd.Normal(net(z), 0.5).log_prob(choices["extra"]["y"]).sum()
    )
    return total


def test_interface_methods_take_an_equinox_module_and_a_string_setting():
    xs = jnp.arange(3.0)
    tr = scene.simulate(KEY, (NET, xs))
    np.testing.assert_allclose(tr.score, _log_joint(NET, tr.choices, xs), rtol=1e-5)
    w, _ = scene.assess(tr.choices, (NET, xs))
    np.testing.assert_allclose(w, tr.score, rtol=1e-6)
    new, w, _ = scene.update(KEY, tr, ppl.ChoiceMap.d({"extra": {"z": jnp.ones(2)}}))
    np.testing.assert_allclose(w, new.score - tr.score, rtol=1e-5, atol=1e-5)
    gen_tr, w = scene.generate(KEY, ppl.ChoiceMap.d({"extra": {"y": jnp.zeros(2)}}), (NET, xs))
    assert np.isfinite(w) and gen_tr.choices["extra"]["y"].shape == (2,)


def test_under_jit_the_static_part_is_part_of_the_compiled_function():
    xs = jnp.arange(3.0)
    expected = scene.simulate(KEY, (NET, xs)).score
    # Closed over, or passed through equinox's filter_jit (plain jax.jit refuses functions).
    np.testing.assert_allclose(
        jax.jit(lambda k: scene.simulate(k, (NET, xs)).score)(KEY), expected, rtol=1e-6
    )
    np.testing.assert_allclose(
        eqx.filter_jit(lambda k, net: scene.simulate(k, (net, xs)).score)(KEY, NET),
        expected,
        rtol=1e-6,
    )
    # A whole trace comes out of jit: the static part travels in its structure.
    tr = jax.jit(lambda k: scene.simulate(k, (NET, xs)))(KEY)
    np.testing.assert_allclose(tr.score, expected, rtol=1e-6)
    again, w, _ = scene.update(KEY, tr, ppl.ChoiceMap.empty())
    np.testing.assert_allclose(w, 0.0, atol=1e-5)


def test_a_setting_that_changes_is_a_different_program():
    plain = point.simulate(KEY, (NET, "plain", 0.0)).choices["z"]
    shifted = point.simulate(KEY, (NET, "shifted", 0.0)).choices["z"]
    np.testing.assert_allclose(shifted - plain, 1.0, rtol=1e-6)
    with pytest.raises(AssertionError):
        point.simulate(KEY, (NET, "unknown", 0.0))


def test_expectation_gradients_reach_the_arrays_and_leave_functions_alone():
    @ppl.expectation
    def f(net):
        z = normal(jnp.zeros(2), 1.0) @ "z"
        return jnp.sum(net(z) ** 2)

    g = f.grad_estimate(KEY, (NET,))[0]
    assert g.activation is NET.activation  # given back as it was, not differentiated
    # Reparameterised: the same z as ppl draws (site 0's key), differentiated by hand.
    eps = jax.random.normal(jax.random.fold_in(KEY, 0), (2,))
    params, static = eqx.partition(NET, eqx.is_array)
    expected = jax.grad(lambda p: jnp.sum(eqx.combine(p, static)(eps) ** 2))(params)
    for a, b in zip(jax.tree.leaves(eqx.filter(g, eqx.is_array)), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_trains_an_equinox_mlp_guide():
    @gen
    def model():
        z = normal(0.0, 1.0) @ "z"
        return normal(z, 1.0) @ "x"

    @gen
    def guide(net):
        out = net(jnp.ones(1))
        return normal(out[0], jnp.exp(out[1])) @ "z"

    net = eqx.nn.MLP(1, 2, 8, 1, key=jax.random.key(2))
    objective = vi.elbo(model, guide, ppl.ChoiceMap.d({"x": 1.0}))
    res = vi.fit(
        objective,
        jax.random.key(3),
        (),
        (net,),
        optimizer=optax.adam(0.02),
        steps=800,
        num_samples=8,
        progress=False,
    )
    out = res.guide_args[0](jnp.ones(1))
    assert res.guide_args[0].activation is net.activation
    # The exact posterior is normal(0.5, sqrt(0.5)).
    assert abs(float(out[0]) - 0.5) < 0.1
    assert abs(float(jnp.exp(out[1])) - np.sqrt(0.5)) < 0.1


@gen
def step(carry, x):
    # Parameters ride in the carry (a scan step takes only (carry, x)); the
    # module's activation function is held static inside it.
    net, h = carry
    z = normal(net(h)[0] + x, 1.0) @ "z"
    return (net, h + z), z


@gen
def branch_a(net, mode, x):
    return point(net, mode, x) @ "p"


@gen
def branch_b(net, mode, x):
    return point(net, mode, -x) @ "p"


@gen
def looped(net, which):
    _, zs = ppl.scan(step, length=3)((net, jnp.zeros(2)), jnp.arange(3.0)) @ "chain"
    picked = ppl.switch(branch_a, branch_b)(which, net, "plain", 1.0) @ "picked"
    mixed = ppl.mix(branch_a, branch_b)(jnp.zeros(2), net, "shifted", 0.5) @ "mixed"
    return zs, picked, mixed


def test_scan_switch_and_mix_with_static_arguments_keep_the_laws():
    tr = looped.simulate(KEY, (NET, 1))
    assert tr.choices["chain"]["z"].shape == (3,)
    w, _ = looped.assess(tr.choices, (NET, 1))
    np.testing.assert_allclose(w, tr.score, rtol=1e-5)
    # Switching the branch by update keeps the weight law, and the discard restores the trace.
    new, w, discard = looped.update(KEY, tr, ppl.ChoiceMap.empty(), (NET, 0))
    np.testing.assert_allclose(w, new.score - tr.score, rtol=1e-4, atol=1e-4)
    back, w_back, _ = looped.update(KEY, new, discard, (NET, 1))
    np.testing.assert_allclose(back.score, tr.score, rtol=1e-5)
    np.testing.assert_allclose(w_back, -w, rtol=1e-4, atol=1e-4)
