"""AIR in Pyro, for benchmarks/air_epoch.py: the model, guide and networks of
examples/airlib/model.py (same sizes, same separable spatial transformer,
same priors), written the Pyro way with a plate over the minibatch.

* REINFORCE: ``TraceGraph_ELBO`` with the presence sites given a learned
  ``baseline_value`` (Pyro adds the baseline's squared-error loss itself);
* enumeration: ``TraceEnum_ELBO`` with the guide's presence sites enumerated
  in parallel (later guide computations broadcast over the enumerated values).
"""

# pyro and torch come from the optional `bench` extra (pip install -e '.[bench]'),
# which the test environment does not install.
# pyright: reportMissingImports=false
from __future__ import annotations

import math

import pyro
import pyro.distributions as pd
import pyro.optim
import torch
from pyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO
from torch import nn

CANVAS, OBJ, WHAT, HIDDEN, STEPS = 50, 28, 50, 200, 2
PIXEL_SD, RHO = 0.3, 0.01
RHO_LOGIT = math.log(RHO) - math.log1p(-RHO)
WHERE_LOC = torch.tensor([math.log(22 / 50), 0.0, 0.0])  # airlib.data.SIZE / CANVAS
WHERE_SD = torch.tensor([0.2, 0.6, 0.6])


def centres(n):
    return (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2.0 - 1.0


def _weights(coords, n):
    index = (coords + 1.0) * (n / 2.0) - 0.5
    return torch.relu(1.0 - (index.unsqueeze(-1) - torch.arange(n, dtype=torch.float32)).abs())


def bilinear(image, ys, xs):
    """Batched: image (..., H, W), ys (..., h), xs (..., w) -> (..., h, w)."""
    return _weights(ys, image.shape[-2]) @ image @ _weights(xs, image.shape[-1]).transpose(-1, -2)


def window(where):
    return where[..., 0:1].exp(), where[..., 1:2], where[..., 2:3]


def glimpse(canvas, where):
    s, tx, ty = window(where)
    u = centres(OBJ)
    return bilinear(canvas, s * u + ty, s * u + tx)


def place(obj, where):
    s, tx, ty = window(where)
    c = centres(CANVAS)
    return bilinear(obj, (c - ty) / s, (c - tx) / s)


def where_posterior(raw):
    loc, sd = raw.chunk(2, -1)
    return WHERE_LOC + 3.0 * WHERE_SD * torch.tanh(loc), WHERE_SD * torch.sigmoid(sd)


def mlp(*sizes):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp(WHAT, 200, OBJ * OBJ)

    def forward(self, what):
        return torch.sigmoid(self.net(what) - 2.0).reshape(*what.shape[:-1], OBJ, OBJ)


class Guide(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(CANVAS * CANVAS, HIDDEN)
        self.rnn = nn.GRUCell(HIDDEN + 3 + WHAT + 1, HIDDEN)
        self.pres = nn.Linear(HIDDEN, 1)
        self.where = nn.Linear(HIDDEN, 6)
        self.what = mlp(OBJ * OBJ, 200, 2 * WHAT)
        self.baseline = mlp(CANVAS * CANVAS, 100, STEPS)

    def step(self, inputs, h):
        # GRUCell takes (batch, features): fold any enumeration dimensions into the batch.
        lead = torch.broadcast_shapes(inputs.shape[:-1], h.shape[:-1])
        inputs, h = inputs.expand(*lead, inputs.shape[-1]), h.expand(*lead, HIDDEN)
        return self.rnn(inputs.reshape(-1, inputs.shape[-1]), h.reshape(-1, HIDDEN)).reshape(
            *lead, HIDDEN
        )


def _cat(*xs):
    lead = torch.broadcast_shapes(*(x.shape[:-1] for x in xs))
    return torch.cat([x.expand(*lead, x.shape[-1]) for x in xs], -1)


def make(presence: str, lr: float = 1e-3):
    """``(svi, step(batch) -> loss)`` for ``presence`` in {"reinforce", "enum"}; the
    parameters are named after the variant, so variants can share Pyro's global store."""
    decoder, net = Decoder(), Guide()
    enumerate_ = presence == "enum"

    def model(x):
        pyro.module(f"{presence}.decoder", decoder)
        b = x.shape[0]
        with pyro.plate("data", b, dim=-1):
            canvas = torch.zeros(b, CANVAS, CANVAS)
            alive = torch.ones(b)
            for t in range(STEPS):
                present = pyro.sample(
                    f"present{t}", pd.Bernoulli(logits=torch.where(alive > 0, RHO_LOGIT, 0.0))
                )
                alive = alive * present
                where = pyro.sample(
                    f"where{t}",
                    pd.Normal(WHERE_LOC, WHERE_SD).expand([b, 3]).to_event(1),  # pyright: ignore[reportAttributeAccessIssue]  # pyro's expand returns its torch distribution type, which has to_event
                )
                what = pyro.sample(
                    f"what{t}",
                    pd.Normal(0.0, 1.0).expand([b, WHAT]).to_event(1),  # pyright: ignore[reportAttributeAccessIssue]  # as above
                )
                canvas = canvas + alive[..., None, None] * place(decoder(what), where)
            pyro.sample(
                "x", pd.Normal(canvas.reshape(*canvas.shape[:-2], -1), PIXEL_SD).to_event(1), obs=x
            )

    def guide(x):
        pyro.module(f"{presence}.guide", net)
        b = x.shape[0]
        with pyro.plate("data", b, dim=-1):
            h = torch.zeros(b, HIDDEN)
            embedded = torch.relu(net.embed(x))
            baselines = net.baseline(x)
            where, what, present = WHERE_LOC.expand(b, 3), torch.zeros(b, WHAT), torch.ones(b)
            alive = torch.ones(b)
            for t in range(STEPS):
                h = net.step(_cat(embedded, where, what, present[..., None]), h)
                infer = (
                    {"enumerate": "parallel"}
                    if enumerate_
                    else {"baseline": {"baseline_value": baselines[:, t]}}
                )
                present = pyro.sample(
                    f"present{t}",
                    pd.Bernoulli(logits=torch.where(alive > 0, net.pres(h)[..., 0], 0.0)),
                    infer=infer,  # pyright: ignore[reportArgumentType]  # a plain dict is pyro's InferDict
                )
                alive = alive * present
                loc, sd = where_posterior(net.where(h))
                on = alive[..., None] > 0
                where = pyro.sample(
                    f"where{t}",
                    pd.Normal(
                        torch.where(on, loc, WHERE_LOC), torch.where(on, sd, WHERE_SD)
                    ).to_event(1),
                )
                cut = glimpse(x.reshape(b, CANVAS, CANVAS), where)
                mu, log_sd = net.what(cut.reshape(*cut.shape[:-2], -1)).chunk(2, -1)
                what = pyro.sample(
                    f"what{t}",
                    pd.Normal(
                        torch.where(on, mu, 0.0), torch.where(on, log_sd.exp(), 1.0)
                    ).to_event(1),
                )
                present = alive

    loss = TraceEnum_ELBO(max_plate_nesting=1) if enumerate_ else TraceGraph_ELBO()
    adam = pyro.optim.Adam({"lr": lr})  # pyright: ignore[reportAttributeAccessIssue]  # made at import
    svi = SVI(model, guide, adam, loss)
    return svi, svi.step
