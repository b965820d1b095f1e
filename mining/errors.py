"""Typing a detector's errors against COCO ground truth, with pycocotools' matching rules.

Per image and class, detections at or above the score threshold are taken in order of score and each is matched
to the unmatched ground-truth box of its class with the highest IoU at or above the IoU threshold (greedy, as
COCOeval does). A detection that only overlaps a crowd region of its class is ignored, as COCOeval ignores it;
crowd IoU is intersection over the detection's area (`pycocotools.mask.iou` with iscrowd). Then every unmatched
detection is a false positive of one type, and every unmatched ground truth a miss:

- `fp_localisation`: overlaps a box of its own class at IoU >= threshold that another detection already took
  (detail `duplicate`), or at `background_iou` <= IoU < threshold (detail `poor_localisation`);
- `fp_wrong_class`: overlaps a box of another class at IoU >= threshold (`true_category_id` says which);
- `fp_background`: none of the above — the detector fired on background (or on something unlabelled);
- `miss`: a non-crowd ground truth no detection matched (detail `detected_as_other_class` or `poorly_localised`
  when an FP above explains it, as COCO counts such an object twice: one FP and one miss).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from pycocotools import mask as mask_utils

ERROR_TYPES = ("fp_background", "fp_wrong_class", "fp_localisation", "miss")


@dataclass(frozen=True)
class MatchParams:
    iou_threshold: float = 0.5
    score_threshold: float = 0.5
    background_iou: float = 0.1

    def as_dict(self) -> dict:
        return asdict(self)


def _ious(dets: list[dict], gts: list[dict]) -> np.ndarray:
    if not dets or not gts:
        return np.zeros((len(dets), len(gts)))
    return np.asarray(mask_utils.iou([d["bbox"] for d in dets], [g["bbox"] for g in gts],
                                     [int(g.get("iscrowd", 0)) for g in gts]))


def type_image_errors(detections: list[dict], ground_truth: list[dict], params: MatchParams) -> list[dict]:
    """Errors on one image. Detections: dicts with `id`, `category_id`, `bbox` [x, y, w, h], `score`;
    ground truth: COCO annotations (`id`, `category_id`, `bbox`, `iscrowd`). Returns one dict per error."""
    dets = sorted((d for d in detections if d["score"] >= params.score_threshold), key=lambda d: -d["score"])
    gts = list(ground_truth)
    iou = _ious(dets, gts)
    crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], bool)
    gt_class = np.array([g["category_id"] for g in gts])
    taken = np.zeros(len(gts), bool)
    status = []  # per detection: "tp", "ignored" or "fp"
    for i, det in enumerate(dets):
        same = (gt_class == det["category_id"]) if len(gts) else np.zeros(0, bool)
        candidates = np.flatnonzero(same & ~crowd & ~taken & (iou[i] >= params.iou_threshold))
        if len(candidates):
            taken[candidates[np.argmax(iou[i, candidates])]] = True
            status.append("tp")
        elif (same & crowd & (iou[i] >= params.iou_threshold)).any():
            status.append("ignored")
        else:
            status.append("fp")

    errors = []
    for i, det in enumerate(dets):
        if status[i] != "fp":
            continue
        error = {"type": "fp_background", "detail": None, "detection_id": det.get("id"),
                 "category_id": det["category_id"], "true_category_id": None, "gt_id": None,
                 "score": float(det["score"]), "iou": 0.0, "bbox": list(det["bbox"])}
        real = ~crowd if len(gts) else np.zeros(0, bool)
        same = real & (gt_class == det["category_id"]) if len(gts) else real
        other = real & (gt_class != det["category_id"]) if len(gts) else real
        best_same = int(np.argmax(np.where(same, iou[i], -1))) if same.any() else None
        best_other = int(np.argmax(np.where(other, iou[i], -1))) if other.any() else None
        if best_same is not None and iou[i, best_same] >= params.iou_threshold:
            error.update(type="fp_localisation", detail="duplicate", gt_id=gts[best_same]["id"],
                         true_category_id=int(gt_class[best_same]), iou=float(iou[i, best_same]))
        elif best_other is not None and iou[i, best_other] >= params.iou_threshold:
            error.update(type="fp_wrong_class", gt_id=gts[best_other]["id"],
                         true_category_id=int(gt_class[best_other]), iou=float(iou[i, best_other]))
        elif best_same is not None and iou[i, best_same] >= params.background_iou:
            error.update(type="fp_localisation", detail="poor_localisation", gt_id=gts[best_same]["id"],
                         true_category_id=int(gt_class[best_same]), iou=float(iou[i, best_same]))
        errors.append(error)
    for j, gt in enumerate(gts):
        if crowd[j] or taken[j]:
            continue
        best = float(iou[:, j].max()) if len(dets) else 0.0
        # Why it was missed, when a detection explains it (the same object is then also counted as an FP).
        detail = None
        if best >= params.iou_threshold:
            detail = "detected_as_other_class"
        elif best >= params.background_iou:
            detail = "poorly_localised"
        errors.append({"type": "miss", "detail": detail, "detection_id": None, "category_id": int(gt["category_id"]),
                       "true_category_id": int(gt["category_id"]), "gt_id": gt["id"], "score": None, "iou": best,
                       "bbox": list(gt["bbox"])})
    return errors
