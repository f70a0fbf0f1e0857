"""Random models whose supports depend on other choices, under every gradient kernel.

a ~ beta(p, q) and children whose supports move with a (and with each other),
through @gen calls, ppl.vmap and ppl.scan, with random parameters. Each
child's conditional mean is linear in a or a^2, so the exact means follow from
E[a] and E[a^2]; every one is checked within 5 Monte Carlo standard errors.
The parameters are arguments, so each kernel compiles once for all examples.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
from hypothesis import given, settings
from hypothesis import strategies as st
from numpyro.distributions import constraints
from numpyro.distributions.transforms import AffineTransform

import ppl
from ppl.inference import chains, mcmc, nuts

from test_dependent_supports import within_mcse


def _shifted_exponential(rate, shift):
    return nd.TransformedDistribution(
        nd.Exponential(rate), AffineTransform(shift, 1.0, domain=constraints.positive)
    )


def _below(rate, top):
    return nd.TransformedDistribution(
        nd.Exponential(rate), AffineTransform(top, -1.0, domain=constraints.positive)
    )


def _beta_on(alpha, beta, lo, width):
    return nd.TransformedDistribution(
        nd.Beta(alpha, beta), AffineTransform(lo, width, domain=constraints.unit_interval)
    )


shifted_exponential = ppl.distribution(_shifted_exponential, "shifted_exponential")
below = ppl.distribution(_below, "below")
beta_on = ppl.distribution(_beta_on, "beta_on")


@ppl.gen
def element(h):
    u = ppl.uniform(0.0, h) @ "u"
    return ppl.uniform(0.5 * u, u) @ "v"


@ppl.gen
def halving(carry, _):
    x = ppl.uniform(0.0, carry) @ "x"
    return x, x


@ppl.gen
def children(a, theta):
    c0, c1, w0, w1, s0, s1, r, r2, alpha, beta = theta
    lo, width = c0 + c1 * a, w0 + w1 * a
    b1 = ppl.uniform(lo, lo + width) @ "b1"
    ppl.uniform(b1, b1 + width) @ "c"  # support from two parents, one of them a child
    shifted_exponential(r, s0 + s1 * a * a) @ "b2"
    beta_on(alpha, beta, lo, width) @ "b3"
    below(r2, lo + width) @ "b4"
    return width


@ppl.gen
def random_model(theta):
    p, q = theta[0], theta[1]
    a = ppl.beta(p, q) @ "a"
    width = children(a, theta[2:]) @ "kids"
    ppl.vmap(element)(width * jnp.array([1.0, 0.5])) @ "pair"
    ppl.scan(halving, length=2)(width, None) @ "chain"
    return a


def _exact(theta):
    p, q, c0, c1, w0, w1, s0, s1, r, r2, alpha, beta = (float(t) for t in theta)
    ea, ea2 = p / (p + q), p * (p + 1) / ((p + q) * (p + q + 1))
    lo, width = c0 + c1 * ea, w0 + w1 * ea
    b1 = lo + width / 2
    u = width * np.array([1.0, 0.5]) / 2
    return {
        "a": ea,
        ("kids", "b1"): b1,
        ("kids", "c"): b1 + width / 2,
        ("kids", "b2"): s0 + s1 * ea2 + 1 / r,
        ("kids", "b3"): lo + width * alpha / (alpha + beta),
        ("kids", "b4"): lo + width - 1 / r2,
        ("pair", "u"): u,
        ("pair", "v"): 0.75 * u,
        ("chain", "x"): width * np.array([0.5, 0.25]),
    }


GRADIENT_KERNELS = {
    "nuts": nuts(),
    "hmc": mcmc.hmc(step_size=0.1, n_steps=10),
    "mala": mcmc.mala(step_size=0.05),
}

_f = st.floats
thetas = st.tuples(
    _f(1.2, 4.0),
    _f(1.2, 4.0),  # p, q
    _f(0.0, 1.0),
    _f(-0.5, 1.0),  # lo = c0 + c1 a
    _f(0.3, 2.0),
    _f(-0.2, 1.0),  # width = w0 + w1 a > 0
    _f(-1.0, 1.0),
    _f(-1.0, 1.0),  # shift = s0 + s1 a^2
    _f(0.7, 3.0),
    _f(0.7, 3.0),  # rates
    _f(1.5, 4.0),
    _f(1.5, 4.0),  # beta on (lo, lo + width)
)


@settings(max_examples=1)
@given(theta=thetas)
def test_random_models_with_dependent_supports_under_every_gradient_kernel(theta):
    theta32 = tuple(jnp.float32(t) for t in theta)
    exact = _exact(theta32)
    for i, (name, kernel) in enumerate(sorted(GRADIENT_KERNELS.items())):
        result = chains.run(
            jax.random.key(i),
            kernel,
            random_model,
            (theta32,),
            {},
            n_samples=800,
            n_warmup=400,
            n_chains=4,
        )
        assert np.all(result.acceptance_rate > 0.2), name
        within_mcse(result, exact, min_ess=50, max_rhat=1.1)
