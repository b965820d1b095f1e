"""The `detections` collection: what a model version found on each image, as `records.Detection`.

A detection is identified by (image, model version, rank): its `_id` derives from those three (`detection_id`),
so writing the same detections again adds nothing.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator, Sequence

from bson import ObjectId

from fdb.store import FeatureDB
from fdb.writes import WriteReport, bulk_insert, stable_id, utcnow
from records import Detection


class NonFiniteDetection(ValueError):
    """A detection whose score or box holds NaN or infinity: the model that made it has diverged."""


def detection_id(image_id: ObjectId, model_version: str, rank: int) -> ObjectId:
    return stable_id("det", image_id, model_version, rank)


def write_detections(fdb: FeatureDB, model_version: str, detections: Iterable[Detection]) -> WriteReport:
    """Store detections (each with its `image_id`). `_id` derives from (image, model, rank), so writing the
    same detections again adds nothing."""
    docs = []
    for det in detections:
        # NaN passes every range query later (a NaN score is never >= a threshold, nor below it) and poisons every
        # mean: refused where it enters, before anything of the batch is written.
        if not all(math.isfinite(float(v)) for v in (*det.bbox, det.score)):
            raise NonFiniteDetection(f"model {model_version}, image {det.image_id}, detection {det.rank}: score "
                                     f"{det.score!r} and box {list(det.bbox)!r} must be finite; a model that outputs "
                                     f"NaN has diverged (nothing of this batch was written)")
        doc = {"_id": detection_id(det.image_id, model_version, det.rank), "image_id": det.image_id,
               "model_version": model_version, "rank": det.rank, "box": [float(v) for v in det.bbox],
               "score": float(det.score), "label": det.label, "category_id": int(det.category_id),
               "category_name": det.category_name, "proposal_index": det.proposal_index,
               "created_at": utcnow()}
        if det.mask is not None:
            doc["mask"] = det.mask
        docs.append(doc)
    return bulk_insert(fdb.detections, docs)


def _detection_from_doc(d: dict) -> Detection:
    """A stored detection document as a `records.Detection` (its mask None where it was not read)."""
    return Detection(rank=d["rank"], bbox=list(d["box"]), score=d["score"], category_id=d["category_id"],
                     category_name=d.get("category_name"), label=d.get("label"),
                     proposal_index=d.get("proposal_index"), mask=d.get("mask"), id=d["_id"],
                     image_id=d["image_id"], model_version=d["model_version"])


def read_detections(fdb: FeatureDB, model_version: str, image_ids: Sequence[ObjectId],
                    min_score: float | None = None, masks: bool = True) -> list[Detection]:
    """The stored detections of `model_version` on these images, by image then rank."""
    query: dict = {"image_id": {"$in": list(image_ids)}, "model_version": model_version}
    if min_score is not None:
        query["score"] = {"$gte": min_score}
    docs = fdb.detections.find(query, None if masks else {"mask": 0}).sort([("image_id", 1), ("rank", 1)])
    return [_detection_from_doc(d) for d in docs]


def detection_scores(fdb: FeatureDB, model_version: str, image_ids: Sequence[ObjectId],
                     part: int = 20_000) -> Iterator[tuple[ObjectId, float]]:
    """(image id, score) of every stored detection of `model_version` on these images: what an uncertainty
    ranking reads, without the boxes and masks."""
    ids = list(image_ids)
    for start in range(0, len(ids), part):
        for d in fdb.detections.find({"image_id": {"$in": ids[start:start + part]}, "model_version": model_version},
                                     {"image_id": 1, "score": 1, "_id": 0}):
            yield d["image_id"], d["score"]


def detections_by_id(fdb: FeatureDB, detection_ids: Sequence[ObjectId]) -> dict[ObjectId, Detection]:
    """detection id -> the stored detection (without its mask)."""
    docs = fdb.detections.find({"_id": {"$in": list(detection_ids)}}, {"mask": 0})
    return {d["_id"]: _detection_from_doc(d) for d in docs}


def detection_boxes(fdb: FeatureDB, detection_ids: Sequence[ObjectId]) -> dict[ObjectId, list[float]]:
    """detection id -> its bbox [x, y, w, h]."""
    return {d["_id"]: d["box"] for d in fdb.detections.find({"_id": {"$in": list(detection_ids)}}, {"box": 1})}
