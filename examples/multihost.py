"""One program over the devices of every process: SMC and a VI fit on a global mesh.

Every process runs this same script; ``jax.distributed.initialize`` joins them,
``jax.devices()`` then lists the devices of all of them, and the mesh over
those devices is passed as ``mesh=`` exactly as on one machine. With one
process (the default) the script runs as it is, on the local devices.

Two processes on one machine, four CPU devices each (the same numbers as one
process with eight)::

    export XLA_FLAGS=--xla_force_host_platform_device_count=4
    python examples/multihost.py --num-processes 2 --process-id 0 --coordinator localhost:12355 &
    python examples/multihost.py --num-processes 2 --process-id 1 --coordinator localhost:12355

On a cluster, start one process per host with the same ``--num-processes``,
its own ``--process-id`` and the first host's address as ``--coordinator``
(see docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from ppl.inference import mcmc, smc, vi

# NumPy, not jax: a jax array made at import would start the backend before
# jax.distributed.initialize, which must come first.
XS = np.linspace(-1.0, 1.0, 16, dtype=np.float32)
YS = 2.0 * XS + 0.3 * np.sin(7.0 * XS)


@ppl.gen
def regression(xs):
    w = ppl.normal(0.0, 1.0) @ "w"
    b = ppl.normal(0.0, 1.0) @ "b"
    return ppl.normal(w * xs + b, 0.5) @ "y"


@ppl.gen
def guide(mu, log_s):
    ppl.normal(mu[0], jnp.exp(log_s[0])) @ "w"
    ppl.normal(mu[1], jnp.exp(log_s[1])) @ "b"


def start(process_id: int, num_processes: int, coordinator: str) -> None:
    """Join the processes of a multi-host run (nothing with one process).

    Args:
        process_id: this process's index, from 0 to ``num_processes - 1``.
        num_processes: how many processes take part.
        coordinator: ``host:port`` of process 0, which every process can reach.

    Raises:
        ValueError: if ``process_id`` is out of range.

    Example:
        >>> start(0, 1, "localhost:12355")  # one process: nothing to join
    """
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be in [0, {num_processes}), got {process_id}.")
    if num_processes == 1:
        return
    # CPU devices of several processes talk through gloo (the CPU client has no
    # collectives across processes otherwise); GPU and TPU backends ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def run(particles_per_device: int = 256, steps: int = 100) -> dict:
    """SMC and a VI fit of a Bayesian regression, split over all global devices.

    Every process calls it with the same arguments and gets the same numbers,
    equal (up to float rounding) to one process's over as many devices.

    Args:
        particles_per_device: SMC particles, and ELBO estimates per step, per device.
        steps: optimizer steps of the fit.

    Returns:
        A dict: ``devices``, ``processes``, ``log_ml`` (SMC's estimate of the
        log marginal likelihood), ``mu`` and ``log_s`` (the fitted guide's
        parameters) and ``history_last`` (the ELBO estimate of the last step).

    Example:
        >>> result = run(particles_per_device=8, steps=5)
        >>> sorted(result)
        ['devices', 'history_last', 'log_ml', 'log_s', 'mu', 'processes']
    """
    mesh = jax.make_mesh((jax.device_count(),), ("particles",))
    n = particles_per_device * jax.device_count()
    obs = {"y": YS}
    particles = smc.init(jax.random.key(0), regression, obs, (XS,), n, mesh=mesh)
    particles = smc.resample(jax.random.key(1), particles)
    kernel = mcmc.mh(ppl.select("w", "b"))
    particles = smc.rejuvenate(jax.random.key(2), particles, kernel)
    log_ml = float(particles.log_marginal_likelihood)

    objective = vi.elbo(regression, guide, obs)
    result = vi.fit(
        objective,
        jax.random.key(3),
        (XS,),
        (jnp.zeros(2), jnp.zeros(2)),
        optimizer=optax.adam(0.05),
        steps=steps,
        num_samples=n,
        chunk=25,
        mesh=mesh,
        progress=False,
    )
    mu, log_s = result.guide_args
    return {
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "log_ml": log_ml,
        "mu": [float(v) for v in mu],
        "log_s": [float(v) for v in log_s],
        "history_last": float(result.history[-1]),
    }


def main(argv=None) -> dict:
    """Parse the command line, join the processes, run, print (and write) the result.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        What :func:`run` returns.

    Example:
        >>> main(["--quick"])["processes"]
        1
    """
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--process-id", type=int, default=0)
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--coordinator", default="localhost:12355", help="host:port of process 0")
    ap.add_argument("--quick", action="store_true", help="fewer particles and steps")
    ap.add_argument("--json", metavar="PATH", help="also write the result here")
    args = ap.parse_args(argv)
    start(args.process_id, args.num_processes, args.coordinator)
    result = run(*((16, 20) if args.quick else (256, 100)))
    print(
        f"process {args.process_id} of {result['processes']}, {result['devices']} devices "
        f"({jax.local_device_count()} here)"
    )
    print(f"SMC log marginal likelihood: {result['log_ml']:.6f}")
    print(f"fitted guide: mu = {result['mu']}, log_s = {result['log_s']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    return result


if __name__ == "__main__":
    main()
