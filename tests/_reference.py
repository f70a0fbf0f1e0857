"""The reference for ``_strategies`` specs: log densities from numpyro, summed by
walking the spec in Python over a nested dict of values, with no ppl
interpreter involved (which branch runs is decided here too, with Python's
truthiness for a cond's predicate)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from _strategies import (
    COND_OFFSET,
    FAMILY,
    OFFSETS,
    THRESHOLDS,
    XS,
    Call,
    Leaf,
    Mix,
    Repeat,
    Scan,
    Spec,
    Switch,
    feature,
    mix_logits,
    numpyro_logp,
)


def taken_branch(node: Switch, u, on_value) -> int:
    """The branch run, decided in Python: a predicate is true when nonzero."""
    if node.cond:
        return int(
            bool(
                np.asarray(
                    on_value if node.on >= 0 else np.floor(np.float32(u) + np.float32(COND_OFFSET))
                )
                != 0
            )
        )
    if node.on >= 0:
        return int(np.asarray(on_value).astype(np.int64)) % len(node.branches)
    return int(
        np.sum([np.float32(u) > np.float32(t) for t in THRESHOLDS[: len(node.branches) - 1]])
    )


def _index(values, i):
    return jax.tree.map(lambda v: v[i], values)


def reference_slots(spec: Spec, values: dict, a, prefix=(), slot=(), out=None):
    """``({(path, slot): logp}, retval)`` for every choice the run with these
    values makes: ``slot`` is its position along the stacked axes of the
    enclosing vmap/repeat/scan. ``values``: a nested dict (``ChoiceMap.to_dict()``);
    only the values of choices made are read."""
    out = {} if out is None else out
    a = jnp.asarray(a, jnp.result_type(float))  # inputs in the program's precision
    feats, vals = [], []
    for node in spec.nodes:
        u = (a if node.dep < 0 else feats[node.dep]) + node.shift
        here = (*prefix, node.addr)
        if isinstance(node, Leaf):
            v = values[node.addr]
            # NaN: a choice the run did not make (the reference took another branch)
            assert not (jnp.issubdtype(jnp.result_type(v), jnp.inexact) and np.any(np.isnan(v))), (
                here,
                slot,
            )
            out[(here, slot)] = numpyro_logp(FAMILY[node.family].numpyro(u), v)
            ret = v
        elif isinstance(node, Call):
            ret = reference_slots(node.sub, values[node.addr], u, here, slot, out)[1]
        elif isinstance(node, Repeat):
            before = set(out)
            ret = jnp.stack(
                [
                    reference_slots(
                        node.sub,
                        _index(values[node.addr], i),
                        u + OFFSETS[i] if node.mapped else u,
                        here,
                        (*slot, i),
                        out,
                    )[1]
                    for i in range(node.n)
                ]
            )
            if node.subsample_of is not None:  # a subsample's densities stand for all of them
                for slot_key in set(out) - before:
                    out[slot_key] = out[slot_key] * (node.subsample_of / node.n)
        elif isinstance(node, Scan):
            ret = u
            for t in range(node.n):
                body = _index(values[node.addr]["body"], t)
                ret = reference_slots(
                    node.sub, body, ret + XS[t], (*here, "body"), (*slot, t), out
                )[1]
        elif isinstance(node, Switch):
            j = taken_branch(node, u, vals[node.on] if node.on >= 0 else None)
            ret = reference_slots(node.branches[j], values[node.addr], u, here, slot, out)[1]
        else:  # Mix
            c = values[node.addr]["component"]
            logits = mix_logits(u, len(node.branches))
            out[((*here, "component"), slot)] = numpyro_logp(nd.Categorical(logits=logits), c)
            ret = reference_slots(
                node.branches[int(c)], values[node.addr]["value"], u, (*here, "value"), slot, out
            )[1]
        vals.append(ret)
        feats.append(feature(ret))
    return out, feats[-1]


def reference(spec: Spec, values: dict, a) -> tuple[dict, jax.Array]:
    """Per-address numpyro log densities ``{path tuple: logp}`` (summed over the
    stacked axis of vmap/repeat/scan) and the retval, for a nested dict of
    values (as from ``ChoiceMap.to_dict()``). Only visited addresses appear."""
    slots, ret = reference_slots(spec, values, a)
    logps = {}
    for (path, _), lp in slots.items():
        logps[path] = logps[path] + lp if path in logps else lp
    return logps, ret


def layout(spec: Spec, prefix=(), stack=()) -> dict:
    """Every address some run of ``spec`` can make: ``{path: (family, stack shape)}``
    (family ``None`` for a mixture's component)."""
    out = {}
    for node in spec.nodes:
        here = (*prefix, node.addr)
        if isinstance(node, Leaf):
            out[here] = (node.family, stack)
        elif isinstance(node, Call):
            out.update(layout(node.sub, here, stack))
        elif isinstance(node, Repeat):
            out.update(layout(node.sub, here, (*stack, node.n)))
        elif isinstance(node, Scan):
            out.update(layout(node.sub, (*here, "body"), (*stack, node.n)))
        else:
            inner = (*here, "value") if isinstance(node, Mix) else here
            if isinstance(node, Mix):
                out[(*here, "component")] = (None, stack)
            for b in node.branches:
                out.update(layout(b, inner, stack))
    return out


def some_value(family, stack, dtype):
    """A value in the support of ``family`` (at input 0) for every slot of ``stack``."""
    if family is None:
        return jnp.zeros(stack, dtype)
    d = FAMILY[family].numpyro(jnp.asarray(0.0))
    return jnp.asarray(d.sample(jax.random.key(7), stack)).astype(dtype)
