"""Kernels are immutable values: one object serves several models at once, and
nothing can be written onto it after it is built."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size

import ppl
from ppl.inference import mcmc, nuts

from _models import NN_DATA, normal_normal, normal_normal_posterior

# A second conjugate model with other addresses and another dimension:
# w ~ N(0, 2^2), b ~ N(1, 1), y ~ N(w x + b, 0.5^2).
XS = jnp.linspace(-1.0, 1.0, 6)
YS = jnp.array([-1.3, -0.2, 0.4, 1.1, 1.9, 2.6])
PRIOR_MEAN, PRIOR_VAR, NOISE = np.array([0.0, 1.0]), np.array([4.0, 1.0]), 0.5


@ppl.gen
def regression(x):
    w = ppl.normal(0.0, 2.0) @ "w"
    b = ppl.normal(1.0, 1.0) @ "b"
    ppl.normal(w * x + b, NOISE) @ "y"


def regression_posterior():
    phi = np.stack([np.asarray(XS), np.ones(len(XS))], axis=1)
    precision = np.diag(1 / PRIOR_VAR) + phi.T @ phi / NOISE**2
    cov = np.linalg.inv(precision)
    mean = cov @ (PRIOR_MEAN / PRIOR_VAR + phi.T @ np.asarray(YS) / NOISE**2)
    return mean, np.diag(cov)


def within_mcse(draws, mean, var, k=5.0):
    """Mean and variance of ``draws`` (chains, draws) within ``k`` MCSE of the exact ones."""
    x = np.asarray(draws, np.float64)
    sq = (x - mean) ** 2
    ess, ess_sq = effective_sample_size(x), effective_sample_size(sq)
    assert ess > 300, ess
    assert abs(x.mean() - mean) < k * np.sqrt(var / ess), (x.mean(), mean, ess)
    assert abs(sq.mean() - var) < k * sq.std() / np.sqrt(ess_sq), (sq.mean(), var, ess_sq)


def test_one_nuts_object_runs_two_models_interleaved():
    kernel = nuts()  # ONE object, for both models
    n_chains, n_warmup, n_samples = 4, 300, 1000
    runs = {
        "nn": (normal_normal, (jnp.zeros(5),), ppl.ChoiceMap.d({"y": NN_DATA}), ("mu",)),
        "reg": (regression, (XS,), ppl.ChoiceMap.d({"y": YS}), ("w", "b")),
    }

    def start(key, model, args, obs):
        trace, _ = model.generate(key, obs, args)
        return kernel.init(trace, n_warmup, ppl.select("y"))

    keys = jax.random.split(jax.random.key(11), n_chains)
    states = {
        name: jax.vmap(lambda k, m=m, a=a, o=o: start(k, m, a, o))(keys)
        for name, (m, a, o, _) in runs.items()
    }
    step = jax.vmap(kernel.step)

    @jax.jit
    def run(states, key):
        def body(states, k):
            # Alternate: a step of one model, then a step of the other, same kernel.
            k_nn, k_reg = jax.random.split(k)
            nn = step(jax.random.split(k_nn, n_chains), states["nn"])
            reg = step(jax.random.split(k_reg, n_chains), states["reg"])
            record = {
                name: jax.vmap(lambda s: {a: kernel.current_choices(s)[a] for a in addrs})(st)
                for name, st, addrs in (("nn", nn, ("mu",)), ("reg", reg, ("w", "b")))
            }
            return {"nn": nn, "reg": reg}, record

        return jax.lax.scan(body, states, jax.random.split(key, n_warmup + n_samples))

    _, draws = run(states, jax.random.key(12))
    kept = jax.tree.map(lambda v: np.swapaxes(np.asarray(v)[n_warmup:], 0, 1), draws)
    mean, var = normal_normal_posterior()
    within_mcse(kept["nn"]["mu"], mean, var)
    means, variances = regression_posterior()
    for i, addr in enumerate(("w", "b")):
        within_mcse(kept["reg"][addr], means[i], variances[i])


KERNELS = {
    "mh": lambda: mcmc.mh(ppl.select("mu")),
    "mala": lambda: mcmc.mala(ppl.select("mu")),
    "hmc": lambda: mcmc.hmc(ppl.select("mu")),
    "nuts": lambda: nuts(ppl.select("mu")),
    "cycle": lambda: mcmc.cycle(mcmc.mh(), nuts()),
    "mixture_kernel": lambda: mcmc.mixture_kernel([mcmc.mh(), mcmc.mala()]),
    "repeat_kernel": lambda: mcmc.repeat_kernel(mcmc.mh(), 2),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_are_frozen(name):
    kernel = KERNELS[name]()
    before = dict(vars(kernel))
    attr = next(iter(before))
    with pytest.raises(AttributeError, match="immutable value"):
        setattr(kernel, attr, None)
    with pytest.raises(AttributeError, match="immutable value"):
        kernel.cache = {}
    with pytest.raises(AttributeError, match="immutable value"):
        delattr(kernel, attr)
    assert vars(kernel).keys() == before.keys()
    assert all(vars(kernel)[k] is v for k, v in before.items())


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_built_alike_are_equal(name):
    # so run_mcmc(key, nuts(), ...) written twice reuses the compiled chains
    a, b = KERNELS[name](), KERNELS[name]()
    assert a == b and hash(a) == hash(b)


def test_kernels_with_other_settings_differ():
    s = ppl.select("mu")
    assert nuts() != nuts(target_accept=0.9)
    assert mcmc.hmc(s) != mcmc.hmc(ppl.select("z")) and mcmc.hmc(s) != mcmc.mala(s)
    assert mcmc.mixture_kernel([mcmc.mh(), mcmc.mala()], [0.3, 0.7]) != mcmc.mixture_kernel(
        [mcmc.mh(), mcmc.mala()], [0.4, 0.6]
    )
    assert mcmc.repeat_kernel(mcmc.mh(), 2) != mcmc.repeat_kernel(mcmc.mh(), 3)

    @ppl.gen
    def walk(trace):
        return ppl.normal(trace["mu"], 0.1) @ "mu"

    # a proposal is a generative function: compared by identity
    assert mcmc.mh(proposal=walk) == mcmc.mh(proposal=walk) != mcmc.mh(s)


def test_nuts_options_are_read_only():
    kernel = nuts(target_accept=0.9)
    assert kernel.options["target_accept_prob"] == 0.9
    with pytest.raises(TypeError):
        # the checker rightly rejects this write: refusing it at run time is what is tested
        kernel.options["target_accept_prob"] = 0.5  # pyright: ignore[reportIndexIssue]
