"""`random`: a uniform draw from the eligible pool, the baseline every comparison needs."""

from __future__ import annotations

import hashlib

import numpy as np

from fdb import images as image_store
from fdb.vectors import to_object_ids
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
        # Sorted ids only: the pool's records stay unread, and only the drawn images are read.
        pool = image_store.eligible_pool_ids(context.fdb, context.model_version)
        if exclude:
            pool = pool[~np.isin(pool, np.array([i.binary for i in exclude], dtype="S12"))]
        rng = np.random.default_rng(self.seed)
        picked = sorted(rng.choice(len(pool), size=min(budget, len(pool)), replace=False).tolist()) if len(pool) else []
        drawn = to_object_ids(pool[picked]) if picked else []
        records = image_store.by_id(context.fdb, drawn)
        images = [SelectedImage(image_id, records[image_id]["uri"], r,
                                reason=f"random draw (seed {self.seed}) from {len(pool)} eligible pool images")
                  for r, image_id in enumerate(drawn)]
        return Ranking(images, {"seed": self.seed}, identity=(hashlib.sha256(pool.tobytes()).hexdigest(),))
