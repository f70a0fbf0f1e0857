"""Sampler diagnostics: the estimators agree with ArviZ, NUTS reports divergences on
the centred eight-schools funnel, statistics survive compositions, warnings name the
addresses, and the progress bar's chunks do not change the draws."""

import functools
import warnings
from typing import Any

import arviz
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.inference import SamplerWarning, chains, diagnostics, mcmc, nuts, vi
from ppl.inference.mcmc_result import MCMCResult, check

from _models import NN_DATA, normal_normal

Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


@ppl.gen
def centred(sigma):
    mu = ppl.normal(0.0, 5.0) @ "mu"
    tau = ppl.half_cauchy(5.0) @ "tau"
    theta = ppl.normal(jnp.full(sigma.shape, mu), tau) @ "theta"
    return ppl.normal(theta, sigma) @ "y"


@ppl.gen
def non_centred(sigma):
    mu = ppl.normal(0.0, 5.0) @ "mu"
    tau = ppl.half_cauchy(5.0) @ "tau"
    eta = ppl.normal(jnp.zeros(sigma.shape), 1.0) @ "eta"
    return ppl.normal(mu + tau * eta, sigma) @ "y"


def _ar1(seed=0, chains_=4, draws=1000):
    rng = np.random.default_rng(seed)
    x = np.zeros((chains_, draws, 3))
    for t in range(1, draws):
        x[:, t] = 0.9 * x[:, t - 1] + rng.normal(size=(chains_, 3))
    x[..., 2] = np.exp(2 * x[..., 2])  # heavy-tailed: the rank normalization matters
    x[1, :, 1] += 2.0  # one chain off: R-hat sees it
    return x


def test_estimators_agree_with_arviz():
    x = _ar1()
    data = arviz.from_dict(posterior={"x": x})

    def az(values):
        return np.asarray(values["x"].values)

    # the same estimator; the two autocorrelation codes round differently (0.2% where
    # the chains disagree, 1e-12 where they mix)
    np.testing.assert_allclose(diagnostics.ess_bulk(x), az(arviz.ess(data, method="bulk")), 0.005)
    # ArviZ interpolates the 5% and 95% quantiles slightly differently
    np.testing.assert_allclose(diagnostics.ess_tail(x), az(arviz.ess(data, method="tail")), 0.02)
    np.testing.assert_allclose(diagnostics.rhat(x), az(arviz.rhat(data)), 1e-4)
    np.testing.assert_allclose(diagnostics.mcse_mean(x), az(arviz.mcse(data)), 0.005)
    np.testing.assert_allclose(diagnostics.bfmi(x[..., 0]), arviz.bfmi(x[..., 0]), 1e-6)
    assert diagnostics.rhat(x)[1] > 1.05 > 1.04 > diagnostics.rhat(x)[0]


def test_estimators_refuse_too_few_draws_and_constant_draws_are_nan():
    with pytest.raises(ValueError, match="at least 4 draws"):
        diagnostics.ess_bulk(np.zeros((2, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division warnings either
        assert np.isnan(diagnostics.ess_bulk(np.ones((2, 50))))
        assert np.isnan(diagnostics.rhat(np.ones((2, 50))))


@functools.lru_cache(maxsize=None)
def _eight_schools(model, seed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = chains.run(
            jax.random.key(seed),
            nuts(),
            model,
            (SIGMA,),
            {"y": Y},
            n_samples=250,
            n_warmup=250,
            n_chains=2,
            progress=False,
        )
    return result, [w for w in caught if issubclass(w.category, SamplerWarning)]


def test_nuts_reports_divergences_on_the_centred_funnel():
    result, caught = _eight_schools(centred, 0)
    n_div = int(result.divergences.sum())
    assert n_div > 0 and result.divergences.shape == (2,)
    assert np.asarray(result.stats["diverging"]).shape == (2, 250)
    assert any("divergent transitions" in str(w.message) for w in caught)
    depth, steps = np.asarray(result.stats["tree_depth"]), np.asarray(result.stats["num_steps"])
    assert np.all(steps <= 2**depth - 1) and np.all(steps > 2 ** (depth - 1) - 1)
    assert np.all(np.asarray(result.stats["step_size"]) > 0)
    # warm-up is over: every kept draw has the adapted step size of its chain
    assert np.ptp(np.asarray(result.stats["step_size"]), axis=1).max() == 0
    # (tests/examples/test_eight_schools.py checks that the non-centred form does not diverge)


def test_arviz_reads_the_sampler_statistics():
    result, _ = _eight_schools(centred, 0)
    data = result.to_arviz()
    sample_stats = getattr(data, "sample_stats")  # a group ArviZ adds at run time
    assert {"diverging", "tree_depth", "n_steps", "step_size", "energy"} <= set(
        sample_stats.data_vars
    )
    assert int(sample_stats["diverging"].sum()) == int(result.divergences.sum())
    np.testing.assert_allclose(
        arviz.bfmi(data), diagnostics.bfmi(result.stats["energy"]), rtol=1e-6
    )
    table = arviz.summary(data, var_names=["mu"])
    ours = result.summary()["mu"]
    np.testing.assert_allclose(table["ess_bulk"]["mu"], ours["ess_bulk"], rtol=0.01)
    np.testing.assert_allclose(table["r_hat"]["mu"], ours["rhat"], atol=0.01)


def _run(kernel, n_samples=20, n_warmup=10, **options):
    return chains.run(
        jax.random.key(3),
        kernel,
        normal_normal,
        (jnp.zeros(5),),
        {"y": NN_DATA},
        n_samples=n_samples,
        n_warmup=n_warmup,
        n_chains=2,
        warn=False,
        **options,
    )


def test_statistics_through_compositions():
    a = ppl.select("mu")
    assert _run(mcmc.mh(a)).stats == {}
    hmc = _run(mcmc.hmc(a, n_steps=3)).stats
    assert set(hmc) == {"diverging", "step_size"}
    both = _run(mcmc.cycle(mcmc.hmc(a, n_steps=3), mcmc.mala(a))).stats
    assert set(both) == {"diverging[0]", "step_size[0]", "diverging[1]", "step_size[1]"}
    mixed = _run(mcmc.mixture_kernel([mcmc.mh(a), mcmc.hmc(a, n_steps=3)]))
    assert set(mixed.stats) == {"diverging", "step_size"}
    repeated = _run(mcmc.repeat_kernel(mcmc.hmc(a, step_size=50.0, n_steps=3), 4), n_warmup=0)
    # a step size this large diverges at some repetition of almost every step
    assert repeated.divergences.sum() > 10


def test_a_divergence_of_any_repetition_is_reported():
    # At this step size some trajectories diverge: four repetitions per step diverge
    # at least once far more often than one does (the last one alone would not).
    hmc = mcmc.hmc(ppl.select("mu"), step_size=1.2, n_steps=2)
    once = _run(hmc, 200, 0).divergences.sum() / 400
    repeated = _run(mcmc.repeat_kernel(hmc, 4), 200, 0).divergences.sum() / 400
    assert 0.05 < once < 0.5 and repeated > 2 * once, (once, repeated)


def test_chunks_of_the_progress_bar_do_not_change_the_draws():
    hmc = mcmc.hmc(ppl.select("mu"), n_steps=2)
    # 41 steps: chunks of 3, the last one padded
    quiet = _run(hmc, 37, 4, progress=False)
    shown = _run(hmc, 37, 4, progress=True)
    np.testing.assert_array_equal(quiet.samples["mu"], shown.samples["mu"])
    np.testing.assert_array_equal(quiet.stats["step_size"], shown.stats["step_size"])
    np.testing.assert_array_equal(quiet.final.trace["mu"], shown.final.trace["mu"])


def test_warnings_name_the_addresses_and_can_be_turned_off():
    rng = np.random.default_rng(0)
    apart = ppl.ChoiceMap.d(
        {
            "good": jnp.asarray(rng.normal(size=(2, 100))),
            ("sub", "bad"): jnp.asarray(rng.normal(size=(2, 100)) + jnp.array([[0.0], [3.0]])),
        }
    )
    result = MCMCResult(apart, jnp.ones((2, 100)), None, {"diverging": jnp.zeros((2, 100), bool)})
    with pytest.warns(SamplerWarning, match=r"R-hat is above 1.01 at \('sub', 'bad'\)"):
        check(result)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(mcmc.mh(ppl.select("mu")))  # warn=False: nothing, even on a short run


def test_print_summary_reports_the_sampler(capsys):
    result, _ = _eight_schools(centred, 0)
    result.print_summary()
    out = capsys.readouterr().out
    for text in ("ess_bulk", "ess_tail", "r_hat", "5%", "divergences:", "tree depth", "E-BFMI"):
        assert text in out, text
    assert "\ntheta " not in out and "\ntheta[7]" in out


def test_counts_must_be_positive_ints():
    for bad in (dict(n_samples=0), dict(n_chains=2.0), dict(thin=-1), dict(n_warmup=-1)):
        options: dict[str, Any] = dict(n_samples=10, n_warmup=5, n_chains=2) | bad
        with pytest.raises(ppl.PPLError, match=next(iter(bad))):
            chains.run(
                jax.random.key(0), nuts(), normal_normal, (jnp.zeros(5),), {"y": NN_DATA}, **options
            )


def test_chains_start_at_a_given_point():
    point = vi.initial_values(jax.random.key(0), non_centred, {"y": Y}, (SIGMA,))
    result = chains.run(
        jax.random.key(1),
        mcmc.mh(ppl.select("mu")),
        non_centred,
        (SIGMA,),
        {"y": Y},
        n_samples=5,
        n_warmup=0,
        n_chains=3,
        init=point,
        progress=False,
        warn=False,
    )
    # mh moves mu only: tau and eta stay at the point in every chain
    np.testing.assert_allclose(result.samples["tau"], float(point["tau"]), rtol=1e-6)
    assert result.samples["eta"].shape == (3, 5, 8)

    def start(init, **options):
        return chains.run(
            jax.random.key(1),
            nuts(),
            non_centred,
            (SIGMA,),
            {"y": Y},
            n_samples=5,
            n_warmup=0,
            init=init,
            progress=False,
            **options,
        )

    with pytest.raises(ppl.PPLError, match="'tau' is outside the support"):
        start({"tau": -1.0})
    with pytest.raises(ppl.PPLError, match="observed choice 'y'"):
        start({"y": Y})
    with pytest.raises(ppl.PPLError, match="either traces= .* or init="):
        start({"tau": 1.0}, traces=result.final.trace)
