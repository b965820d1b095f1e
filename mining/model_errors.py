"""A detector's errors against COCO ground truth, typed with pycocotools' matching rules, and recorded in fdb.

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

import contextlib
import copy
import io
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fdb import FeatureDB
from fdb import errors as error_store
from fdb import images as image_store
from mining.config import MatchConfig
from mining.matching import ImageMatch, match_image, stored_detections
from records import ERROR_TYPES, FP_TYPES, Detection, ModelError
from records.coco import CocoSet

__all__ = ["ERROR_TYPES", "ErrorCost", "ErrorCounter", "cost_key", "ErrorReport", "MatchConfig", "find_errors",
           "type_image_errors", "operating_point_cost"]


def type_image_errors(detections: list[Detection], ground_truth: list[dict], params: MatchConfig) -> list[ModelError]:
    """Errors on one image. Ground truth: COCO annotations (`id`, `category_id`, `bbox`, `iscrowd`)."""
    match = match_image(detections, ground_truth, params.score_threshold, params.iou_threshold)
    errors = [_false_positive(match, i, params) for i in match.false_positives()]
    for j in match.missed_labels():
        gt = match.labels[j]
        best = float(match.iou[:, j].max()) if len(match.detections) else 0.0
        # Why it was missed, when a detection explains it (the same object is then also counted as an FP).
        detail = None
        if best >= params.iou_threshold:
            detail = "detected_as_other_class"
        elif best >= params.background_iou:
            detail = "poorly_localised"
        errors.append(ModelError("miss", int(gt["category_id"]), list(gt["bbox"]), detail=detail,
                                 true_category_id=int(gt["category_id"]), gt_id=gt["id"], iou=best,
                                 gt_bbox=list(gt["bbox"])))
    return errors


def _false_positive(match: ImageMatch, i: int, params: MatchConfig) -> ModelError:
    """Unmatched confident detection `i` as the false positive it is, with the label that explains it if one does."""
    det = match.detections[i]
    real = ~match.crowd
    same, other = real & (match.classes == det.category_id), real & (match.classes != det.category_id)
    best_same = int(np.argmax(np.where(same, match.iou[i], -1))) if same.any() else None
    best_other = int(np.argmax(np.where(other, match.iou[i], -1))) if other.any() else None
    kind, detail, j = "fp_background", None, None
    if best_same is not None and match.iou[i, best_same] >= params.iou_threshold:
        kind, detail, j = "fp_localisation", "duplicate", best_same
    elif best_other is not None and match.iou[i, best_other] >= params.iou_threshold:
        kind, j = "fp_wrong_class", best_other
    elif best_same is not None and match.iou[i, best_same] >= params.background_iou:
        kind, detail, j = "fp_localisation", "poor_localisation", best_same
    if j is None:
        return ModelError(kind, int(det.category_id), list(det.bbox), detection_id=det.id, score=float(det.score))
    gt = match.labels[j]
    return ModelError(kind, int(det.category_id), list(det.bbox), detail=detail, detection_id=det.id,
                      true_category_id=int(gt["category_id"]), gt_id=gt["id"], score=float(det.score),
                      iou=float(match.iou[i, j]), gt_bbox=list(gt["bbox"]))


# ---------------------------------------------------------------------------------------------------- recorded
@dataclass
class ErrorReport:
    model_version: str
    params: MatchConfig
    images: int
    errors: list[ModelError]
    counts: dict[str, dict[str, int]]  # error type -> class name -> count
    # error type -> the bbox mAP it costs on the labelled set (TIDE, `ErrorCost`), from the same stored detections
    cost: dict[str, float] = field(default_factory=dict)

    def table(self, fp_cost: float = 1.0, miss_cost: float = 1.0) -> str:
        """Counts by type and class, with both prices of each type: the mAP it costs and its operating-point cost
        (count x unit cost, `operating_point_cost`)."""
        classes = sorted({c for by_class in self.counts.values() for c in by_class})
        priced = operating_point_cost(self.totals(), fp_cost, miss_cost)
        lines = [f"{'error type':<18}" + "".join(f"{c:>12}" for c in classes) + f"{'total':>8}"
                 + (f"{'mAP cost':>10}" if self.cost else "") + f"{'op. cost':>10}"]
        for kind in ERROR_TYPES:
            row = self.counts.get(kind, {})
            lines.append(f"{kind:<18}" + "".join(f"{row.get(c, 0):>12}" for c in classes)
                         + f"{sum(row.values()):>8}" + (f"{self.cost.get(kind, 0.0):>10.4f}" if self.cost else "")
                         + f"{priced.get(kind, 0.0):>10g}")
        return "\n".join(lines + [(f"op. cost (operating point): count at score >= {self.params.score_threshold:g} x "
                                    f"{fp_cost:g} per false positive, {miss_cost:g} per miss")])

    def totals(self) -> dict[str, int]:
        return {kind: sum(by_class.values()) for kind, by_class in self.counts.items()}


def operating_point_cost(counts: dict[str, int], fp_cost: float = 1.0, miss_cost: float = 1.0) -> dict[str, float]:
    """What each error type costs a map served at the matching score threshold: its count there (errors are typed
    only for detections at or above it; a miss is an object none of them found) x its unit cost, `fp_cost` for
    each false-positive type, `miss_cost` for misses. Unlike the mAP price (`ErrorCost`), a look-alike scored below
    the true objects costs here what any wrong object on the map costs."""
    return {t: float(n) * (miss_cost if t == "miss" else fp_cost) for t, n in counts.items() if t in ERROR_TYPES}


def find_errors(fdb: FeatureDB, model_version: str, ground_truth: CocoSet,
                params: MatchConfig = MatchConfig()) -> ErrorReport:
    """Type the errors of `model_version` on the labelled COCO set `ground_truth` from its stored detections,
    and record them in fdb. Every labelled image must have been processed by the model first."""
    names = {c["id"]: c["name"] for c in ground_truth.categories}
    uri_of = {cid: str(ground_truth.image_path(cid).resolve()) for cid in ground_truth.images}
    docs = image_store.by_uri(fdb, uri_of.values())
    dets_of = stored_detections(fdb, model_version, uri_of, docs)
    params_key = params.key()
    records = []
    for coco_id, uri in uri_of.items():
        image_id = docs[uri]["_id"]
        for error in type_image_errors(dets_of[coco_id], ground_truth.annotations_by_image[coco_id], params):
            subject = error.detection_id if error.detection_id is not None else f"gt{error.gt_id}"
            records.append(replace(
                error, id=error_store.error_id(model_version, params_key, image_id, error.type, subject),
                model_version=model_version, params_key=params_key, params=params.as_dict(), image_id=image_id,
                coco_image_id=coco_id, uri=uri, category_name=names.get(error.category_id),
                true_category_name=names.get(error.true_category_id)))
    error_store.record_errors(fdb, records)
    counts: dict[str, dict[str, int]] = {kind: {} for kind in ERROR_TYPES}
    for r in records:
        counts[r.type][r.category_name] = counts[r.type].get(r.category_name, 0) + 1
    # What each type costs, from the same stored detections (those above the detect stage's min_score).
    cost = ErrorCost(ground_truth, params)
    cost.process(list(uri_of), [_Stored(dets_of[cid]) for cid in uri_of])
    return ErrorReport(model_version, params, len(uri_of), records, counts,
                       {k: v for k, v in cost.evaluate()["cost"].items() if k in ERROR_TYPES})


@dataclass
class _Stored:
    """One image's stored detections, shaped as an inference pass's output for the pass consumers below."""
    detections: list[Detection]


# ---------------------------------------------------------------------------------------------------- in a pass
def scored_detections(detections) -> list[Detection]:
    """One image's detections from an inference pass as the COCO evaluator scores them: boxes to 0.01 px (so every
    consumer of the pass sees the same detections), each identified by its position among them."""
    return [Detection(i, [round(v, 2) for v in d.bbox], d.score, d.category_id, d.category_name, id=i)
            for i, d in enumerate(detections)]


class ErrorCounter:
    """A consumer of one inference pass (`detectors.inference.run_inference`): counts the errors of the model's
    detections on a labelled set by type, without storing anything (the retrain-and-compare experiment)."""

    def __init__(self, ground_truth: CocoSet, params: MatchConfig = MatchConfig()):
        self.ground_truth, self.params = ground_truth, params
        self.counts: Counter = Counter()

    def reset(self) -> None:
        self.counts = Counter()

    def process(self, keys: list, outputs: list) -> None:
        """`outputs`: one `detectors.inference.ImageDetections` per image (its `detections` are read)."""
        for image_id, out in zip(keys, outputs):
            dets = scored_detections(out.detections)
            for e in type_image_errors(dets, self.ground_truth.annotations_by_image[image_id], self.params):
                self.counts[e.type] += 1

    def evaluate(self) -> dict[str, int]:
        return dict(self.counts)


def cost_key(types: list[str]) -> str | None:
    """The key under which `ErrorCost` prices `types` together: their false-positive types joined by "+" (misses
    have no detection to delete; None when only misses are left)."""
    fp = [t for t in types if t in FP_TYPES]
    return "+".join(fp) if fp else None


class ErrorCost:
    """A consumer of one inference pass: what each error type costs the model in bbox mAP on a labelled set,
    threshold-free (TIDE's decomposition, Bolya et al., ECCV 2020).

    Every detection the model kept (any score) is typed as above; the cost of a false-positive type is the COCO
    bbox mAP (IoU .50:.95) an oracle would gain by deleting that type's detections (TIDE's "fix"; here wrong-class
    detections are deleted too); the cost of misses is what it would gain if the objects no detection found were
    not asked for (TIDE's fix of missed ground truth). Why not counts at a score threshold: a retrained model is
    usually more confident everywhere, so it can show more high-score false positives while ranking them further
    below its true positives; the mAP they cost is what a user of the model pays. A background or wrong-class
    detection is a false positive at every IoU threshold of the mean, so deleting one never lowers mAP.
    `evaluate()` returns {"bbox_map", "cost": {type: mAP points, "+".join(types): all of `types` at once},
    "ceiling": every error fixed at once} on the whole set, and with `subsets` the same per named subset under
    "by_subset". The rest of the gap to 1.0 beyond the ceiling is the boxes' fit at the strict IoU thresholds of the
    mean, which no error type holds."""

    def __init__(self, ground_truth: CocoSet, params: MatchConfig = MatchConfig(), types: list[str] | None = None,
                 subsets: dict[str, list[int]] | None = None):
        self.ground_truth, self.joint = ground_truth, cost_key(list(types or FP_TYPES))
        self.params = replace(params, score_threshold=0.0)  # every kept detection is ranked, as in COCOeval
        self.subsets = subsets or {}
        self.reset()

    def reset(self) -> None:
        self.results: list[dict] = []
        self.types_of: list[str] = []
        self.missed: set[int] = set()  # ground-truth annotation ids no detection found

    def process(self, keys: list, outputs: list) -> None:
        for image_id, out in zip(keys, outputs):
            dets = scored_detections(out.detections)
            errors = type_image_errors(dets, self.ground_truth.annotations_by_image[image_id], self.params)
            typed = {e.detection_id: e.type for e in errors if e.detection_id is not None}
            self.missed |= {int(e.gt_id) for e in errors if e.type == "miss" and e.gt_id is not None}
            for det in dets:
                self.results.append({"image_id": int(image_id), "category_id": int(det.category_id),
                                     "bbox": list(det.bbox), "score": float(det.score)})
                self.types_of.append(typed.get(det.id, "tp"))

    def evaluate(self) -> dict:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(self.ground_truth.path))
            # COCOeval needs every annotation's area; a hand-made set may leave it out: the box's then.
            if any("area" not in a for a in gt.dataset["annotations"]):
                for a in gt.dataset["annotations"]:
                    a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
                gt.createIndex()
            found = COCO()
            found.dataset = {**gt.dataset, "annotations": [a for a in gt.dataset["annotations"]
                                                           if a["id"] not in self.missed]}
            found.createIndex()
        everything = sorted(self.ground_truth.images)
        whole = self._costs(gt, found, everything)
        # A subset holding every image (a test split's superset) is the whole set: priced once.
        by_subset = {name: whole if sorted(ids) == everything else self._costs(gt, found, sorted(ids))
                     for name, ids in self.subsets.items() if ids}
        return {**whole, **({"by_subset": by_subset} if by_subset else {})}

    def _costs(self, gt: COCO, found: COCO, image_ids: list[int]) -> dict:
        base = _bbox_map(gt, self.results, image_ids)
        cost = {}
        for key in dict.fromkeys([*FP_TYPES, *([self.joint] if self.joint else [])]):
            removed = key.split("+")
            kept = [r for r, t in zip(self.results, self.types_of) if t not in removed]
            cost[key] = max(0.0, _bbox_map(gt, kept, image_ids) - base)
        cost["miss"] = max(0.0, _bbox_map(found, self.results, image_ids) - base) if self.missed else 0.0
        # Every error fixed at once (each false positive deleted, every missed object found): the most any batch of
        # labels could buy on these images by fixing errors. Priced together, not added up: on a weak model
        # deleting every false positive gains far more than the types deleted one at a time.
        fixed = [r for r, t in zip(self.results, self.types_of) if t not in FP_TYPES]
        ceiling = max(0.0, _bbox_map(found, fixed, image_ids) - base)
        return {"bbox_map": base, "cost": cost, "ceiling": ceiling}


def _bbox_map(gt: COCO, results: list[dict], image_ids: list[int]) -> float:
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "bbox")
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])
