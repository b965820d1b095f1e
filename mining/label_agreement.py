"""Neighbour agreement: whether a confident prediction that matched no label looks like the labelled objects of its
class the model found (`mining.label_errors` tells a missing label from the model's false positive with it): the
share of its nearest labelled detections, by box-head FC vector, that are matched predictions of its class."""

from __future__ import annotations

import numpy as np

from fdb import FeatureDB
from mining.config import LabelErrorConfig, MatchConfig
from mining.matching import match_image
from records import BOX_LAYER, Detection
from records.coco import CocoSet


def non_crowd(labels: list[dict]) -> list[dict]:
    """The labels a prediction can accuse or be accused by: a crowd region is no one object."""
    return [g for g in labels if not g.get("iscrowd", 0)]


def neighbour_agreement(vectors: np.ndarray, classes: np.ndarray, matched: np.ndarray, images: np.ndarray,
                        asked: np.ndarray, k: int) -> np.ndarray:
    """For each row in `asked`: the share of its k nearest other-image rows (cosine, on vectors centred on their
    mean) that are `matched` and of its class."""
    if len(asked) == 0:
        return np.zeros(0)
    x = vectors.astype(np.float32) - vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    out = np.zeros(len(asked))
    for start in range(0, len(asked), 512):
        rows = asked[start:start + 512]
        sims = x[rows] @ x.T
        sims[images[rows][:, None] == images[None, :]] = -np.inf  # the image's own detections say nothing
        take = min(k, max(1, len(x) - 1))
        nearest = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        for r, (row, nbrs) in enumerate(zip(rows, nearest)):
            nbrs = nbrs[np.isfinite(sims[r, nbrs])]
            out[start + r] = float(np.mean(matched[nbrs] & (classes[nbrs] == classes[row]))) if len(nbrs) else 1.0
    return out


def box_vectors(fdb: FeatureDB, model_version: str, detections: list[Detection], config: LabelErrorConfig) -> dict:
    """Detection id -> box-head vector of every confident one of `detections` (empty where the model stored no
    vectors: the score alone decides)."""
    owners = [d.id for d in detections if d.score >= config.min_score and d.id is not None]
    if not owners or fdb.layer_shape(model_version, BOX_LAYER) is None:
        return {}
    return fdb.vectors_by_owner(model_version, BOX_LAYER, owners)


def agreements(vectors: dict, ground_truth: CocoSet, dets_of: dict, config: LabelErrorConfig,
               match: MatchConfig) -> dict:
    """Neighbour agreement of every confident detection that matched no label (the ones a suspicion needs it
    for), over the box vectors of every confident detection on the judged images. Only the detections have vectors:
    a planted copy of the labels needs none of its own, the labels only decide which detections are matched."""
    rows = []  # (detection, coco image id, matched?)
    for cid, dets in dets_of.items():
        matching = match_image(dets, non_crowd(ground_truth.annotations_by_image[cid]), config.min_score,
                               match.iou_threshold)
        rows += [(d, cid, i in matching.label_of) for i, d in enumerate(matching.detections)]
    rows = [r for r in rows if r[0].id in vectors]
    asked = np.array([i for i, r in enumerate(rows) if not r[2]], dtype=int)
    if len(rows) < 2 or not len(asked):
        return {}
    values = neighbour_agreement(np.stack([vectors[d.id] for d, _, _ in rows]),
                                 np.array([d.category_id for d, _, _ in rows]), np.array([m for _, _, m in rows]),
                                 np.array([c for _, c, _ in rows]), asked, config.neighbours)
    return {rows[i][0].id: float(v) for i, v in zip(asked, values)}
