"""Retrain and compare: the honest test of mining.

Every arm starts from the same seed checkpoint and gets the same number of fine-tuning steps:
- `mined`: the training set plus the mined batch (with the labels that came back),
- `random`: the training set plus a random batch of the same budget from the same pool,
- `control`: the training set alone — without it a gain can be nothing but more training.
New images are drawn `oversample` times as often as the old ones, so a small batch counts within few steps.
Each model is scored with pycocotools on the evaluation superset, on the subset without the query images, and
on the query subset, and its high-score errors are counted by type before and after.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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
    metrics: dict  # subset -> evaluate_predictions output
    error_counts: dict  # error type -> count at the score threshold, on the superset
    checkpoint: str | None = None
    version: str | None = None


@dataclass
class Comparison:
    subsets: dict[str, list[int]]
    arms: dict[str, ArmResult] = field(default_factory=dict)

    def map_table(self, iou_type: str = "bbox") -> list[dict]:
        rows = []
        for name, arm in self.arms.items():
            row = {"arm": name, "extra images": arm.extra_images}
            for subset in self.subsets:
                row[subset] = round(arm.metrics[subset][iou_type]["mAP"], 4) if iou_type in arm.metrics[subset] else None
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
                        lr: float = 5e-4, oversample: float = 3.0, seed: int = 0,
                        params: MatchParams = MatchParams(), fdb=None, progress: bool = True) -> Comparison:
    """Fine-tune one model per arm (`batches`: arm -> (COCO images, annotations); the control arm is added
    here) and score them all beside the seed model."""
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
    for name, (images, annotations) in {**batches, "control": ([], [])}.items():
        arm_set = merged_training_set(train, images, annotations, work_dir / f"train_{name}.json")
        new_names = {im["file_name"] for im in images}
        weights = [oversample if arm_set.images[i]["file_name"] in new_names else 1.0 for i in arm_set.images]
        checkpoint = load_checkpoint(seed_checkpoint)  # a fresh copy of the seed for every arm
        cfg = TrainConfig(steps=steps, lr=lr, warmup_steps=max(1, steps // 10), seed=seed)
        result = train_model(checkpoint.model, CocoDetection(arm_set, train=True), cfg,
                             oversample=weights if new_names else None, progress=progress)
        metrics, errors = score_model(checkpoint.model, evaluation, subsets, params)
        digest = data_hash(Path(arm_set.path).read_bytes(), steps, seed, name)
        version = new_version(checkpoint.config, digest) + f"-{name}"
        path = save_checkpoint(work_dir / f"{version}.pt", checkpoint.model, checkpoint.config, version, digest,
                               metrics={s: {t: m[t]["mAP"] for t in ("bbox", "segm") if t in m}
                                        for s, m in metrics.items()}, parent=seed_ckpt.version)
        if fdb is not None:
            from detectors.pipeline import register  # noqa: PLC0415

            register(fdb, load_checkpoint(path))
        comparison.arms[name] = ArmResult(name, len(new_names), result.steps, result.seconds, metrics, errors,
                                          str(path), version)
    return comparison
