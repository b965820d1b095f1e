"""The retrain-and-compare experiment run for real: fine-tune every arm with every training seed from the same
seed model, score each with one inference pass feeding the COCO evaluator and the error typer, register the arm
models. The experiment's design and its results (`Comparison`) are `mining.compare`'s; the training is here,
where models meet the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from detectors import hard_negatives as hard_negative_mining
from detectors.checkpoint import Checkpoint, data_hash, load_checkpoint, new_version, save_checkpoint
from detectors.coco import CocoDetection
from detectors.config import FinetuneConfig
from detectors.early_stopping import BestOnHoldout, holdout_ids
from detectors.evaluate import CocoEvaluator, dataset_labels
from detectors.inference import run_inference
from detectors.model import frozen
from detectors.train import TrainResult, train_model
from fdb import FeatureDB
from jobs.context import register_checkpoint
from jobs.parallel import run_all
from mining.compare import ArmResult, Comparison, arm_training_set, evaluation_subsets, summarise_errors
from mining.config import EvaluationConfig, MatchConfig
from mining.model_errors import ErrorCost, ErrorCounter
from mining.evaluation import (ImageErrorTypes, OperatingPoint, check_batches_apart, check_test_split,
                               report_subsets, tail_from_errors, tail_from_metadata)
from records import FP_TYPES
from records.coco import CocoSet


@dataclass
class Scores:
    """What one inference pass over an evaluation set says about a model."""
    metrics: dict  # subset -> pycocotools metrics (`detectors.evaluate.evaluate_predictions`)
    errors: dict  # error type -> count at the matching score threshold, on the whole set
    cost: dict  # error type -> bbox mAP it costs on the whole set (TIDE, `mining.model_errors.ErrorCost`)
    cost_by_subset: dict  # subset -> {"bbox_map", "cost"}
    operating_point: dict  # subset -> {"all", "per_class"} at the serving threshold (`mining.evaluation`)

    def as_run(self) -> dict:
        """The numbers a run record keeps (`mining.compare.ArmResult.runs`)."""
        superset = self.metrics.get("superset", {}).get("bbox")
        return {"errors": self.errors, "error_cost": self.cost, "error_cost_by_subset": self.cost_by_subset,
                "operating_point": self.operating_point,
                "mAP": {s: {t: m[t]["mAP"] for t in ("bbox", "segm") if t in m} for s, m in self.metrics.items()},
                # Each class's bbox AP and AP50 on the superset: what a rare class's benchmark reads per run.
                "bbox_per_class": {"mAP50": superset["mAP50"], "AP": superset["per_class_AP"],
                                   "AP50": superset.get("per_class_AP50", {})} if superset else {}}


def score_model(model, evaluation: CocoSet, subsets: dict[str, list[int]], params: MatchConfig,
                progress: bool = False, cost_types: list[str] | None = None,
                config: EvaluationConfig = EvaluationConfig()) -> Scores:
    """From one pass over the evaluation set: pycocotools metrics on each subset, error counts by type (at the
    matching score threshold), the bbox mAP each error type costs on the set and on each subset but `rest`
    (`cost_types` are also costed together), and the operating point at the serving threshold on each subset."""
    images = [(i, evaluation.image_path(i)) for i in evaluation.images]
    costed = {name: ids for name, ids in subsets.items() if name != "rest"}
    metrics, errors, cost, operating = run_inference(
        model, dataset_labels(evaluation), images,
        [CocoEvaluator(evaluation, subsets), ErrorCounter(evaluation, params),
         ErrorCost(evaluation, params, cost_types, subsets=costed),
         OperatingPoint(evaluation, subsets, config.serving_threshold, params)], progress=progress, desc="scoring")
    return Scores(metrics, errors, cost["cost"], cost.get("by_subset", {}), operating)


def fix_tail(model, test: CocoSet, params: MatchConfig, queried_types: list[str] | None,
             progress: bool = False) -> tuple[list[int], str]:
    """The tail of the test split, fixed before any arm is trained: from the generator's metadata where the set
    has it, else the images where `model` (production, the seed) makes the queried error types."""
    tail = tail_from_metadata(test)
    if tail is not None:
        return tail, "the generator's metadata: test images holding a look-alike distractor"
    types = list(queried_types or FP_TYPES)
    [found] = run_inference(model, dataset_labels(test), [(i, test.image_path(i)) for i in test.images],
                            [ImageErrorTypes(test, params)], progress=progress, desc="fixing the tail")
    return tail_from_errors(found, types), f"the seed model's errors on the test split ({', '.join(types)})"


def fine_tune(start: str | Path, train_set: CocoSet, weights: list[float] | None, recipe: FinetuneConfig,
              seed: int, progress: bool = False, new_names: set[str] | None = None,
              stop_set: CocoSet | None = None) -> tuple[Checkpoint, TrainResult]:
    """A fresh copy of the checkpoint at `start`, fine-tuned with the recipe and one training seed (hard-negative
    mining on for the run when the recipe asks for it). With `recipe.holdout`, a share of the new images
    (`new_names`: those the starting model never trained on) is held out and the weights best on it are kept,
    `detectors.early_stopping`; with no new images the run trains every step. With a `stop_set` (labelled images
    that neither train nor query nor test: `dataengine split`'s holdout) every run, the control's too, stops at its
    plateau there instead, with `recipe.patience`."""
    checkpoint = load_checkpoint(start)
    held_out = set() if stop_set is not None else set(holdout_ids(train_set, recipe.holdout,
                                                                  among=new_names or set()))
    train_ids = [i for i in train_set.images if i not in held_out]
    if weights is not None:
        weight_of = dict(zip(train_set.images, weights))
        weights = [weight_of[i] for i in train_ids]
    # Where the run stops: the stop set, else the held-out new images, else nowhere (every step trains).
    stop_on = ((stop_set, sorted(stop_set.images)) if stop_set is not None else
               (train_set, sorted(held_out)) if held_out else None)
    hooks = (BestOnHoldout(*stop_on, recipe.check_every, recipe.patience, check_start=recipe.check_start),) \
        if stop_on else ()
    handle = hard_negative_mining.enable(checkpoint.model, recipe.hard_negatives) if recipe.hard_negatives > 0 else None
    try:
        with frozen(checkpoint.model, recipe.freeze):
            result = train_model(checkpoint.model, CocoDetection(train_set, train_ids, train=True),
                                 recipe.train_config(seed), oversample=weights, progress=progress, hooks=hooks)
    finally:
        if handle is not None:
            handle.remove()
    return checkpoint, result


@dataclass(frozen=True)
class ArmRun:
    """One training run of the experiment: an arm fine-tuned from the seed with one training seed, then scored.
    The arm's first run keeps its checkpoint (`save`)."""
    arm: str
    seed: int
    train_set: CocoSet
    weights: list[float] | None
    new_names: frozenset[str]
    save: bool


@dataclass(frozen=True)
class RunOutcome:
    """What a run hands back: its record (`ArmResult.runs`), the first run's metrics and saved checkpoint."""
    run: dict
    metrics: dict
    steps: int
    seconds: float
    checkpoint: str | None = None
    version: str | None = None


def run_arm(job: ArmRun, seed_checkpoint: str, recipe: FinetuneConfig, evaluation: CocoSet,
            subsets: dict[str, list[int]], params: MatchConfig, cost_types: list[str] | None,
            config: EvaluationConfig, work_dir: Path, progress: bool, parent: str, on_test: bool,
            stop_set: CocoSet | None = None) -> RunOutcome:
    """Fine-tune and score one run; a plain function of picklable arguments, so a worker process can run it."""
    checkpoint, result = fine_tune(seed_checkpoint, job.train_set, job.weights, recipe, job.seed, progress,
                                   set(job.new_names), stop_set)
    scores = score_model(checkpoint.model, evaluation, subsets, params, cost_types=cost_types, config=config)
    run = {"seed": job.seed, "seconds": round(result.seconds, 1), "steps": result.steps,
           "holdout": result.holdout, **scores.as_run()}
    path = version = None
    if job.save:
        digest = data_hash(Path(job.train_set.path).read_bytes(), recipe.steps, job.seed, job.arm,
                           recipe.oversample, recipe.hard_negatives)
        version = new_version(checkpoint.config, digest) + f"-{job.arm}"
        # On a test split the arm keeps its test numbers as a retrain's candidate does (`test`).
        numbers = {**run["mAP"], **({"test": {"mAP": run["mAP"], "operating_point": run["operating_point"]}}
                                    if on_test else {})}
        path = str(save_checkpoint(work_dir / f"{version}.pt", checkpoint.model, checkpoint.config, version,
                                   digest, metrics=numbers, parent=parent))
    return RunOutcome(run, scores.metrics, result.steps, result.seconds, path, version)


def run_experiment(seed_checkpoint: str | Path, train: CocoSet, batches: dict[str, tuple[list, list]],
                   evaluation: CocoSet, query_image_ids: list[int], work_dir: str | Path,
                   recipe: FinetuneConfig = FinetuneConfig(), params: MatchConfig = MatchConfig(),
                   fdb: FeatureDB | None = None, progress: bool = True, test: CocoSet | None = None,
                   config: EvaluationConfig = EvaluationConfig(),
                   queried_types: list[str] | None = None, stop_set: CocoSet | None = None) -> Comparison:
    """Fine-tune one model per arm and training seed (`batches`: arm -> (COCO images, annotations); the control
    arm is added here, with `recipe.control_seeds`) and score them all beside the seed model, in `recipe.workers`
    processes. With a `test` split (one that fed nothing: it is checked against the train, val and batch images)
    the arms are scored on its superset, tail and rest; without one, on the val split that fed the queries
    (superset, without the query images, the query images). The first seed's checkpoint of each arm is saved and,
    with `fdb`, registered as a model version with its metrics."""
    work_dir = Path(work_dir)
    seed_ckpt = load_checkpoint(seed_checkpoint)
    if test is not None:
        check_test_split(test, {"the queries and the gate (val)": evaluation, "training (train)": train,
                                **({"early stopping (holdout)": stop_set} if stop_set is not None else {})})
        check_batches_apart(test, batches)
        tail, tail_source = fix_tail(seed_ckpt.model, test, params, queried_types, progress)
        comparison = Comparison(report_subsets(test, tail), evaluated_on="test", tail_source=tail_source,
                                serving_threshold=config.serving_threshold)
        evaluation = test
    else:
        comparison = Comparison(evaluation_subsets(evaluation, query_image_ids),
                                serving_threshold=config.serving_threshold)
    subsets = comparison.subsets
    scores = score_model(seed_ckpt.model, evaluation, subsets, params, cost_types=queried_types, config=config)
    comparison.arms["before"] = ArmResult("before", 0, 0, 0.0, scores.metrics, scores.errors, str(seed_checkpoint),
                                          seed_ckpt.version, scored={"seed": None, **scores.as_run()})
    jobs, new_images = [], {}
    for name, (images, labels) in {**batches, "control": ([], [])}.items():
        arm_set, weights, new_names = arm_training_set(train, name, images, labels, work_dir, recipe.oversample)
        new_images[name] = len(new_names)
        jobs += [ArmRun(name, seed, arm_set, weights, frozenset(new_names), save=i == 0)
                 for i, seed in enumerate(recipe.seeds_of(name))]
    run = partial(run_arm, seed_checkpoint=str(seed_checkpoint), recipe=recipe, evaluation=evaluation,
                  subsets=subsets, params=params, cost_types=queried_types, config=config, work_dir=work_dir,
                  progress=progress and recipe.workers <= 1, parent=seed_ckpt.version,
                  on_test=comparison.evaluated_on == "test", stop_set=stop_set)
    for job, outcome in zip(jobs, run_all(jobs, run, recipe.workers, progress, desc="arm runs")):
        if job.save:
            if fdb is not None:
                # An arm is a candidate in an experiment: never served unless someone names it.
                register_checkpoint(fdb, load_checkpoint(outcome.checkpoint), role="arm", recipe=asdict(recipe),
                                    training_data={"train": str(job.train_set.path), "arm": job.arm})
            comparison.arms[job.arm] = ArmResult(job.arm, new_images[job.arm], outcome.steps, 0.0, outcome.metrics,
                                                 {}, outcome.checkpoint, outcome.version)
        arm = comparison.arms[job.arm]
        arm.seconds += outcome.seconds
        arm.runs.append(outcome.run)
    for name in new_images:
        summarise_errors(comparison.arms[name])
    return comparison
