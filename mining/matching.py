"""Matching one image's detections to its labels as COCOeval does, and loading what a labelled set is judged on.

The one matcher every judgment reads (`mining.model_errors` types the model's errors with it,
`mining.label_errors` the labels' suspected errors): each detection at or above the score threshold, most
confident first, takes the free non-crowd label of its class with the highest IoU at or above the IoU threshold
(the first such label on a tie, as COCOeval's argmax). A detection that matches no label but overlaps a crowd region
of its class at the threshold is ignored, as COCOeval ignores it; crowd IoU is intersection over the detection's
area (`records.boxes.box_ious`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from fdb import FeatureDB
from fdb import detections as detection_store
from fdb import images as image_store
from records import Detection
from records.boxes import box_ious


@dataclass
class ImageMatch:
    """One image's greedy match. Indices are into `detections` (the confident ones, most confident first) and
    `labels` (the image's annotations as given, crowd regions included)."""

    detections: list[Detection]
    labels: list[dict]
    iou: np.ndarray                # detections x labels
    crowd: np.ndarray              # per label
    classes: np.ndarray            # per label, its category id
    label_of: dict[int, int]       # matched detection -> its label
    ignored: set[int]              # unmatched detections on a crowd region of their class

    @property
    def matched_labels(self) -> set[int]:
        return set(self.label_of.values())

    def false_positives(self) -> list[int]:
        """Confident detections that matched no label and sit on no crowd region of their class."""
        return [i for i in range(len(self.detections)) if i not in self.label_of and i not in self.ignored]

    def missed_labels(self) -> list[int]:
        """Non-crowd labels no confident detection matched."""
        taken = self.matched_labels
        return [j for j in range(len(self.labels)) if not self.crowd[j] and j not in taken]


def match_image(detections: list[Detection], labels: list[dict], min_score: float,
                iou_threshold: float) -> ImageMatch:
    """COCOeval's greedy match of one image's detections at or above `min_score` to its COCO annotations
    (`category_id`, `bbox`, optional `iscrowd`)."""
    dets = sorted((d for d in detections if d.score >= min_score), key=lambda d: -d.score)
    labels = list(labels)
    crowd = np.array([bool(g.get("iscrowd", 0)) for g in labels], bool)
    iou = box_ious([d.bbox for d in dets], [g["bbox"] for g in labels], list(crowd))
    classes = np.array([g["category_id"] for g in labels], dtype=np.int64)
    taken = np.zeros(len(labels), bool)
    label_of: dict[int, int] = {}
    ignored: set[int] = set()
    for i, det in enumerate(dets):
        same = classes == det.category_id
        candidates = np.flatnonzero(same & ~crowd & ~taken & (iou[i] >= iou_threshold))
        if len(candidates):
            j = int(candidates[np.argmax(iou[i, candidates])])
            taken[j] = True
            label_of[i] = j
        elif (same & crowd & (iou[i] >= iou_threshold)).any():
            ignored.add(i)
    return ImageMatch(dets, labels, iou, crowd, classes, label_of, ignored)


def stored_detections(fdb: FeatureDB, model_version: str, uri_of: Mapping[int, str],
                      docs: Mapping[str, dict] | None = None) -> dict[int, list[Detection]]:
    """Labelled image id -> the detections `model_version` stored for it (no masks): what the matcher judges a
    labelled set on. Refuses, naming one, when the model has not processed every image. `docs`: the images'
    records by uri (`fdb.images.by_uri`), when the caller has read them already."""
    uris = list(uri_of.values())
    done = image_store.processed_uris(fdb, uris, model_version)
    not_done = [u for u in uris if u not in done]
    if not_done:
        raise LookupError(f"{len(not_done)} of {len(uris)} labelled images have no detections from model "
                          f"{model_version} (e.g. {not_done[0]}): run detection over them first")
    docs = docs if docs is not None else image_store.by_uri(fdb, uris)
    by_image: dict = defaultdict(list)
    for det in detection_store.read_detections(fdb, model_version, [docs[u]["_id"] for u in uris], masks=False):
        by_image[det.image_id].append(det)
    return {cid: by_image[docs[uri]["_id"]] for cid, uri in uri_of.items()}
