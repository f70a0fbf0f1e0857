"""hypothesis: random programs around discrete choices against exact answers by
enumeration (``_discrete_programs``).

* Rao-Blackwellized REINFORCE: random model / guide pairs (flips, categoricals
  and reparameterized normals, dependent choices, random observations); the mean
  of ``vi.elbo`` gradient estimates, with ``rao_blackwell`` True and False, is
  the exact gradient of the ELBO within 5 Monte Carlo standard errors, and the
  Rao-Blackwellized variance is not larger than the plain one's (with slack).
* Loops: ``ppl.scan`` / ``ppl.repeat`` / ``ppl.vmap`` bodies making a flip or
  categorical under REINFORCE (by default, at the call site, by policy, with a
  baseline); the gradient mean is the exact derivative summed over every path.
  ``enum`` / ``mvd`` for the loop's choice match it too where the choice feeds
  only costs added inside the body (``local``), and are refused, naming its
  address, where its value leaves the body.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ppl
from ppl.inference import vi

from _adev_util import assert_close_mc, grad_samples
from _discrete_programs import (
    LOOP_ADDRESS,
    LoopSpec,
    RBNode,
    RBSpec,
    exact_elbo,
    loop_exact,
    loop_program,
    loop_specs,
    rb_guide,
    rb_model,
    rb_observations,
    rb_specs,
)

thetas = st.sampled_from([-0.6, 0.2, 0.9])


def _elbo_grads(obj, theta, n, seed):
    keys = jax.random.split(jax.random.key(seed), n)
    g = jax.jit(jax.vmap(lambda k: obj.grad_estimate(k, (), (theta,))[1][0]))(keys)
    return np.asarray(g, np.float64)


# dependent discrete latents, a reparameterized normal whose guide reads a discrete
# one, and observations reading latents of each kind
RICH = RBSpec(
    (
        RBNode("cat", None, -1, 0.5, 0.4, -1, 1.0),
        RBNode("flip", None, 0, -1.0, 0.0, 0, 0.5),
        RBNode("normal", None, 1, 1.0, -0.5, 0, -0.5),
        RBNode("normal", 1.2, 2, 1.0, 0.4, -1, 1.0),
        RBNode("flip", False, 1, -0.5, 0.0, -1, 1.0),
    )
)


@settings(max_examples=1)
@given(rb_specs(), thetas)
@example(RICH, 0.2)
def test_rao_blackwellized_elbo_gradient_matches_enumeration(spec, t):
    model, guide, obs = rb_model(spec), rb_guide(spec), rb_observations(spec)
    theta = t + 0.3 * jnp.arange(len(spec.latent), dtype=jnp.float32)
    exact = jax.grad(lambda th: exact_elbo(spec, th))(theta)
    variances = {}
    for rb in (True, False):
        g = _elbo_grads(vi.elbo(model, guide, obs, rao_blackwell=rb), theta, 4000, seed=1 + rb)
        assert_close_mc(g, exact, what=f"{spec}, rao_blackwell={rb}")
        variances[rb] = float(g.var(axis=0).sum())
    assert variances[True] <= 1.15 * variances[False] + 1e-6, (spec, variances)


@settings(max_examples=1)
@given(loop_specs, thetas)
@example(LoopSpec("scan", "cat", 4, 1.0, 0.5, 0.5, 1.0, 0.5, 1.0, 1.0, "baseline", True), -0.6)
def test_reinforce_in_loops_matches_the_sum_over_paths(spec, theta):
    exact = jax.grad(lambda th: loop_exact(spec, th))(jnp.float32(theta))
    g = grad_samples(loop_program(spec), (theta,), n=6000, seed=3)
    assert_close_mc(g, exact, what=str(spec))


@pytest.mark.parametrize("strategy", [ppl.enum, ppl.enum_sequential, ppl.mvd], ids=lambda s: s.name)
@settings(max_examples=1)
@given(loop_specs)
@example(LoopSpec("scan", "cat", 3, 1.0, 0.5, 0.5, 1.0, 0.5, 1.0, 1.0, "default", True, True))
def test_enum_and_mvd_in_loops_are_exact_for_local_choices_and_refused_otherwise(strategy, spec):
    """A choice that feeds only costs inside the body is summed against the rest of
    the body; one whose value leaves the body is refused, naming its address."""
    f = loop_program(spec, strategy)
    if not spec.local:
        with pytest.raises(ppl.PPLError, match=re.escape(repr(LOOP_ADDRESS))):
            jax.eval_shape(lambda k: f.grad_estimate(k, (0.3,)), jax.random.key(0))
        return
    exact = jax.grad(lambda th: loop_exact(spec, th))(jnp.float32(0.3))
    assert_close_mc(grad_samples(f, (0.3,), n=3000, seed=4), exact, what=f"{strategy} {spec}")
