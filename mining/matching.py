"""Matching detections to labels as COCOeval does: each detection, most confident first, takes the best free
label of its class at or above the IoU threshold. (`mining.errors.type_image_errors` types every detection with the
same rule, crowd regions included.)"""

from __future__ import annotations

import numpy as np

from records import Detection
from records.boxes import box_ious


def match_confident(detections: list[Detection], ground_truth: list[dict], min_score: float,
                    iou_threshold: float) -> tuple[list[Detection], list[dict], np.ndarray, dict[int, int]]:
    """(confident detections by score, non-crowd labels, their IoUs, detection index -> matched label index):
    COCOeval's greedy matching of each confident detection to the best free label of its class."""
    dets = sorted((d for d in detections if d.score >= min_score), key=lambda d: -d.score)
    gts = [g for g in ground_truth if not g.get("iscrowd", 0)]
    iou = box_ious([d.bbox for d in dets], [g["bbox"] for g in gts])
    taken: dict[int, int] = {}
    matched: dict[int, int] = {}
    for i, det in enumerate(dets):
        best, best_iou = None, iou_threshold
        for j, g in enumerate(gts):
            if j not in taken and g["category_id"] == det.category_id and iou[i, j] >= best_iou:
                best, best_iou = j, iou[i, j]
        if best is not None:
            taken[best] = i
            matched[i] = best
    return dets, gts, iou, matched
