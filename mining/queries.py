"""Queries: every error of the chosen kinds becomes a vector to search the pool with.

A false positive searches with its own box-head FC vector (detection level) or its image's vector (image level).
A miss has no detection: at detection level it searches with the box-head vector of its ground-truth box (the box
pooled through the model as if it were a proposal, `records.GT_BOX_LAYER`: what the model should have seen
there), and with its image's vector where that was not tapped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fdb import FeatureDB
from records import BOX_LAYER, GT_BOX_LAYER, IMAGE_LAYER, ModelError


@dataclass
class Query:
    error_id: object
    type: str
    category_name: str
    source_image_id: object
    level: str  # "detection" or "image": which vector it searches with
    vector: np.ndarray
    detection_id: object | None = None
    bbox: list[float] | None = None
    # Searched with instead when `vector` finds nothing (a miss's image vector, when its box's found no detection)
    fallback: np.ndarray | None = None


def chosen_errors(errors: list[ModelError], types=None, classes=None) -> list[ModelError]:
    """The errors of the chosen types and classes (None: all), in error-id order."""
    chosen = [e for e in errors if (not types or e.type in types) and (not classes or e.category_name in classes)]
    return sorted(chosen, key=lambda e: str(e.id))


def build_queries(fdb: FeatureDB, model_version: str, errors: list[ModelError], types=None, classes=None,
                  level: str = "detection") -> list[Query]:
    """One query per error of the chosen types and classes, in error-id order."""
    chosen = chosen_errors(errors, types, classes)
    det_ids = [e.detection_id for e in chosen if e.detection_id is not None and level == "detection"]
    det_vectors = fdb.vectors_by_owner(model_version, BOX_LAYER, det_ids) if det_ids else {}
    gt_owner = {e.id: fdb.ground_truth_id(e.image_id, e.gt_id) for e in chosen
                if level == "detection" and e.detection_id is None and e.gt_id is not None}
    gt_vectors = (fdb.vectors_by_owner(model_version, GT_BOX_LAYER, list(gt_owner.values()))
                  if gt_owner and fdb.layer_shape(model_version, GT_BOX_LAYER) is not None else {})
    image_vectors = fdb.vectors_by_owner(model_version, IMAGE_LAYER, list({e.image_id for e in chosen}))
    queries = []
    for e in chosen:
        if level == "detection" and e.detection_id is not None:
            queries.append(Query(e.id, e.type, e.category_name, e.image_id, "detection",
                                 det_vectors[e.detection_id], e.detection_id, e.bbox))
        elif gt_owner.get(e.id) in gt_vectors:
            queries.append(Query(e.id, e.type, e.category_name, e.image_id, "detection",
                                 gt_vectors[gt_owner[e.id]], None, e.bbox, fallback=image_vectors[e.image_id]))
        else:
            queries.append(Query(e.id, e.type, e.category_name, e.image_id, "image",
                                 image_vectors[e.image_id], None, e.bbox))
    return queries
