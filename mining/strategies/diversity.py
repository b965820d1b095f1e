"""`diversity`: a core-set of the pool (Sener and Savarese, "Active Learning for Convolutional Neural Networks: A
Core-Set Approach", 2018): k-center greedy over image vectors. Each pick is the pool image farthest from
everything labelled and everything already picked, so the batch covers the parts of the feature space the
labelled set does not.

Distances are cosine distances of image vectors centred on the pool's mean (raw vectors of street scenes sit
close together). The labelled images this model has processed are the first centres; without any, the first pick
is the image farthest from the pool's mean. Above `max_candidates` pool images, a seeded random sample of that
many is searched (the cost is budget x candidates x dimension)."""

from __future__ import annotations

import numpy as np

from fdb import images as image_store
from fdb.vectors import to_object_ids
from mining.config import MiningConfig
from mining.strategies.base import Ranking, StrategyContext, register, unit_rows
from records import IMAGE_LAYER, SelectedImage


@register("diversity")
class CoreSet:
    def __init__(self, max_candidates: int = 50_000, seed: int = 0):
        self.max_candidates, self.seed = max_candidates, seed

    @classmethod
    def from_config(cls, config: MiningConfig) -> "CoreSet":
        return cls(seed=config.seed)

    def rank(self, context: StrategyContext, budget: int, exclude: frozenset = frozenset()) -> Ranking:
        fdb, model_version = context.fdb, context.model_version
        pool = image_store.eligible_pool_ids(fdb, model_version)
        if len(pool) > self.max_candidates:
            keep = np.random.default_rng(self.seed).choice(len(pool), self.max_candidates, replace=False)
            pool = pool[np.sort(keep)]
        candidates = [i for i in to_object_ids(pool) if i not in exclude]
        vectors = fdb.vectors_by_owner(model_version, IMAGE_LAYER, candidates)
        candidates = [i for i in candidates if i in vectors]
        params = {"max_candidates": self.max_candidates, "seed": self.seed}
        identity = (context.pool_generation(),)
        if not candidates:
            return Ranking([], params, identity=identity)
        raw = np.stack([vectors[i] for i in candidates]).astype(np.float32)
        centre = raw.mean(axis=0)
        pool_vectors = unit_rows(raw - centre)
        labelled = fdb.vectors_by_owner(model_version, IMAGE_LAYER,
                                        list(image_store.labelled_ids(fdb, model_version)))
        if labelled:
            centres = unit_rows(np.stack(list(labelled.values())).astype(np.float32) - centre)
            nearest = 1.0 - (pool_vectors @ centres.T).max(axis=1)
            start = f"{len(labelled)} labelled images"
        else:
            # Nothing labelled to cover yet: the first pick is the most atypical image, every other one's
            # distance then counts from it.
            nearest = np.full(len(candidates), 2.0, np.float32)
            nearest[int(np.argmax(np.linalg.norm(raw - centre, axis=1)))] = 3.0
            start = "no labelled images"
        picks, gaps = [], []
        for _ in range(min(budget, len(candidates))):
            pick = int(np.argmax(nearest))
            picks.append(pick)
            gaps.append(float(nearest[pick]))
            nearest = np.minimum(nearest, 1.0 - pool_vectors @ pool_vectors[pick])
            nearest[pick] = -np.inf
        records = image_store.by_id(fdb, [candidates[p] for p in picks])
        images = [SelectedImage(candidates[p], records[candidates[p]]["uri"], rank,
                                reason=f"core-set pick {rank + 1}: " + (
                                    "the pool image farthest from the pool's mean (nothing labelled to cover yet)"
                                    if gap > 2 else f"cosine distance {gap:.3f} to the nearest of {start} and the "
                                                    f"{rank} picked before it"))
                  for rank, (p, gap) in enumerate(zip(picks, gaps))]
        return Ranking(images, params, identity=identity)

