"""Whether the label-error judge may remove anything from mining: its precision and recall, measured on errors
planted in the user's own labelled split.

The judge's own suspects cannot be scored: nobody knows which of them are real label errors. A weak model calls the
labels of the objects it cannot see spurious (small, far, edge-on signs, with a seed at bbox mAP 0.16), and mining
then drops its misses, the very errors it should chase. So before the judge removes anything, a seeded copy of the
labelled set gets errors whose truth is known (`plant_label_errors`): labels deleted, moved (shifted to a low IoU
with where they were, still overlapping it), relabelled (another class) and added (on background). The copy is
judged with the same stored predictions: the model's predictions on those images do not depend on their labels, so
no model runs. `score_planted` then counts:

- a planted error is found when a suspect at or above the threshold, of the type that names its kind, points at it:
  a deleted label by a `possible_missing` prediction overlapping its box at IoU >= 0.5; a moved one by a
  `possible_bad_box`, a relabelled one by a `possible_wrong_class`, an added one by a `possible_spurious` on that
  very label. Recall = found / planted, per kind too.
- precision = the suspects that hit a planted error / the suspects at or above the threshold on the copy, per type
  too. Suspects the labelled set itself raised (the same claim: type, prediction, label id, box and class) are left
  out of both counts: they may be real label errors, and nobody knows. A suspect on a planted label always differs
  from a natural one (its box or class changed), so it counts: a label moved or relabelled on an object the model
  cannot see is called spurious, a false suspect. That is how the check sees a weak model's blindness: planted on
  labels drawn at random, the errors land on the objects it misses as often as the real labels do, and there it
  accuses the wrong thing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from mining.config import LabelErrorConfig
from mining.label_agreement import non_crowd
from records import Detection, LabelSuspect
from records.boxes import box_ious
from records.coco import CocoSet

PLANTED_KINDS = ("deleted", "moved", "relabelled", "added")
# The suspect type that finds each kind of planted error.
FOUND_BY = {"deleted": "possible_missing", "moved": "possible_bad_box", "relabelled": "possible_wrong_class",
            "added": "possible_spurious"}
DELETED_FOUND_IOU = 0.5  # how much a missing-label suspect's prediction must overlap the deleted box
# A moved box's IoU with where it was: under a match (0.5), so the prediction on the object cannot match it, and
# well over background (0.1), so the box is still near the object.
MOVED_IOU = (0.2, 0.4)


@dataclass(frozen=True)
class PlantedError:
    """One error planted in the copy: the label as the copy has it (a deleted one: as it was), and as the labelled
    set has it (nothing, for an added one)."""

    kind: str  # one of PLANTED_KINDS
    image_id: int  # COCO image id
    gt_id: int
    bbox: list[float]
    category_id: int
    original_bbox: list[float] | None = None
    original_category_id: int | None = None


def plant_label_errors(labels: CocoSet, share: float = 0.1, seed: int = 0, min_per_kind: int = 2,
                       image_ids: Iterable[int] | None = None, occupied: Mapping[int, list] | None = None,
                       most_changed: float = 0.5) -> tuple[CocoSet, list[PlantedError]]:
    """A copy of `labels` with known errors planted in the images `image_ids` (default: all), and the errors.

    `share` of their non-crowd labels in all, split evenly between the kinds, at least `min_per_kind` of each where
    the set allows, but never more than `most_changed` of the labels deleted, moved or relabelled: beyond that the
    copy is another set, and the neighbour agreement (which asks matched look-alikes) would judge that one.
    `occupied`: image id -> boxes an added label keeps off besides the labels (the caller passes the model's
    confident detections: a label there may be right). Pure and seeded: the same arguments plant the same errors;
    `labels` is left as it was."""
    rng = np.random.default_rng(seed)
    images = sorted(labels.images if image_ids is None else set(image_ids))
    by_image = {cid: [dict(a) for a in anns] for cid, anns in labels.annotations_by_image.items()}
    eligible = [(cid, a) for cid in images for a in non_crowd(by_image[cid])]
    per_kind = max(min_per_kind, round(share * len(eligible) / len(PLANTED_KINDS)))
    planted = _corrupt_labels(labels, by_image, eligible, per_kind, int(most_changed * len(eligible)), rng)
    next_id = max((a["id"] for anns in labels.annotations_by_image.values() for a in anns), default=0) + 1
    planted += _add_labels(labels, by_image, images, per_kind, next_id, occupied or {}, rng)
    return replace(labels, annotations_by_image=by_image), planted


def _corrupt_labels(labels: CocoSet, by_image: dict, eligible: list, per_kind: int, most: int,
                    rng: np.random.Generator) -> list[PlantedError]:
    """Labels deleted, moved and relabelled in `by_image` (the copy), taken in a seeded order, the kinds in turn
    (the one planted least first), so each kind gets some before any gets many."""
    kinds = ["deleted", "moved"] + (["relabelled"] if len(labels.categories) > 1 else [])
    done: Counter = Counter()
    planted: list[PlantedError] = []
    for index in rng.permutation(len(eligible)):
        wanted = sorted((k for k in kinds if done[k] < per_kind), key=lambda k: done[k])
        if not wanted or len(planted) >= most:
            break
        cid, label = eligible[index]
        for kind in wanted:
            error = _corrupt(kind, cid, label, labels, by_image, rng)
            if error is not None:
                planted.append(error)
                done[kind] += 1
                break
    return planted


def _corrupt(kind: str, cid: int, label: dict, labels: CocoSet, by_image: dict,
             rng: np.random.Generator) -> PlantedError | None:
    """Plant one error of `kind` on `label` (the copy's own dict), or None where it cannot be planted."""
    box, category = [float(v) for v in label["bbox"]], int(label["category_id"])
    if kind == "deleted":
        by_image[cid] = [a for a in by_image[cid] if a["id"] != label["id"]]
        return PlantedError(kind, cid, label["id"], box, category, box, category)
    if kind == "moved":
        image = labels.images[cid]
        moved = _moved_box(box, image["width"], image["height"], rng)
        if moved is None:
            return None
        label["bbox"] = moved
        return PlantedError(kind, cid, label["id"], moved, category, box, category)
    others = [c["id"] for c in labels.categories if c["id"] != category]
    label["category_id"] = int(others[rng.integers(len(others))])
    return PlantedError(kind, cid, label["id"], box, label["category_id"], box, category)


def _moved_box(bbox: list[float], width: float, height: float, rng: np.random.Generator) -> list[float] | None:
    """The box shifted along one axis until its IoU with where it was is drawn from MOVED_IOU, in the first of the
    four directions (in a seeded order) that keeps it in the image; None where none does."""
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return None
    target = rng.uniform(*MOVED_IOU)
    shift = (1 - target) / (1 + target)  # of the side: two equal boxes offset by s * side overlap (1 - s) / (1 + s)
    for axis, sign in np.array([(0, 1), (0, -1), (1, 1), (1, -1)])[rng.permutation(4)]:
        moved = [x + sign * shift * w, y, w, h] if axis == 0 else [x, y + sign * shift * h, w, h]
        if moved[0] >= 0 and moved[1] >= 0 and moved[0] + w <= width and moved[1] + h <= height:
            return [float(v) for v in moved]
    return None


def _add_labels(labels: CocoSet, by_image: dict, images: list[int], count: int, next_id: int,
                occupied: Mapping[int, list], rng: np.random.Generator) -> list[PlantedError]:
    """Spurious labels on background: the size and class of a label drawn from the set, in a drawn image, where
    the box overlaps no label (of the copy or the set) and no `occupied` box. A bounded number of draws."""
    sizes = [(a["bbox"][2], a["bbox"][3], a["category_id"]) for cid in images
             for a in non_crowd(labels.annotations_by_image[cid]) if min(a["bbox"][2:]) > 0]
    planted: list[PlantedError] = []
    for _ in range(20 * count if images and labels.categories else 0):
        if len(planted) >= count:
            break
        cid = images[rng.integers(len(images))]
        image = labels.images[cid]
        w, h, category = (sizes[rng.integers(len(sizes))] if sizes else
                          (image["width"] / 8, image["height"] / 8,
                           labels.categories[rng.integers(len(labels.categories))]["id"]))
        if w >= image["width"] or h >= image["height"]:
            continue
        box = [float(rng.uniform(0, image["width"] - w)), float(rng.uniform(0, image["height"] - h)), float(w),
               float(h)]
        taken = ([a["bbox"] for a in by_image[cid]] + [a["bbox"] for a in labels.annotations_by_image[cid]]
                 + list(occupied.get(cid, [])))
        if taken and box_ious([box], taken).max() > 0:
            continue
        by_image[cid].append({"id": next_id, "image_id": cid, "category_id": int(category), "bbox": box,
                              "area": float(w * h), "iscrowd": 0, "segmentation": []})
        planted.append(PlantedError("added", cid, next_id, box, int(category)))
        next_id += 1
    return planted


# ---------------------------------------------------------------------------------------------------- scoring
def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class JudgeCheck:
    """The judge's precision and recall on planted label errors, and whether they let it remove anything."""

    planted: dict[str, int]  # planted kind -> errors planted
    found: dict[str, int]  # planted kind -> found by a suspect of its type at or above the threshold
    hits: dict[str, int]  # suspect type -> its counted suspects that hit a planted error of its kind
    counted: dict[str, int]  # suspect type -> its suspects at or above the threshold, the labelled set's own left out
    min_precision: float = 0.8

    @property
    def precision(self) -> float | None:
        return _share(sum(self.hits.values()), sum(self.counted.values()))

    @property
    def recall(self) -> float | None:
        return _share(sum(self.found.values()), sum(self.planted.values()))

    def precision_by_type(self) -> dict[str, float | None]:
        return {FOUND_BY[k]: _share(self.hits.get(FOUND_BY[k], 0), self.counted.get(FOUND_BY[k], 0))
                for k in PLANTED_KINDS}

    def recall_by_kind(self) -> dict[str, float | None]:
        return {k: _share(self.found.get(k, 0), self.planted.get(k, 0)) for k in PLANTED_KINDS}

    @property
    def trusted(self) -> bool:
        """Measured, and at least `min_precision`: only then does mining leave out what the judge explains."""
        return self.precision is not None and self.precision >= self.min_precision

    @property
    def reason(self) -> str:
        n, found = sum(self.planted.values()), sum(self.found.values())
        if not n:
            return "no label errors could be planted to measure the judge: mining leaves nothing out on its word"
        if self.precision is None:
            return (f"none of its suspects on the copy with {n} planted label errors reached the threshold: its "
                    "precision is not measured, and mining leaves nothing out on its word")
        if not self.trusted:
            return (f"it found {found} of {n} planted label errors at precision {self.precision:.2f} < "
                    f"{self.min_precision:g}: mining leaves nothing out on its word")
        return (f"it found {found} of {n} planted label errors at precision {self.precision:.2f} >= "
                f"{self.min_precision:g}: mining leaves out the errors its suspects explain")

    def table_lines(self) -> list[str]:
        """The check as the label-error table prints it: overall, then each planted kind beside the suspect type
        that finds it (found / planted, hits / counted)."""
        def shown(value: float | None, part: int, whole: int) -> str:
            return ("-" if value is None else f"{value:.2f}") + f" ({part}/{whole})"
        overall = (f"precision {shown(self.precision, sum(self.hits.values()), sum(self.counted.values()))}, "
                   f"recall {shown(self.recall, sum(self.found.values()), sum(self.planted.values()))}")
        lines = [f"  judge checked on label errors planted in a copy of the labels: {overall}"]
        for kind in PLANTED_KINDS:
            found, planted = self.found.get(kind, 0), self.planted.get(kind, 0)
            kind_type = FOUND_BY[kind]
            precision = _share(self.hits.get(kind_type, 0), self.counted.get(kind_type, 0))
            lines.append(f"    {kind:<11}found {found}/{planted:<4}{kind_type:<22}precision "
                         f"{shown(precision, self.hits.get(kind_type, 0), self.counted.get(kind_type, 0))}")
        return lines + ["  " + self.reason]

    def as_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "precision_by_type": self.precision_by_type(),
                "recall_by_kind": self.recall_by_kind(), "planted": dict(self.planted), "found": dict(self.found),
                "min_precision": self.min_precision, "trusted": self.trusted, "reason": self.reason}


def _claim(s: LabelSuspect) -> tuple:
    """What a suspect says, to tell the labelled set's own suspects on the copy: the same type, prediction, and
    label (id, box, class)."""
    return (s.type, s.detection_id, s.gt_id, tuple(s.gt_bbox) if s.gt_bbox is not None else None, s.gt_category_id)


def _hit(suspect: LabelSuspect, candidates: list[tuple[int, PlantedError]]) -> int | None:
    """The index of the planted error `suspect` points at (one of its image's `candidates`), if any."""
    for index, error in candidates:
        if FOUND_BY[error.kind] != suspect.type:
            continue
        if error.kind == "deleted":
            if suspect.bbox is not None and box_ious([suspect.bbox], [error.bbox])[0, 0] >= DELETED_FOUND_IOU:
                return index
        elif suspect.gt_id == error.gt_id:
            return index
    return None


def score_planted(planted: list[PlantedError], suspects_of: Mapping[int, list[LabelSuspect]],
                  natural_of: Mapping[int, list[LabelSuspect]], threshold: float,
                  min_precision: float = 0.8) -> JudgeCheck:
    """Score the suspects on the copy (`suspects_of`: COCO image id -> suspects) against the `planted` errors,
    leaving out those the labelled set raised itself (`natural_of`, at any suspicion)."""
    natural = {(cid, _claim(s)) for cid, found in natural_of.items() for s in found}
    planted_in: dict[int, list[tuple[int, PlantedError]]] = defaultdict(list)
    for index, error in enumerate(planted):
        planted_in[error.image_id].append((index, error))
    hits, counted, found = Counter(), Counter(), set()
    for cid, found_there in suspects_of.items():
        for s in found_there:
            if s.suspicion < threshold or (cid, _claim(s)) in natural:
                continue
            counted[s.type] += 1
            index = _hit(s, planted_in.get(cid, []))
            if index is not None:
                hits[s.type] += 1
                found.add(index)
    return JudgeCheck(dict(Counter(e.kind for e in planted)), dict(Counter(planted[i].kind for i in found)),
                      dict(hits), dict(counted), min_precision)


def check_judge(labels: CocoSet, judged: list[int], detections_of: Mapping[int, list[Detection]],
                natural_of: Mapping[int, list[LabelSuspect]],
                judge: Callable[[CocoSet], Mapping[int, list[LabelSuspect]]], config: LabelErrorConfig,
                seed: int = 0) -> JudgeCheck:
    """Plant errors in the `judged` images of `labels`, judge the copy with `judge` (the same stored detections,
    `detections_of`; no model runs) and score its suspects against them."""
    occupied = {cid: [d.bbox for d in detections_of[cid] if d.score >= config.min_score] for cid in judged}
    copy, planted = plant_label_errors(labels, seed=seed, image_ids=judged, occupied=occupied)
    return score_planted(planted, judge(copy), natural_of, config.threshold, config.min_precision)
