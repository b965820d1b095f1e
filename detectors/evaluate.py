"""Evaluation with pycocotools: bbox and segm mAP, mAP50, per-class AP and precision/recall curves.

`predict` turns a model's outputs into COCO results (original category ids, xywh boxes, RLE masks), and
`CocoEvaluator` scores one inference pass on several subsets;
`evaluate_predictions` scores any list of such results on any subset of image ids, so the same predictions can
be scored on the superset, on the subset without the mined images, and on the mined subset.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectors.inference import ImageDetections, Labels, run_inference
from records import Detection
from records.coco import CocoSet


def predict(model, coco: CocoSet, image_ids: list[int] | None = None, batch_size: int = 4,
            progress: bool = True) -> list[dict]:
    """COCO-format results of `model` on the given images of `coco` (one pass, `detectors.inference`)."""
    image_ids = list(coco.images) if image_ids is None else list(image_ids)
    [results] = run_inference(model, dataset_labels(coco), [(i, coco.image_path(i)) for i in image_ids],
                              [CocoResults()], batch_size=batch_size, progress=progress, desc="predicting")
    return results


def dataset_labels(coco: CocoSet) -> Labels:
    """The set's own label -> category mapping (what its results are scored against)."""
    labels = sorted(coco.category_of)
    return Labels([c["name"] for c in coco.categories], [coco.category_of[label] for label in labels])


def to_coco_results(image_id: int, detections: list[Detection]) -> list[dict]:
    """COCO results (xywh boxes to 0.01 px, RLE masks) of one image's detections."""
    results = []
    for det in detections:
        result = {"image_id": int(image_id), "category_id": int(det.category_id),
                  "bbox": [round(v, 2) for v in det.bbox], "score": float(det.score)}
        if det.mask is not None:
            result["segmentation"] = det.mask
        results.append(result)
    return results


class CocoResults:
    """A consumer of an inference pass: the pass's detections as COCO results, keyed by the set's image ids."""

    def reset(self) -> None:
        self.results: list[dict] = []

    def process(self, keys: list, outputs: list[ImageDetections]) -> None:
        for image_id, out in zip(keys, outputs):
            self.results.extend(to_coco_results(image_id, out.detections))

    def evaluate(self) -> list[dict]:
        return self.results


class CocoEvaluator(CocoResults):
    """A consumer of an inference pass: pycocotools on each named subset of the set's images, from one pass."""

    def __init__(self, coco: CocoSet, subsets: dict[str, list[int]] | None = None):
        self.coco, self.subsets = coco, subsets or {"all": sorted(coco.images)}

    def evaluate(self) -> dict[str, dict]:
        gt = coco_ground_truth(self.coco)
        return {name: evaluate_predictions(self.coco, self.results, image_ids=ids, gt=gt)
                for name, ids in self.subsets.items() if ids}


def coco_ground_truth(coco: CocoSet) -> COCO:
    """A pycocotools COCO object for the set (quietly: pycocotools prints while indexing)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(coco.path))


def evaluate_predictions(coco: CocoSet, results: list[dict], image_ids: list[int] | None = None,
                         iou_types: tuple[str, ...] | None = None, gt: COCO | None = None) -> dict:
    """Score results with COCOeval. Returns, per IoU type: mAP, mAP50, mAP75, per-class AP and AP50, PR curves, the
    table."""
    gt = gt or coco_ground_truth(coco)
    image_ids = sorted(coco.images) if image_ids is None else sorted(int(i) for i in image_ids)
    iou_types = iou_types or (("bbox", "segm") if coco.has_masks else ("bbox",))
    names = {c["id"]: c["name"] for c in coco.categories}
    out = {"images": len(image_ids), "detections": sum(r["image_id"] in set(image_ids) for r in results)}
    for iou_type in iou_types:
        subset = [r for r in results if r["image_id"] in set(image_ids)]
        if iou_type == "segm":
            subset = [r for r in subset if "segmentation" in r]
        else:
            subset = [{k: v for k, v in r.items() if k != "segmentation"} for r in subset]
        if not subset:
            out[iou_type] = {"mAP": 0.0, "mAP50": 0.0, "mAP75": 0.0, "per_class_AP": {n: 0.0 for n in names.values()},
                             "per_class_AP50": {n: 0.0 for n in names.values()}, "pr_curves": {},
                             "table": "no detections"}
            continue
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            dt = gt.loadRes(copy.deepcopy(subset))
            ev = COCOeval(gt, dt, iou_type)
            ev.params.imgIds = image_ids
            ev.evaluate()
            ev.accumulate()
        table = io.StringIO()
        with contextlib.redirect_stdout(table):
            ev.summarize()
        precision = ev.eval["precision"]  # [T IoUs, R recall points, K classes, A areas, M max dets]
        per_class, per_class50, curves = {}, {}, {}
        for k, cat_id in enumerate(ev.params.catIds):
            p = precision[:, :, k, 0, -1]
            per_class[names[cat_id]] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
            p50 = precision[0, :, k, 0, -1]
            per_class50[names[cat_id]] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan")
            curves[names[cat_id]] = {"recall": ev.params.recThrs.tolist(),
                                     "precision_iou50": np.where(p50 > -1, p50, 0).round(4).tolist()}
        out[iou_type] = {"mAP": float(ev.stats[0]), "mAP50": float(ev.stats[1]), "mAP75": float(ev.stats[2]),
                         "per_class_AP": per_class,
                         "per_class_AP50": per_class50, "pr_curves": curves, "table": table.getvalue()}
    return out


def format_table(metrics: dict) -> str:
    lines = []
    for iou_type in ("bbox", "segm"):
        if iou_type not in metrics:
            continue
        m = metrics[iou_type]
        lines.append(f"{iou_type}: mAP {m['mAP']:.3f}  mAP50 {m['mAP50']:.3f}  mAP75 {m['mAP75']:.3f}")
        lines.append(m["table"].rstrip())
        lines.append("  per-class AP: " + ", ".join(f"{n} {ap:.3f}" for n, ap in m["per_class_AP"].items()))
    return "\n".join(lines)
