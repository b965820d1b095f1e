"""`random`: a uniform draw from the eligible pool, the baseline every comparison needs."""

from __future__ import annotations

import json

from fdb import images as image_store
from mining.config import MiningConfig
from mining.strategies.base import Ranking, StrategyContext, register
from records import SelectedImage


@register("random")
class RandomDraw:
    def __init__(self, seed: int = 0):
        self.seed = seed

    @classmethod
    def from_config(cls, config: MiningConfig) -> "RandomDraw":
        return cls(config.seed)

    def rank(self, context: StrategyContext, budget: int, exclude: frozenset = frozenset()) -> Ranking:
        # An indexed range of the pool in random-key order: only the drawn images are read, whatever its size.
        generation = context.pool_generation()
        drawn, eligible = image_store.random_draw(context.fdb, context.model_version, budget, self.seed, exclude,
                                                  processed_pool=generation["processed_pool"])
        images = [SelectedImage(d["_id"], d["uri"], r,
                                reason=f"random draw (seed {self.seed}) from {eligible} eligible pool images")
                  for r, d in enumerate(drawn)]
        # The pool's generation names the draw: the same pool and seed draw the same images again.
        return Ranking(images, {"seed": self.seed},
                       identity=(json.dumps({**generation, "eligible": eligible}, sort_keys=True),))
