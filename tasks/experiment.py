"""The retrain-and-compare experiment run for real: fine-tune every arm with every training seed from the same
seed model, score each with one inference pass feeding the COCO evaluator and the error typer, register the arm
models. The experiment's design and its results (`Comparison`) are `mining.compare`'s; the training is here,
where models meet the store."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from detectors import hard_negatives as hard_negative_mining
from detectors.checkpoint import Checkpoint, data_hash, load_checkpoint, new_version, save_checkpoint
from detectors.coco import CocoDetection
from detectors.config import FinetuneConfig
from detectors.early_stopping import BestOnHoldout, holdout_ids
from detectors.evaluate import CocoEvaluator, dataset_labels
from detectors.inference import run_inference
from detectors.train import TrainResult, train_model
from fdb import FeatureDB
from mining.compare import ArmResult, Comparison, arm_training_set, evaluation_subsets, summarise_errors
from mining.config import MatchConfig
from mining.errors import ErrorCost, ErrorCounter
from records.coco import CocoSet
from tasks.context import register_checkpoint


def score_model(model, evaluation: CocoSet, subsets: dict[str, list[int]], params: MatchConfig,
                progress: bool = False, cost_types: list[str] | None = None) -> tuple[dict, dict, dict]:
    """From one pass over the evaluation set: pycocotools metrics on each subset, error counts by type (at the
    matching score threshold) and the bbox mAP each false-positive type costs (`mining.errors.ErrorCost`;
    `cost_types` are also costed together)."""
    images = [(i, evaluation.image_path(i)) for i in evaluation.images]
    metrics, errors, cost = run_inference(
        model, dataset_labels(evaluation), images,
        [CocoEvaluator(evaluation, subsets), ErrorCounter(evaluation, params),
         ErrorCost(evaluation, params, cost_types)], progress=progress, desc="scoring")
    return metrics, errors, cost["cost"]


def fine_tune(start: str | Path, train_set: CocoSet, weights: list[float] | None, recipe: FinetuneConfig,
              seed: int, progress: bool = False, new_names: set[str] | None = None) -> tuple[Checkpoint, TrainResult]:
    """A fresh copy of the checkpoint at `start`, fine-tuned with the recipe and one training seed (hard-negative
    mining on for the run when the recipe asks for it). With `recipe.holdout`, a share of the new images
    (`new_names`: those the starting model never trained on) is held out and the weights best on it are kept,
    `detectors.early_stopping`; with no new images the run trains every step."""
    checkpoint = load_checkpoint(start)
    held_out = set(holdout_ids(train_set, recipe.holdout, among=new_names or set()))
    train_ids = [i for i in train_set.images if i not in held_out]
    if weights is not None:
        weight_of = dict(zip(train_set.images, weights))
        weights = [weight_of[i] for i in train_ids]
    hooks = (BestOnHoldout(train_set, sorted(held_out), recipe.check_every, recipe.patience),) if held_out else ()
    handle = hard_negative_mining.enable(checkpoint.model, recipe.hard_negatives) if recipe.hard_negatives > 0 else None
    try:
        result = train_model(checkpoint.model, CocoDetection(train_set, train_ids, train=True),
                             recipe.train_config(seed), oversample=weights, progress=progress, hooks=hooks)
    finally:
        if handle is not None:
            handle.remove()
    return checkpoint, result


def retrain_and_compare(seed_checkpoint: str | Path, train: CocoSet, batches: dict[str, tuple[list, list]],
                        evaluation: CocoSet, query_image_ids: list[int], work_dir: str | Path,
                        recipe: FinetuneConfig = FinetuneConfig(), params: MatchConfig = MatchConfig(),
                        fdb: FeatureDB | None = None, progress: bool = True) -> Comparison:
    """Fine-tune one model per arm and training seed (`batches`: arm -> (COCO images, annotations); the control
    arm is added here) and score them all beside the seed model. The first seed's checkpoint of each arm is saved
    and, with `fdb`, registered as a model version with its metrics."""
    work_dir = Path(work_dir)
    subsets = evaluation_subsets(evaluation, query_image_ids)
    comparison = Comparison(subsets)
    seed_ckpt = load_checkpoint(seed_checkpoint)
    metrics, errors, _ = score_model(seed_ckpt.model, evaluation, subsets, params)
    comparison.arms["before"] = ArmResult("before", 0, 0, 0.0, metrics, errors, str(seed_checkpoint),
                                          seed_ckpt.version)
    for name, (images, labels) in {**batches, "control": ([], [])}.items():
        arm_set, weights, new_names = arm_training_set(train, name, images, labels, work_dir, recipe.oversample)
        arm = None
        for seed in recipe.seeds:
            checkpoint, result = fine_tune(seed_checkpoint, arm_set, weights, recipe, seed, progress, new_names)
            metrics, errors, cost = score_model(checkpoint.model, evaluation, subsets, params)
            run = {"seed": seed, "seconds": round(result.seconds, 1), "steps": result.steps, "errors": errors,
                   "error_cost": cost, "holdout": result.holdout,
                   "mAP": {s: {t: m[t]["mAP"] for t in ("bbox", "segm") if t in m} for s, m in metrics.items()}}
            if arm is None:
                digest = data_hash(Path(arm_set.path).read_bytes(), recipe.steps, seed, name, recipe.oversample,
                                   recipe.hard_negatives)
                version = new_version(checkpoint.config, digest) + f"-{name}"
                path = save_checkpoint(work_dir / f"{version}.pt", checkpoint.model, checkpoint.config, version,
                                       digest, metrics=run["mAP"], parent=seed_ckpt.version)
                if fdb is not None:
                    # An arm is a candidate in an experiment: never served unless someone names it.
                    register_checkpoint(fdb, load_checkpoint(path), role="arm", recipe=asdict(recipe),
                                        training_data={"train": str(arm_set.path), "arm": name})
                arm = ArmResult(name, len(new_names), result.steps, 0.0, metrics, {}, str(path), version)
            arm.seconds += result.seconds
            arm.runs.append(run)
        summarise_errors(arm)
        comparison.arms[name] = arm
    return comparison
