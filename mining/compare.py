"""Retrain and compare: the honest test of mining.

Every arm starts from the same seed checkpoint and gets the same number of fine-tuning steps:
- `mined`: the training set plus the mined batch (with the labels that came back),
- `random`: the training set plus a random batch of the same budget from the same pool,
- `control`: the training set alone — without it a gain can be nothing but more training.
Selecting the right images is not enough; the fine-tuning has to make them count, so two things help a small
batch within few steps, in every arm alike: new images are drawn `oversample` times as often as the old ones,
and `hard_negatives` of each image's background quota goes to the proposals the box head scores highest
(`detectors.hard_negatives`), so unlabelled look-alikes in the new images are actually trained on.
Each arm is trained once per training seed in `seeds` (the seed-to-seed spread is the noise floor a difference
must clear). Each model is scored with pycocotools on the evaluation superset, on the subset without the query
images, and on the query subset, and its high-score errors are counted by type before and after.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from detectors import hard_negatives as hard_negative_mining
from detectors.checkpoint import data_hash, load_checkpoint, new_version, save_checkpoint
from detectors.coco import CocoDetection, CocoSet, load_coco
from detectors.errors import MatchParams, type_image_errors
from detectors.evaluate import coco_ground_truth, evaluate_predictions, predict
from detectors.train import TrainConfig, train_model


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
    runs: list[dict] = field(default_factory=list)  # per training seed: {seed, mAP: {subset: {iou: v}}, errors}

    def maps(self, subset: str, iou_type: str = "bbox") -> list[float]:
        """mAP of every training seed (one value for the seed model)."""
        if self.runs:
            return [r["mAP"][subset][iou_type] for r in self.runs if iou_type in r["mAP"].get(subset, {})]
        m = self.metrics.get(subset, {})
        return [m[iou_type]["mAP"]] if iou_type in m else []

    def errors(self, error_type: str) -> list[int]:
        return [r["errors"].get(error_type, 0) for r in self.runs] or [self.error_counts.get(error_type, 0)]


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class Comparison:
    subsets: dict[str, list[int]]
    arms: dict[str, ArmResult] = field(default_factory=dict)

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


def error_counts(results: list[dict], evaluation: CocoSet, params: MatchParams) -> dict[str, int]:
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append({**r, "id": None})
    counts: Counter = Counter()
    for image_id in evaluation.images:
        for e in type_image_errors(by_image.get(image_id, []), evaluation.annotations_by_image[image_id], params):
            counts[e["type"]] += 1
    return dict(counts)


def score_model(model, evaluation: CocoSet, subsets: dict[str, list[int]], params: MatchParams,
                progress: bool = False) -> tuple[dict, dict]:
    results = predict(model, evaluation, progress=progress)
    gt = coco_ground_truth(evaluation)
    metrics = {name: evaluate_predictions(evaluation, results, image_ids=ids, gt=gt) for name, ids in subsets.items()
               if ids}
    return metrics, error_counts(results, evaluation, params)


def retrain_and_compare(seed_checkpoint: str | Path, train: CocoSet, batches: dict[str, tuple[list, list]],
                        evaluation: CocoSet, query_image_ids: list[int], steps: int, work_dir: str | Path,
                        lr: float = 2e-4, oversample: float = 4.0, hard_negatives: float = 0.25,
                        seeds: tuple[int, ...] = (0,), params: MatchParams = MatchParams(), fdb=None,
                        progress: bool = True) -> Comparison:
    """Fine-tune one model per arm and training seed (`batches`: arm -> (COCO images, annotations); the control
    arm is added here) and score them all beside the seed model. The first seed's checkpoint of each arm is
    registered as a model version, with its metrics.

    The defaults are what benchmarks/finetune_bench.py measured on the demo (results/finetune.json): at lr 5e-4
    even the control arm lost 0.01 bbox mAP; hard negatives at 0.5 of the quota cut background false positives
    but cost 0.02-0.03 mAP; lr 2e-4 with 0.25 let the mined arm gain mAP and lose every background FP."""
    work_dir = Path(work_dir)
    queries = sorted(set(query_image_ids) & set(evaluation.images))
    subsets = {"superset": sorted(evaluation.images),
               "without queries": sorted(set(evaluation.images) - set(queries)),
               "query subset": queries}
    comparison = Comparison(subsets)
    seed_ckpt = load_checkpoint(seed_checkpoint)
    metrics, errors = score_model(seed_ckpt.model, evaluation, subsets, params)
    comparison.arms["before"] = ArmResult("before", 0, 0, 0.0, metrics, errors, str(seed_checkpoint),
                                          seed_ckpt.version)
    for name, (images, labels) in {**batches, "control": ([], [])}.items():
        arm_set = merged_training_set(train, images, labels, work_dir / f"train_{name}.json")
        new_names = {im["file_name"] for im in images}
        weights = [oversample if arm_set.images[i]["file_name"] in new_names else 1.0 for i in arm_set.images]
        arm = None
        for seed in seeds:
            checkpoint = load_checkpoint(seed_checkpoint)  # a fresh copy of the seed model for every run
            cfg = TrainConfig(steps=steps, lr=lr, warmup_steps=max(1, steps // 10), seed=seed)
            handle = hard_negative_mining.enable(checkpoint.model, hard_negatives) if hard_negatives > 0 else None
            try:
                result = train_model(checkpoint.model, CocoDetection(arm_set, train=True), cfg,
                                     oversample=weights if new_names else None, progress=progress)
            finally:
                if handle is not None:
                    handle.remove()
            metrics, errors = score_model(checkpoint.model, evaluation, subsets, params)
            run = {"seed": seed, "seconds": round(result.seconds, 1), "errors": errors,
                   "mAP": {s: {t: m[t]["mAP"] for t in ("bbox", "segm") if t in m} for s, m in metrics.items()}}
            if arm is None:
                digest = data_hash(Path(arm_set.path).read_bytes(), steps, seed, name, oversample, hard_negatives)
                version = new_version(checkpoint.config, digest) + f"-{name}"
                path = save_checkpoint(work_dir / f"{version}.pt", checkpoint.model, checkpoint.config, version,
                                       digest, metrics=run["mAP"], parent=seed_ckpt.version)
                if fdb is not None:
                    from detectors.pipeline import register  # noqa: PLC0415

                    register(fdb, load_checkpoint(path))
                arm = ArmResult(name, len(new_names), result.steps, 0.0, metrics, {}, str(path), version)
            arm.seconds += result.seconds
            arm.runs.append(run)
        arm.error_counts = {t: statistics.fmean(r["errors"].get(t, 0) for r in arm.runs)
                            for t in {t for r in arm.runs for t in r["errors"]}}
        comparison.arms[name] = arm
    return comparison
