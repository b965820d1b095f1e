"""`uncertainty`: the images whose detections the model is least sure of, the standard active-learning baseline
for detection (Brust et al., "Active Learning for Deep Object Detection", 2019: per-detection uncertainty,
aggregated per image).

A stored detection keeps its class score (the top class's softmax probability, above the detect stage's
`min_score`), so a detection's uncertainty is read from it: `entropy`, the binary entropy of the score in bits
(1 at 0.5, 0 at 0 or 1: is this object real?), or `least_confidence`, 1 - score. An image's is the `max` (its
most doubtful detection) or the `sum` (how much doubt it holds) over its detections; an image without any has
none."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fdb import detections as detection_store
from fdb import images as image_store
from fdb.vectors import to_object_ids
from mining.config import MiningConfig
from mining.strategies.base import Ranking, StrategyContext, register
from records import SelectedImage

MEASURES = {
    "entropy": lambda s: -(s * np.log2(np.clip(s, 1e-12, 1)) + (1 - s) * np.log2(np.clip(1 - s, 1e-12, 1))),
    "least_confidence": lambda s: 1.0 - s,
}
AGGREGATES = {"max": np.max, "sum": np.sum}


@register("uncertainty")
class Uncertainty:
    def __init__(self, measure: str = "entropy", aggregate: str = "max"):
        if measure not in MEASURES or aggregate not in AGGREGATES:
            raise ValueError(f"uncertainty is measured by one of {sorted(MEASURES)} and aggregated by one of "
                             f"{sorted(AGGREGATES)}; got {measure!r}, {aggregate!r}")
        self.measure, self.aggregate = measure, aggregate

    @classmethod
    def from_config(cls, config: MiningConfig) -> "Uncertainty":
        return cls(config.uncertainty, config.uncertainty_aggregate)

    def rank(self, context: StrategyContext, budget: int, exclude: frozenset = frozenset()) -> Ranking:
        pool = [i for i in to_object_ids(image_store.eligible_pool_ids(context.fdb, context.model_version))
                if i not in exclude]
        scores = defaultdict(list)
        for image_id, score in detection_store.detection_scores(context.fdb, context.model_version, pool):
            scores[image_id].append(score)
        doubt = {i: float(AGGREGATES[self.aggregate](MEASURES[self.measure](np.asarray(s, float))))
                 for i, s in scores.items()}
        ranked = sorted(doubt, key=lambda i: (-doubt[i], str(i)))[:budget]
        records = image_store.by_id(context.fdb, ranked)
        images = []
        for rank, image_id in enumerate(ranked):
            s = sorted(scores[image_id], key=lambda x: abs(x - 0.5))
            images.append(SelectedImage(
                image_id, records[image_id]["uri"], rank,
                reason=f"uncertain: {self.aggregate} {self.measure} {doubt[image_id]:.3f} over {len(s)} detections "
                       f"(scores nearest 0.5: {', '.join(f'{x:.2f}' for x in s[:3])})"))
        return Ranking(images, {"uncertainty": self.measure, "aggregate": self.aggregate},
                       identity=(context.pool_generation(),))
