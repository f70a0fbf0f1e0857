"""Placing the particle (or chain) axis of a pytree on a device mesh.

Importance sampling, SMC, MCMC and VI's ``fit`` take ``mesh=``, a one-axis
``jax.sharding.Mesh``: the leading axis of every per-particle array (traces,
log weights, chain states, per-particle keys; a minibatch's examples, the
independent estimates of a multi-sample average) is split over the mesh's
devices, and everything else (arguments, observations, ``log_z``, trained
parameters and optimizer state) is replicated. Nothing here computes: the
global reductions (log-sum-exp of the weights, the ESS, the cumulative sums
of resampling, the mean of a minibatch's estimates and its gradient) stay
ordinary ``jnp`` code, and XLA's partitioner turns them into collectives
under ``jit``.

The layout is stated with ``jax.lax.with_sharding_constraint``, which needs
mesh axes of type ``Auto`` (the partitioner picks the collectives); a mesh
built with ``Explicit`` axes (``jax.make_mesh``'s default) is re-made over the
same devices with an ``Auto`` axis, so either kind of mesh works.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ppl._errors import PPLError
from ppl.core import is_tracer


def particle_mesh(mesh, what: str) -> Mesh | None:
    """Check a ``mesh=`` argument and return it ready for placing particles.

    Args:
        mesh: ``None`` (no sharding) or a ``jax.sharding.Mesh`` with one axis.
        what: the caller, for the message (e.g. ``"importance"``).

    Returns:
        ``None``, or a one-axis mesh over the same devices whose axis has type
        ``Auto`` (equal to ``mesh`` when it already has).

    Raises:
        PPLError: if ``mesh`` is not a ``Mesh``, or has more than one axis.

    Examples:
        >>> mesh = particle_mesh(jax.make_mesh((8,), ("particles",)), "importance")
        >>> mesh.shape
        {'particles': 8}
    """
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise PPLError(
            f"{what}: mesh must be a jax.sharding.Mesh (or None for one device); got "
            f"{type(mesh).__name__}. Build one over the devices to use, e.g. "
            "mesh=jax.make_mesh((jax.device_count(),), ('particles',))."
        )
    if len(mesh.axis_names) != 1:
        sizes = ", ".join(f"{a}={s}" for a, s in mesh.shape.items())
        raise PPLError(
            f"{what}: the mesh has {len(mesh.axis_names)} axes ({sizes}); particles, chains and "
            "examples are split over a mesh with exactly one axis. Pass a one-axis mesh over the "
            "devices to use, e.g. jax.sharding.Mesh(mesh.devices.reshape(-1), ('particles',))."
        )
    if mesh.axis_types == (AxisType.Auto,):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,))


def check_divisible(n: int, mesh: Mesh | None, argument: str, what: str) -> None:
    """Refuse a count that the mesh's devices cannot share equally.

    Args:
        n: the number of particles or chains.
        mesh: the mesh from ``particle_mesh``, or ``None`` (anything goes).
        argument: what set ``n``, for the message (e.g. ``"n"``, ``"n_chains"``,
            ``"the number of starting traces"``).
        what: the caller, for the message.

    Raises:
        PPLError: if ``n`` is not a multiple of the number of devices, naming
            the nearest multiples.

    Examples:
        >>> check_divisible(1024, mesh, "n", "importance")   # fine on 8 devices
    """
    if mesh is None or n % mesh.size == 0:
        return
    d = mesh.size
    down, up = (n // d) * d, (n // d + 1) * d
    hint = f"{up}" if down == 0 else f"{down} or {up}"
    raise PPLError(
        f"{what}: {argument} is {n}, which cannot be split equally over the {d} devices of the "
        f"mesh. Use a multiple of {d} (e.g. {hint}), or a mesh over a number of devices that "
        f"divides {n}."
    )


def shard(tree, mesh: Mesh | None):
    """Lay the leading axis of every array in ``tree`` out over the mesh's axis.

    Inside ``jit`` this is a constraint for the partitioner; outside, it moves
    the data. Scalars (no leading axis) are replicated.

    Args:
        tree: a pytree of arrays sharing a leading particle (or chain) axis whose
            size is a multiple of ``mesh.size``.
        mesh: the mesh from ``particle_mesh``, or ``None`` (``tree`` as it is).

    Returns:
        ``tree`` with the same values, sharded.

    Examples:
        >>> keys = shard(jax.random.split(key, 1024), mesh)
        >>> len(keys.sharding.device_set)
        8
    """
    if mesh is None:
        return tree
    split = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    whole = NamedSharding(mesh, PartitionSpec())

    def place(x):
        return jax.lax.with_sharding_constraint(x, split if jax.numpy.ndim(x) else whole)

    return jax.tree.map(place, tree)


def replicate(tree, mesh: Mesh | None):
    """Put every concrete ``jax.Array`` in ``tree`` on all the mesh's devices.

    What is shared by every particle (arguments, observations) is copied to
    each device once; an array committed to another device would otherwise
    make ``jit`` refuse to mix it with the sharded ones. Keys are placed too
    (by their bits, which also works across processes). Traced values and
    non-JAX leaves (Python numbers, NumPy arrays) are left as they are: ``jit``
    places those itself.

    Args:
        tree: a pytree.
        mesh: the mesh from ``particle_mesh``, or ``None`` (``tree`` as it is).

    Returns:
        ``tree`` with the same values.

    Examples:
        >>> args = replicate((xs,), mesh)
    """
    if mesh is None:
        return tree
    whole = NamedSharding(mesh, PartitionSpec())

    def place(x):
        if not isinstance(x, jax.Array) or is_tracer(x):
            return x
        if jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key):
            # device_put refuses a key onto devices of other processes; its bits it takes
            data = jax.device_put(jax.random.key_data(x), whole)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.device_put(x, whole)

    return jax.tree.map(place, tree)


def keep_replicated(tree, mesh: Mesh | None):
    """Inside ``jit``, state that every array in ``tree`` is whole on every device.

    A compiled step whose outputs feed its next call (an optimizer's
    parameters and state) pins them to the layout they came in with, so the
    second call finds the same input layout as the first and compiles
    nothing; and every process of a multi-host run holds the whole value, so
    it can read it on the host.

    Args:
        tree: a pytree of arrays (traced or not).
        mesh: the mesh from ``particle_mesh``, or ``None`` (``tree`` as it is).

    Returns:
        ``tree`` with the same values, replicated.

    Examples:
        >>> step = jax.jit(lambda p, g: keep_replicated(p - 0.1 * g, mesh))
    """
    if mesh is None:
        return tree
    whole = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, whole), tree)


def split_keys(key, n: int, mesh: Mesh | None):
    """``n`` per-particle keys split from ``key``, then sharded.

    The split comes first and does not depend on the mesh (with or without
    ``jax_threefry_partitionable``, a sharded computation draws the same bits
    as an unsharded one), so particle ``i`` gets the same key on one device
    or on many, and the results agree.

    Args:
        key: a ``jax.random`` key.
        n: the number of keys.
        mesh: the mesh from ``particle_mesh``, or ``None``.

    Returns:
        A key array of shape ``(n,)``, sharded over the mesh when one is given.

    Examples:
        >>> keys = split_keys(jax.random.key(0), 1024, mesh)
    """
    return shard(jax.random.split(key, n), mesh)
