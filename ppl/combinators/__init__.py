"""Combinators: generative functions built from generative functions."""

from ppl.combinators.mix import mix
from ppl.combinators.scan import Scan, scan
from ppl.combinators.sum_out import sum_out
from ppl.combinators.switch import Switch, cond, switch
from ppl.combinators.vmap import Vmap, repeat, vmap

__all__ = ["Scan", "Switch", "Vmap", "cond", "mix", "repeat", "scan", "sum_out", "switch", "vmap"]
