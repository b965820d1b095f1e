"""Retrain: a candidate trained on everything labelled so far, judged against production, promoted only through
the gate.

production model -> fine-tuned (the recipe's steps, once per training seed) on the labelled set plus every batch
whose labels came back, at its newest label version (new images drawn `oversample` times as often, so the old
data is replayed and the new data counts) -> pycocotools, typed errors and what each error type costs in mAP on
the fixed evaluation set, for the candidate's seeds and for production; the seed best on the superset is the
candidate that would be served -> the gate (`mining.gate`) -> with `promote="auto"`, production switches
to the candidate when it passes. The decision with its numbers goes to fdb (`runs`, and `promotions` when it
switches) and to a report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from annotation_export.importer import labels_as_coco
from detectors.checkpoint import data_hash, load_checkpoint, new_version, save_checkpoint
from detectors.config import FinetuneConfig
from fdb import FeatureDB
from fdb import exports as export_store
from fdb import models as registry
from fdb import runs as run_store
from fdb import selections as selection_store
from jobs.context import production_or, register_checkpoint
from jobs.experiment import fine_tune, fix_tail, score_model
from jobs.parallel import run_all
from mining.compare import arm_training_set, combine_batches, mean_sd
from mining.config import EvaluationConfig, MatchConfig
from mining.evaluation import check_batches_apart, check_test_split, report_subsets
from mining.gate import GateDecision, decide, served_run
from records import ERROR_TYPES, QUERIED_FP_TYPES
from records.coco import CocoSet, load_coco
from records.hashing import file_sha256



@dataclass
class RetrainResult:
    decision: GateDecision
    candidate: str
    production_before: str
    production_after: str
    batches: list[dict]
    report: str
    production_numbers: dict  # the model it was judged against: bbox_map, mAP by subset, errors
    runs: list[dict]  # the candidate's, one per training seed

    @property
    def promoted(self) -> bool:
        return self.production_after != self.production_before


def queried_types(fdb: FeatureDB, batches: list[dict]) -> list[str]:
    """The error types the labelled batches were mined for (a mined batch without a type filter: all of them)."""
    types: set[str] = set()
    for batch in batches:
        found = selection_store.read_selection(fdb, batch["selection_id"])
        if found is None or found[0].arm != "mined":
            continue
        chosen = found[0].params.get("types")
        types |= set(chosen) if chosen else set(ERROR_TYPES)
    return sorted(types) or list(QUERIED_FP_TYPES)


@dataclass(frozen=True)
class RetrainSets:
    """The files a retrain reads: the labelled set it trains on, the fixed evaluation set the gate judges on, their
    images, and a test split that fed nothing (reported only, never gated on; refused if it fed anything)."""
    train_json: str
    eval_json: str
    image_dir: str
    test_json: str | None = None


@dataclass(frozen=True)
class RetrainSettings:
    """How a retrain runs and what it may do. `promote`: "auto" (production switches when the gate passes) or
    "never" (judge and report only); `base`: the model judged against and fine-tuned (default: production);
    `query_images` (ids in the evaluation set): scored as a second subset beside the superset;
    `allow_no_batches`: retrain on the labelled set alone when no labels came back (the no-new-data control)."""
    recipe: FinetuneConfig = FinetuneConfig()
    promote: str = "auto"
    base: str | None = None
    match: MatchConfig = MatchConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    query_images: tuple[int, ...] = ()
    allow_no_batches: bool = False

    def __post_init__(self):
        if self.promote not in ("auto", "never"):
            raise ValueError(f"promote must be 'auto' or 'never', got {self.promote!r}")


@dataclass(frozen=True)
class RetrainInputs:
    """What a retrain reads before it trains: the sets, the labelled batches and the test split's subsets."""
    train: CocoSet
    evaluation: CocoSet
    test: CocoSet | None
    batches: list[dict]
    labelled: tuple[list[dict], list[dict]]  # the batches' COCO images and annotations, as one
    types: list[str]  # the error types the batches were mined for


@dataclass(frozen=True)
class Baseline:
    """The model the candidate starts from and is judged against (production, or the named base): its checkpoint,
    its numbers, and the subsets every model is scored on."""
    checkpoint: str
    numbers: dict  # version, bbox_map, errors, error_cost, mAP by subset; `test` on a test split
    subsets: dict  # the evaluation set's: the superset and the query subset
    test_subsets: dict | None  # the test split's (superset, tail, rest), the tail fixed by production
    tail_source: str | None

    @property
    def version(self) -> str:
        return self.numbers["version"]


@dataclass(frozen=True)
class Candidate:
    """The candidate that would be served (the training seed best on the superset), registered, and every seed's
    run record."""
    version: str
    runs: list[dict]
    served: int  # index of the served seed in `runs`


def retrain_and_gate(fdb: FeatureDB, sets: RetrainSets, work_dir: str | Path,
                     settings: RetrainSettings = RetrainSettings(), progress: bool = False) -> RetrainResult:
    """Production scored -> a candidate trained (one run per training seed, in `recipe.workers` processes) ->
    the gate -> promoted when it passes and `settings.promote` is "auto" -> the decision recorded and reported."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    production = production_or(fdb, settings.base)
    inputs = read_inputs(fdb, sets, settings.allow_no_batches)
    run_id = run_store.start_run(fdb, "retrain", {"train_json": str(sets.train_json), "eval_json": str(sets.eval_json),
                                                  "recipe": asdict(settings.recipe), "promote": settings.promote,
                                                  "batches": inputs.batches, "queried_types": inputs.types},
                                 model_version=production)
    baseline = score_production(registry.get_model(fdb, production)["checkpoint"], production, inputs, settings,
                                progress)
    candidate = train_candidate(fdb, sets, inputs, baseline, settings, work_dir, progress)
    decision = decide(baseline.numbers, candidate.runs, inputs.types, candidate.version)
    test_set = describe_test_split(sets, baseline, settings.evaluation)
    record_metrics(fdb, sets.eval_json, baseline.numbers, candidate.runs, candidate.served, decision, test_set)
    after = promote_if_passed(fdb, decision, settings.promote, production)
    report = write_decision(work_dir / "report", decision, settings.promote, production, after, inputs.batches,
                            test=(baseline.numbers, candidate.runs, test_set) if test_set else None)
    run_store.finish_run(fdb, run_id, metrics={"decision": decision.as_dict(), "candidate": candidate.version,
                                               "production_after": after, "report": report})
    return RetrainResult(decision, candidate.version, production, after, inputs.batches, report, baseline.numbers,
                         candidate.runs)


def read_inputs(fdb: FeatureDB, sets: RetrainSets, allow_no_batches: bool) -> RetrainInputs:
    """The sets and the labelled batches a retrain starts from; a test split that fed the gate, training or a
    batch is refused here, before anything is trained."""
    batches = export_store.labelled_batches(fdb)
    train = load_coco(sets.train_json, image_dir=sets.image_dir)
    evaluation = load_coco(sets.eval_json, image_dir=sets.image_dir)
    if not batches and not allow_no_batches:
        raise LookupError("no labelled batch yet: import the team's labels (`dataengine import-labels`) first")
    labelled = combine_batches([labels_as_coco(fdb, b["batch_id"], sets.image_dir, b["label_version"])
                                for b in batches])
    types = queried_types(fdb, batches)
    test = load_coco(sets.test_json, image_dir=sets.image_dir) if sets.test_json else None
    if test is not None:
        check_test_split(test, {"the gate (val)": evaluation, "training (train)": train})
        check_batches_apart(test, {"labelled": labelled})
    return RetrainInputs(train, evaluation, test, batches, labelled, types)


def score_production(checkpoint: str, version: str, inputs: RetrainInputs, settings: RetrainSettings,
                     progress: bool) -> Baseline:
    """Production's numbers on the evaluation set (and the test split), what the candidate is judged against; on
    a test split, its tail too, fixed by production before any candidate exists."""
    match = settings.match
    subsets = {"superset": sorted(inputs.evaluation.images), "query subset": sorted(settings.query_images)}
    model = load_checkpoint(checkpoint).model
    base = score_model(model, inputs.evaluation, subsets, match, cost_types=inputs.types)
    numbers = {"version": version, "bbox_map": base.metrics["superset"]["bbox"]["mAP"], "errors": base.errors,
               "error_cost": base.cost, "mAP": _maps(base.metrics)}
    if inputs.test is None:
        return Baseline(checkpoint, numbers, subsets, None, None)
    tail, tail_source = fix_tail(model, inputs.test, match, inputs.types, progress)
    test_subsets = report_subsets(inputs.test, tail)
    numbers["test"] = score_model(model, inputs.test, test_subsets, match, cost_types=inputs.types,
                                  config=settings.evaluation).as_run()
    return Baseline(checkpoint, numbers, subsets, test_subsets, tail_source)


def train_candidate(fdb: FeatureDB, sets: RetrainSets, inputs: RetrainInputs, baseline: Baseline,
                    settings: RetrainSettings, work_dir: Path, progress: bool) -> Candidate:
    """The candidate fine-tuned from `baseline` once per training seed on the labelled set plus the batches; the seed
    best on the superset is kept and registered, the other seeds' models deleted."""
    recipe = settings.recipe
    train_set, weights, new_names = arm_training_set(inputs.train, "retrain", *inputs.labelled, work_dir,
                                                     recipe.oversample)
    seed_run = SeedRun(baseline, train_set, weights, frozenset(new_names), inputs, settings, work_dir,
                       progress and recipe.workers <= 1)
    outcomes = run_all(list(recipe.seeds), seed_run, recipe.workers, progress, desc="candidate seeds")
    runs, paths = [run for run, _ in outcomes], [Path(path) for _, path in outcomes]
    served = served_run(runs)
    for i, path in enumerate(paths):
        if i != served:
            path.unlink()  # every seed's model was kept until the gate's rule named the one that would be served
    checkpoint = load_checkpoint(paths[served])
    register_checkpoint(fdb, checkpoint, recipe=asdict(recipe), training_data={
        "labelled_set": str(sets.train_json), "batches": inputs.batches, "images": len(train_set.images),
        "new_images": len(new_names), "training_seed": recipe.seeds[served]})
    return Candidate(checkpoint.version, runs, served)


@dataclass(frozen=True)
class SeedRun:
    """One training seed of the candidate, called with the seed: fine-tuned, scored, saved; returns its run record
    and checkpoint path. What every seed shares is held here, so a worker process can run one (`jobs.parallel`:
    it pickles)."""
    baseline: Baseline
    train_set: CocoSet
    weights: list[float] | None
    new_names: frozenset[str]
    inputs: RetrainInputs
    settings: RetrainSettings
    work_dir: Path
    progress: bool

    def __call__(self, seed: int) -> tuple[dict, str]:
        recipe, match, inputs = self.settings.recipe, self.settings.match, self.inputs
        checkpoint, result = fine_tune(self.baseline.checkpoint, self.train_set, self.weights, recipe, seed,
                                       self.progress, set(self.new_names))
        scored = score_model(checkpoint.model, inputs.evaluation, self.baseline.subsets, match,
                             cost_types=inputs.types)
        metrics, errors, cost = scored.metrics, scored.errors, scored.cost
        run = {"seed": seed, "seconds": round(result.seconds, 1), "steps": result.steps, "errors": errors,
               "error_cost": cost, "holdout": result.holdout, "bbox_map": metrics["superset"]["bbox"]["mAP"],
               "mAP": _maps(metrics)}
        if inputs.test is not None:
            run["test"] = score_model(checkpoint.model, inputs.test, self.baseline.test_subsets, match,
                                      cost_types=inputs.types, config=self.settings.evaluation).as_run()
        digest = data_hash(Path(self.train_set.path).read_bytes(), asdict(recipe), self.baseline.version, seed)
        version = new_version(checkpoint.config, digest)
        path = save_checkpoint(self.work_dir / f"{version}.pt", checkpoint.model, checkpoint.config, version, digest,
                               metrics=run["mAP"], parent=self.baseline.version)
        return run, str(path)


def describe_test_split(sets: RetrainSets, baseline: Baseline, evaluation: EvaluationConfig) -> dict | None:
    """What the report and the registry say about the test split (None without one): its file and hash, where its
    tail came from, the serving threshold and its subsets' sizes."""
    if baseline.test_subsets is None:
        return None
    return {"set": str(sets.test_json), "sha256": file_sha256(sets.test_json), "tail_source": baseline.tail_source,
            "serving_threshold": evaluation.serving_threshold,
            "images": {k: len(v) for k, v in baseline.test_subsets.items()}}


def promote_if_passed(fdb: FeatureDB, decision: GateDecision, promote: str, production: str) -> str:
    """The production model after the gate: the candidate when the gate passed and `promote` is "auto"."""
    if not (decision.promote and promote == "auto"):
        return production
    registry.hand_over(fdb, decision.candidate["version"], production,
                       "retrain: the gate passed; " + "; ".join(decision.reasons), decision.as_dict())
    return decision.candidate["version"]


def record_metrics(fdb: FeatureDB, eval_json: str, production_numbers: dict, runs: list[dict], served: int,
                   decision: GateDecision, test_set: dict | None) -> None:
    """Production's and the candidate's numbers in the registry, with the evaluation set they were measured on."""
    evaluation_set = {"set": str(eval_json), "sha256": file_sha256(eval_json)}
    registry.set_metrics(fdb, production_numbers["version"], {
        **evaluation_set, "mAP": production_numbers["mAP"], "errors": production_numbers["errors"],
        "error_cost": production_numbers["error_cost"],
        **({"test": {**test_set, **production_numbers["test"]}} if test_set else {})})
    registry.set_metrics(fdb, decision.candidate["version"], {
        **evaluation_set, "mAP": runs[served]["mAP"], "bbox_map_mean": decision.candidate["bbox_map"],
        "bbox_map_sd": decision.candidate["bbox_map_sd"], "errors": decision.candidate["errors"],
        "error_cost": decision.candidate["error_cost"], "runs": runs,
        **({"test": {**test_set, **summarise_test_runs(runs)}} if test_set else {})})


def _maps(metrics: dict) -> dict:
    """subset -> {bbox, segm} mAP."""
    return {s: {t: m[t]["mAP"] for t in ("bbox", "segm") if t in m} for s, m in metrics.items()}


def summarise_test_runs(runs: list[dict]) -> dict:
    """The candidate's test numbers over its training seeds, shaped as one run's (`mAP`, `operating_point`: the
    means), with the spread beside them (`sd`)."""
    subsets = list(runs[0]["test"]["mAP"])
    mean = {"mAP": {}, "operating_point": {}, "sd": {}}
    for subset in subsets:
        maps = [r["test"]["mAP"][subset]["bbox"] for r in runs]
        mean["mAP"][subset] = {"bbox": mean_sd(maps)[0]}
        points = [r["test"]["operating_point"][subset]["all"] for r in runs]
        mean["operating_point"][subset] = {"all": {k: mean_sd([p[k] for p in points])[0]
                                                   for k in ("precision", "recall", "fp_per_image")}}
        mean["sd"][subset] = {"bbox_map": mean_sd(maps)[1],
                              "fp_per_image": mean_sd([p["fp_per_image"] for p in points])[1]}
    return mean


def _test_lines(production_numbers: dict, runs: list[dict], test: dict) -> list[str]:
    lines = ["", "## On the test split (reported only: the gate never saw it)", "",
             f"{test['set']}: {test['images']}; the tail from {test['tail_source']}; serving threshold "
             f"{test['serving_threshold']:g}.", "",
             "| | " + " | ".join(f"bbox mAP, {s}" for s in runs[0]["test"]["mAP"]) + " | FPs per image @ serving |",
             "|---|" + "---:|" * (len(runs[0]["test"]["mAP"]) + 1)]
    p = production_numbers["test"]
    lines.append("| production | " + " | ".join(f"{m['bbox']:.4f}" for m in p["mAP"].values()) +
                 f" | {p['operating_point']['superset']['all']['fp_per_image']:.3f} |")
    c = summarise_test_runs(runs)
    lines.append("| candidate | " + " | ".join(f"{c['mAP'][s]['bbox']:.4f} ± {c['sd'][s]['bbox_map']:.4f}"
                                               for s in c["mAP"]) +
                 f" | {c['operating_point']['superset']['all']['fp_per_image']:.3f} ± "
                 f"{c['sd']['superset']['fp_per_image']:.3f} |")
    return lines


def write_decision(out: Path, decision: GateDecision, promote: str, before: str, after: str,
                   batches: list[dict], test: tuple | None = None) -> str:
    """decision.md and decision.json: what was compared, the numbers, what the gate said and what was done."""
    out.mkdir(parents=True, exist_ok=True)
    c, p = decision.candidate, decision.production
    types = sorted(set(c["errors"]) | set(p["errors"]))
    done = (f"promoted: production {before} -> {after}" if after != before else
            f"not promoted ({'--promote never' if promote == 'never' and decision.promote else 'the gate refused'})"
            f": production stays {before}")
    lines = [f"# Retrain: candidate {c['version']}", "", f"**{done}**", "",
             f"- trained on the labelled set plus {len(batches)} labelled batch(es): "
             + ", ".join(f"{b['batch_id']} (labels v{b['label_version']})" for b in batches),
             f"- queried error types: {', '.join(decision.queried_types)}", "", "## The gate", ""]
    lines += [f"- {'PASS' if ok else 'FAIL'}: {reason}" for ok, reason in zip(decision.checks.values(), decision.reasons)]
    costs = sorted(set(c.get("error_cost", {})) | set(p.get("error_cost", {})))
    lines += ["", "## Numbers on the fixed evaluation set", "",
              "Errors at the matching score threshold; *mAP lost* is what an oracle deleting that type's detections "
              "would gain (all scores).", "",
              "| | bbox mAP (superset) | " + " | ".join(types) + " | " + " | ".join(f"mAP lost: {k}" for k in costs)
              + " |", "|---|---:|" + "---:|" * (len(types) + len(costs)),
              f"| production {p['version']} | {p['bbox_map']:.4f} | "
              + " | ".join(f"{p['errors'].get(t, 0)}" for t in types) + " | "
              + " | ".join(f"{p.get('error_cost', {}).get(k, 0):.4f}" for k in costs) + " |",
              f"| candidate {c['version']} (seed #{c.get('served_seed', 0)} of {c['seeds']}: "
              f"{c.get('served_bbox_map', c['bbox_map']):.4f}) | {c['bbox_map']:.4f} ± {c['bbox_map_sd']:.4f} | "
              + " | ".join(f"{c['errors'].get(t, 0):.1f}" for t in types) + " | "
              + " | ".join(f"{c.get('error_cost', {}).get(k, 0):.4f}" for k in costs) + " |", ""]
    if test is not None:
        lines += _test_lines(*test)
    (out / "decision.md").write_text("\n".join(lines))
    (out / "decision.json").write_text(json.dumps({"done": done, **decision.as_dict()}, indent=1, default=str))
    return str(out / "decision.md")
