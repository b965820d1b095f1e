"""Retrain and compare: the honest test of mining. This module holds the experiment's design and its results;
the training and scoring run in `jobs.experiment` (mining never runs a model).

Every arm starts from the same seed checkpoint and gets the same number of fine-tuning steps:
- `mined`: the training set plus the mined batch (with the labels that came back),
- `random`: the training set plus a random batch of the same budget from the same pool,
- `control`: the training set alone — without it a gain can be nothing but more training.
Selecting the right images is not enough; the fine-tuning has to make them count, so two things help a small
batch within few steps, in every arm alike: new images are drawn `oversample` times as often as the old ones,
and `hard_negatives` of each image's background quota goes to the proposals the box head scores highest
(`detectors.hard_negatives`), so unlabelled look-alikes in the new images are actually trained on (the recipe is
`detectors.train.FinetuneConfig`).
Each arm is trained once per training seed in `seeds` (the seed-to-seed spread is the noise floor a difference
must clear). Each model is scored with pycocotools on the evaluation superset, on the subset without the query
images, and on the query subset, and its high-score errors are counted by type before and after.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from records.coco import CocoSet, load_coco


@dataclass
class ArmResult:
    name: str
    extra_images: int
    steps: int
    seconds: float
    metrics: dict  # subset -> evaluate_predictions output, of the first training seed (PR curves, per class)
    error_counts: dict  # error type -> count at the score threshold, on the superset (mean over seeds)
    checkpoint: str | None = None
    version: str | None = None
    runs: list[dict] = field(default_factory=list)  # per training seed: {seed, mAP: {subset: {iou: v}}, errors,
    #                                                  operating_point: {subset: {all, per_class}}, error_cost}
    scored: dict | None = None  # the seed model's one scoring, shaped as a run (it has no training seeds)

    def run_records(self) -> list[dict]:
        return self.runs or ([self.scored] if self.scored else [])

    def maps(self, subset: str, iou_type: str = "bbox") -> list[float]:
        """mAP of every training seed (one value for the seed model)."""
        if self.runs:
            return [r["mAP"][subset][iou_type] for r in self.runs if iou_type in r["mAP"].get(subset, {})]
        m = self.metrics.get(subset, {})
        return [m[iou_type]["mAP"]] if iou_type in m else []

    def operating(self, subset: str, key: str = "fp_per_image") -> list[float]:
        """One operating-point number (`mining.evaluation.rates`: precision, recall, fp_per_image, ...) at the
        serving threshold on `subset`, per training seed."""
        return [r["operating_point"][subset]["all"][key] for r in self.run_records()
                if subset in r.get("operating_point", {})]

    def costs(self, error_type: str, subset: str = "superset") -> list[float]:
        """The bbox mAP `error_type` costs on `subset` (TIDE, `mining.model_errors.ErrorCost`), per training seed."""
        return [r["error_cost_by_subset"][subset]["cost"].get(error_type, 0.0) for r in self.run_records()
                if subset in r.get("error_cost_by_subset", {})]

    def errors(self, error_type: str) -> list[int]:
        return [r["errors"].get(error_type, 0) for r in self.runs] or [self.error_counts.get(error_type, 0)]


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class Comparison:
    subsets: dict[str, list[int]]
    arms: dict[str, ArmResult] = field(default_factory=dict)
    evaluated_on: str = "val"  # "test": a split that fed nothing (`mining.evaluation`); "val": the query split
    tail_source: str | None = None  # how the tail subset was fixed (generator metadata, or production's errors)
    serving_threshold: float | None = None

    def map_table(self, iou_type: str = "bbox") -> list[dict]:
        rows = []
        for name, arm in self.arms.items():
            row = {"arm": name, "extra images": arm.extra_images}
            for subset in self.subsets:
                values = arm.maps(subset, iou_type)
                row[subset] = round(mean_sd(values)[0], 4) if values else None
            rows.append(row)
        return rows


def merged_training_set(train: CocoSet, extra_images: list[dict], extra_annotations: list[dict],
                        out_path: str | Path) -> CocoSet:
    """The training json plus new images and their labels, written as one COCO file (ids renumbered)."""
    base = json.loads(Path(train.path).read_text())
    next_image = max([im["id"] for im in base["images"]], default=0) + 1
    next_ann = max([a["id"] for a in base["annotations"]], default=0) + 1
    known = {im["file_name"] for im in base["images"]}
    for image in extra_images:
        if image["file_name"] in known:
            continue
        new_id = next_image
        next_image += 1
        base["images"].append({**image, "id": new_id})
        for ann in (a for a in extra_annotations if a["image_id"] == image["id"]):
            base["annotations"].append({**ann, "id": next_ann, "image_id": new_id})
            next_ann += 1
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(base))
    return load_coco(out_path, image_dir=train.image_dir)


def evaluation_subsets(evaluation: CocoSet, query_image_ids: list[int]) -> dict[str, list[int]]:
    """The three subsets every arm is scored on: all of it, without the query images, the query images."""
    queries = sorted(set(query_image_ids) & set(evaluation.images))
    return {"superset": sorted(evaluation.images),
            "without queries": sorted(set(evaluation.images) - set(queries)),
            "query subset": queries}


def arm_training_set(train: CocoSet, name: str, images: list[dict], labels: list[dict], work_dir: str | Path,
                     oversample: float) -> tuple[CocoSet, list[float] | None, set[str]]:
    """An arm's training set (the seed's plus its batch), the sampling weight of each image (new images drawn
    `oversample` times as often; None when nothing is new) and the file names of the new images."""
    arm_set = merged_training_set(train, images, labels, Path(work_dir) / f"train_{name}.json")
    new_names = {im["file_name"] for im in images}
    weights = [oversample if arm_set.images[i]["file_name"] in new_names else 1.0 for i in arm_set.images]
    return arm_set, (weights if new_names else None), new_names


def summarise_errors(arm: ArmResult) -> None:
    """An arm's error counts: the mean over its training seeds."""
    arm.error_counts = {t: statistics.fmean(r["errors"].get(t, 0) for r in arm.runs)
                        for t in {t for r in arm.runs for t in r["errors"]}}


def combine_batches(batches: list[tuple[list[dict], list[dict]]]) -> tuple[list[dict], list[dict]]:
    """Several batches' COCO images and annotations as one, ids renumbered (each batch numbers its own from 1)."""
    images, annotations = [], []
    for batch_images, batch_annotations in batches:
        new_id = {}
        for im in batch_images:
            new_id[im["id"]] = len(images) + 1
            images.append({**im, "id": new_id[im["id"]]})
        for ann in batch_annotations:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": new_id[ann["image_id"]]})
    return images, annotations
