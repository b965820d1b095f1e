"""Queries: every error of the chosen kinds becomes a vector to search the pool with.

A false positive searches with its own box-head FC vector (detection level) or its image's vector (image level).
A miss has no detection: at detection level it searches with the box-head vector of its ground-truth box (the box
pooled through the model as if it were a proposal, `records.GT_BOX_LAYER`: what the model should have seen
there), and with its image's vector where that was not tapped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fdb import FeatureDB
from fdb import images as image_store
from records import BOX_LAYER, GT_BOX_LAYER, IMAGE_LAYER, ModelError
from records.coco import CocoSet


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


def target_errors(errors: list[ModelError], classes) -> list[ModelError]:
    """The errors that touch a target class: a false positive fired as one, a miss of one, or one taken for
    another class (a wrong-class false positive whose true class is a target)."""
    targets = set(classes or ())
    return [e for e in errors if e.category_name in targets or e.true_category_name in targets]


def build_target_queries(fdb: FeatureDB, model_version: str, errors: list[ModelError], ground_truth: CocoSet,
                         classes, exemplars: CocoSet | None = None) -> list[Query]:
    """What `targeted` mining searches with (TALISMAN's query set): the model's errors on the target classes in the
    labelled split (a false positive through its own box-head vector, a miss through its ground-truth box's), every
    labelled box of a target class pooled through the box head (type `exemplar`), and a user's exemplars: each box
    of `exemplars` (type `exemplar`), each of its images without boxes through its image vector (type
    `exemplar_image`). The sets' boxes must have been tapped first (`jobs.detect.detect_labelled_set`)."""
    queries = build_queries(fdb, model_version, target_errors(errors, classes))
    served = {(q.source_image_id, tuple(q.bbox or ())) for q in queries if q.type == "miss"}
    names = {c["id"]: c["name"] for c in ground_truth.categories}
    boxes = [(ground_truth, cid, ann) for cid in ground_truth.images
             for ann in ground_truth.annotations_by_image[cid] if names.get(ann["category_id"]) in set(classes or ())]
    bare_images: list = []
    if exemplars is not None:
        boxes += [(exemplars, cid, ann) for cid in exemplars.images for ann in exemplars.annotations_by_image[cid]]
        bare_images = [cid for cid in exemplars.images if not exemplars.annotations_by_image[cid]]
    return queries + _exemplar_queries(fdb, model_version, boxes, served) + _image_exemplars(
        fdb, model_version, exemplars, bare_images)


def _exemplar_queries(fdb: FeatureDB, model_version: str, boxes: list, served: set) -> list[Query]:
    """One query per labelled box (its `GT_BOX_LAYER` vector), less the boxes a miss query already searches with."""
    docs = image_store.by_uri(fdb, {str(coco.image_path(cid).resolve()) for coco, cid, _ in boxes})
    owned = []
    for coco, cid, ann in boxes:
        doc = docs.get(str(coco.image_path(cid).resolve()))
        if doc is not None and (doc["_id"], tuple(ann["bbox"])) not in served:
            owned.append((fdb.ground_truth_id(doc["_id"], ann["id"]), doc["_id"], coco, ann))
    if not owned or fdb.layer_shape(model_version, GT_BOX_LAYER) is None:
        return []
    vectors = fdb.vectors_by_owner(model_version, GT_BOX_LAYER, [o for o, _, _, _ in owned])
    names = {}
    queries = []
    for owner, image_id, coco, ann in owned:
        if owner not in vectors:
            continue  # a box too small to pool, or an image the store quarantined
        names.setdefault(id(coco), {c["id"]: c["name"] for c in coco.categories})
        queries.append(Query(owner, "exemplar", names[id(coco)].get(ann["category_id"], "?"), image_id, "detection",
                             vectors[owner], None, list(ann["bbox"])))
    return queries


def _image_exemplars(fdb: FeatureDB, model_version: str, exemplars: CocoSet | None, image_ids: list) -> list[Query]:
    """One image-level query per exemplar image without boxes: "more images like this one"."""
    if exemplars is None or not image_ids:
        return []
    docs = image_store.by_uri(fdb, {str(exemplars.image_path(cid).resolve()) for cid in image_ids})
    ids = [d["_id"] for d in docs.values()]
    vectors = fdb.vectors_by_owner(model_version, IMAGE_LAYER, ids)
    return [Query(i, "exemplar_image", "image", i, "image", vectors[i]) for i in ids if i in vectors]
