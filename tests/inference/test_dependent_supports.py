"""Gradient kernels on choices whose support depends on other choices.

The unconstrained coordinates must be built from the current values of the
parents, in program order. Every check compares with an exact answer within
5 Monte Carlo standard errors (sd / sqrt(ESS), numpyro's ESS over the chains).
"""

from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.distributions import DistributionTrace
from ppl.gen import StaticTrace
from ppl.inference import chains, mcmc, nuts
from ppl.inference.unconstrained import constrain, unconstrain


def within_mcse(result, exact, k=5.0, min_ess=300, max_rhat=1.05):
    """Each mean within ``k`` MCSE (sd / sqrt(ESS)) of its exact value. The MCSE is
    only trustworthy when the chains mixed, so the ESS and R-hat are checked first:
    a sampler stuck in the wrong region has a large MCSE too."""
    summary = result.summary()
    for addr, value in exact.items():
        s = summary[addr]
        mean, mcse = np.asarray(s["mean"]), np.asarray(s["mcse"])
        assert np.all(s["ess"] > min_ess) and np.all(s["rhat"] < max_rhat), (
            addr,
            s["ess"],
            s["rhat"],
        )
        assert np.all(np.abs(mean - value) < k * mcse), (addr, mean, value, mcse, s["ess"])


# ---------------------------------------------------------------------------
# a ~ U(0, 1), b ~ U(0, 1 - a): E[a] = 1/2, E[b] = E[(1 - a) / 2] = 1/4.
# ---------------------------------------------------------------------------


@ppl.gen
def ab():
    a = ppl.uniform(0.0, 1.0) @ "a"
    return ppl.uniform(0.0, 1.0 - a) @ "b"


@ppl.gen
def ab_with_strategies():
    # Call-site strategies (hints for ADEV) do not change what MCMC sees.
    a = ppl.reparam(ppl.uniform)(0.0, 1.0) @ "a"
    return ppl.reinforce(ppl.uniform)(0.0, 1.0 - a) @ "b"


AB_KERNELS = {
    "nuts": nuts(),
    "hmc": mcmc.hmc(ppl.select("a", "b"), step_size=0.2, n_steps=5),
    "mala": mcmc.mala(ppl.select("a", "b"), step_size=0.2),
    "mh": mcmc.mh(ppl.select("a", "b")),
}


@pytest.mark.parametrize(
    "name,model", [(k, ab) for k in sorted(AB_KERNELS)] + [("nuts", ab_with_strategies)]
)
def test_support_depending_on_a_parent(name, model):
    result = chains.run(
        jax.random.key(0), AB_KERNELS[name], model, (), {}, n_samples=1000, n_warmup=300, n_chains=4
    )
    assert np.all(result.acceptance_rate > 0.3)
    within_mcse(result, {"a": 0.5, "b": 0.25})


def test_log_det_is_the_jacobian_of_the_program_order_map():
    # x(z) = (a(z_a), b(z_a, z_b)) is triangular: log_det must equal log |det dx/dz|.
    tr = ab.simulate(jax.random.key(1), ())
    sel = ppl.select("a", "b")
    z = unconstrain(tr, sel)
    out = constrain(tr, sel, z)
    np.testing.assert_allclose(out.choices["a"], tr["a"], rtol=1e-5)
    np.testing.assert_allclose(out.choices["b"], tr["b"], rtol=1e-5)
    np.testing.assert_allclose(out.log_density, tr.score, rtol=1e-5)

    def x_of(v):
        x = constrain(tr, sel, ppl.ChoiceMap.d({"a": v[0], "b": v[1]})).choices
        return jnp.stack([x["a"], x["b"]])

    @jax.jit
    def check(v):
        log_det = constrain(tr, sel, ppl.ChoiceMap.d({"a": v[0], "b": v[1]})).log_det
        return log_det, jnp.log(jnp.abs(jnp.linalg.det(jax.jacfwd(x_of)(v)))), x_of(v)

    for v in (jnp.array([z["a"], z["b"]]), jnp.array([1.3, -0.4]), jnp.array([-2.0, 3.0])):
        log_det, exact, x = check(v)
        np.testing.assert_allclose(log_det, exact, rtol=1e-4)
        assert 0 < x[1] < 1 - x[0]  # the support of b follows the new a


# ---------------------------------------------------------------------------
# Kernels are values; unfollowable supports are errors.
# ---------------------------------------------------------------------------


def test_kernels_keep_nothing_on_themselves_and_serve_several_models():
    @ppl.gen
    def other():
        return ppl.normal(0.0, 1.0) @ "a"

    observed = ppl.select()
    traces = [m.simulate(jax.random.key(0), ()) for m in (ab, other)]
    kernels = [nuts(), mcmc.hmc(n_steps=3), mcmc.mala(), mcmc.mh(), mcmc.cycle(mcmc.mh(), nuts())]
    for kernel in kernels:
        before = dict(vars(kernel))
        for state in [kernel.init(tr, 5, observed) for tr in traces]:
            jax.eval_shape(kernel.step, jax.random.key(1), state)
        assert vars(kernel).keys() == before.keys() and all(
            vars(kernel)[k] is before[k] for k in before
        )
    # Initialised on `other` after `ab`, the same NUTS object still steps `ab` (and `other`) right.
    kernel = nuts()
    state_ab, state_other = (kernel.init(tr, 0, observed) for tr in traces)
    state_ab = jax.jit(kernel.step)(jax.random.key(2), state_ab)
    x = kernel.current_choices(state_ab)
    assert 0 < x["b"] < 1 - x["a"] and x["a"] != traces[0]["a"]
    assert float(kernel.materialize(state_ab).trace.score) == pytest.approx(
        float(-jnp.log1p(-x["a"])), rel=1e-5
    )
    assert set(kernel.current_choices(state_other).addresses()) == {("a",)}


class _Opaque(ppl.GenerativeFunction):
    """A generative function the unconstrained map does not look inside."""

    def __init__(self, inner):
        self.inner_dist = inner

    def _simulate(self, key, args):
        return self.inner_dist.simulate(key, args)

    def _assess(self, choices, args):
        return self.inner_dist.assess(choices, args)

    def _generate(self, key, constraints, args):
        return self.inner_dist.generate(key, constraints, args)

    def _update(self, key, trace, constraints, args):
        return self.inner_dist.update(key, trace, constraints, args)

    def _regenerate(self, key, trace, selection, args):
        return self.inner_dist.regenerate(key, trace, selection, args)


def test_a_support_that_cannot_be_followed_is_an_error_naming_the_address():
    opaque_uniform, opaque_exponential = _Opaque(ppl.uniform), _Opaque(ppl.exponential)

    @ppl.gen
    def model():
        a = ppl.uniform(0.0, 1.0) @ "a"
        opaque_exponential(1.0 / (1.0 + a)) @ "c"  # support (0, inf) whatever a is: fine
        return opaque_uniform(0.0, 1.0 - a) @ "b"

    trace = cast(StaticTrace, model.simulate(jax.random.key(0), ()))  # an @gen function's trace
    assert isinstance(trace.subtraces["b"], DistributionTrace)
    for kernel in (nuts(), mcmc.hmc(), mcmc.mala()):
        with pytest.raises(
            ppl.PPLError, match=r"support of 'b'.*has parameters.*mh\(select\('b'\)\)"
        ):
            chains.run(
                jax.random.key(0), kernel, model, (), {}, n_samples=2, n_warmup=0, n_chains=1
            )
    # Moving b with MH and the others with NUTS is fine, and right: E[c] = E[1 + a] = 3/2.
    kernel = mcmc.cycle(nuts(ppl.select("a", "c")), mcmc.mh(ppl.select("b")))
    result = chains.run(
        jax.random.key(0), kernel, model, (), {}, n_samples=1000, n_warmup=200, n_chains=4
    )
    within_mcse(result, {"a": 0.5, "b": 0.25, "c": 1.5}, min_ess=100)


@ppl.gen
def _up(a):
    return ppl.normal(a, 1.0) @ "b"


@ppl.gen
def _down(a):
    return ppl.normal(-a, 1.0) @ "b"


@ppl.gen
def _branching():
    a = ppl.normal(0.0, 1.0) @ "a"
    i = ppl.categorical(jnp.array([0.5, 0.5])) @ "i"
    return ppl.switch(_up, _down)(i, a) @ "s"


def test_a_switch_elsewhere_does_not_stop_a_gradient_kernel():
    # b = 1 observed: by symmetry E[a] = 0 and P(i = 1) = 1/2.
    kernel = mcmc.cycle(nuts(ppl.select("a")), mcmc.mh(ppl.select("i")))
    result = chains.run(
        jax.random.key(0),
        kernel,
        _branching,
        (),
        {("s", "b"): 1.0},
        n_samples=600,
        n_warmup=200,
        n_chains=4,
    )
    within_mcse(result, {"a": 0.0, "i": 0.5}, min_ess=100)
    with pytest.raises(ppl.PPLError, match="picked among branches at run time"):
        chains.run(
            jax.random.key(0),
            nuts(ppl.select("a", ("s", "b"))),
            _branching,
            (),
            {},
            n_samples=2,
            n_warmup=0,
        )
