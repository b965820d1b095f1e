"""Several turns of the loop, for several engines side by side (`dataengine demo --rounds N`,
`benchmarks/loop_bench.py`).

Every engine starts from the same seed model and the same scenes, keeps its own feature database and registry,
and gets the same labelling budget and the same retraining each round:
- `errors`: the product's night: detect the pool with the production model -> mine with its errors on the
  labelled val set (the `errors` strategy) -> export the mined batch -> the generator's ground truth labels it ->
  retrain -> the gate;
- `random`: the same, but the batch is drawn at random from the same pool;
- `none`: no new data; the same retraining on the labelled set alone.
After each round the production model's numbers on the fixed evaluation set are recorded: bbox mAP on the
superset and on the query subset (the val images where the seed model made a false positive of the queried
types), and the errors by type.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from prefect import flow, get_run_logger

from annotation_export.export import ExportResult
from dataengine.config import store_config
from detectors.config import DetectConfig, FinetuneConfig
from flows.scenes import pool_uris, train_seed_for
from mining.config import MatchConfig, MiningConfig
from mining.gate import served_run
from mining.strategies import STRATEGIES
from records import QUERIED_FP_TYPES
from records.hashing import json_key
from tasks.demo import generate_scenes, oracle_label_batch
from tasks.detect import detect, detect_labelled
from tasks.index import update_pool_index
from tasks.labelling import export, import_batch_labels
from tasks.mine import mine, read_labelled_set
from tasks.models import resolve_model
from tasks.retrain import retrain_candidate

# An engine is named after how it chooses its batch: a selection strategy by name (`mining.strategies`: errors,
# uncertainty, diversity, hybrid; "random", the errors run's random arm), a variant below, or "none" (no new labels:
# the no-new-data engine). Before 2026-12 the errors engine was called "mined", the comparison's word for an arm.
ENGINES = ("errors", "random", "none")
# Engines that mine with other settings than the errors strategy's in the loop (the false positives above, the
# budget split by hits): "errors-cost" queries every error type and splits the budget by the mAP each costs (TIDE).
VARIANTS = {"errors-cost": dict(strategy="errors", types=None, budget_split="cost")}
# `test`: images of a test split that fed nothing, on which each round's production model is also reported
# (0: none; the gate and the queries use val either way).
LOOP = dict(train=60, val=40, pool=120, seed_steps=60, budget=10, k=10, width=320, height=240,
            train_districts=(0, 1, 2, 3), data_seed=0, test=0)


@flow(name="loop")
def loop(rounds: int = 3, engines: list[str] | None = None, sizes: dict | None = None,
         recipe: FinetuneConfig = FinetuneConfig(steps=20, seeds=(0, 1)), root: str | None = None,
         progress: bool = False, detection: DetectConfig = DetectConfig(), match: MatchConfig = MatchConfig()) -> dict:
    """Returns {"rounds": [...], "engines": {engine: [one record per round]}} and writes loop.json under
    `root`. Round 0 is the seed model."""
    engines = list(engines or ENGINES)
    known = {*ENGINES, *STRATEGIES, *VARIANTS}
    unknown = [e for e in engines if e not in known]
    if unknown:
        renamed = " (the engine once called mined is errors)" if "mined" in unknown else ""
        raise ValueError(f"unknown engines {unknown}; an engine is one of {sorted(known)}{renamed}")
    say = get_run_logger().info
    sizes = {**LOOP, **(sizes or {})}
    store = store_config()
    tag = loop_tag(sizes)
    root = Path(root) if root else loop_root(store.home, sizes)
    scenes = loop_scenes(root, sizes, progress)
    history: dict[str, list[dict]] = {}
    query_subset: list[int] | None = None
    for engine in engines:
        # Each engine keeps its own database (its own registry and labels) under the same data home.
        estore = replace(store, db_name=f"{store.db_name}-loop-{tag}-{engine}")
        history[engine], query_subset = _run_engine(estore, engine, scenes, root, rounds, sizes, recipe, detection,
                                                    match, query_subset, progress, say)
    out = {"sizes": sizes, "recipe": {"steps": recipe.steps, "lr": recipe.lr, "oversample": recipe.oversample,
                                      "hard_negatives": recipe.hard_negatives, "seeds": list(recipe.seeds)},
           "query_subset": query_subset, "engines": history}
    root.mkdir(parents=True, exist_ok=True)
    (root / "loop.json").write_text(json.dumps(out, indent=1, default=str))
    return out


@dataclass(frozen=True)
class LoopScenes:
    """The loop's generated scenes: their folder, images folder, splits' COCO files and the pool's image paths."""
    data_dir: Path
    images: str
    train_json: str
    val_json: str
    pool_json: str
    test_json: str | None  # None without a test split
    pool: list[str]


def loop_tag(sizes: dict) -> str:
    """One world's key (`sizes` merged over `LOOP`): its folder under a data home and its engines' databases."""
    return json_key({**LOOP, **sizes}, 8)


def loop_root(home: str | Path, sizes: dict) -> Path:
    """Where `loop` keeps one world's scenes, seed model and numbers under a data home: one folder per world, so a
    second run of the same world reuses both."""
    return Path(home) / "loop" / loop_tag(sizes)


def seed_path(root: Path, sizes: dict) -> Path:
    """The seed model's checkpoint under a loop's root: trained once, shared by every engine."""
    return root / f"seed-{sizes.get('preset', 'small')}-{sizes['seed_steps']}.pt"


def loop_scenes(root: Path, sizes: dict, progress: bool = False) -> LoopScenes:
    """The scenes every engine shares, generated under `root`/synthetic (train, val, pool and, when `sizes` asks
    for one, test) unless already there."""
    data_dir = root / "synthetic"
    annotations, images = data_dir / "annotations", str(data_dir / "images")
    train_json, val_json, pool_json = (str(annotations / f"{s}.json") for s in ("train", "val", "pool"))
    test_json = str(annotations / "test.json") if sizes.get("test") else None
    generate_scenes(str(data_dir), sizes, progress)
    return LoopScenes(data_dir, images, train_json, val_json, pool_json, test_json, pool_uris(data_dir))


def _run_engine(estore, engine: str, scenes: LoopScenes, root: Path, rounds: int, sizes: dict, recipe: FinetuneConfig,
                detection: DetectConfig, match: MatchConfig, query_subset: list[int] | None, progress: bool,
                say) -> tuple[list[dict], list[int] | None]:
    """One engine's rounds from the seed model: (its records, round 0 the seed's; the query subset, set by the
    first round that mines when no engine set it before)."""
    seed = train_seed_for(estore, scenes.data_dir, str(seed_path(root, sizes)), sizes, progress)
    records: list[dict] = []
    for round_no in range(1, rounds + 1):
        result, batch, query_subset = _round(estore, engine, round_no, scenes, root, sizes, recipe, detection, match,
                                             query_subset, progress)
        if round_no == 1:
            records.append(_numbers(0, seed["version"], [result.production_numbers], False, None))
        runs = result.runs if result.promoted else [result.production_numbers]
        record = _numbers(round_no, result.production_after, runs, result.promoted, batch)
        record["gate"] = result.decision.reasons
        if any("test" in run for run in result.runs):
            record["candidate_test"] = _candidate_test(result.runs)
        records.append(record)
        say(f"{engine} round {round_no}: {'promoted' if result.promoted else 'kept'} {result.production_after}; "
            f"bbox mAP {record['bbox_superset']:.3f}, query subset {record['bbox_query']:.3f}, "
            f"fp_background {record['errors'].get('fp_background', 0):.1f}")
    return records, query_subset


def _round(estore, engine: str, round_no: int, scenes: LoopScenes, root: Path, sizes: dict, recipe: FinetuneConfig,
           detection: DetectConfig, match: MatchConfig, query_subset: list[int] | None, progress: bool):
    """One round of one engine: detect with the production model, mine, label what was selected (the generator's
    ground truth) and retrain through the gate. Returns (the retraining's result, the labelled batch or None, the
    query subset)."""
    version = resolve_model(estore)
    detect(estore, version, scenes.pool, detection, source="loop", progress=progress)
    labelled = read_labelled_set(estore, scenes.val_json, scenes.images)
    detect_labelled(estore, version, labelled, detection)
    mining = mining_config(engine, sizes)
    update_pool_index(estore, version, mining)
    mined = mine(estore, version, labelled, mining, match)
    if query_subset is None:  # the seed's queried errors: the same subset for every engine and round
        query_subset = mined.query_coco_ids
    batch = None
    selection = _selection(engine, mined)
    if selection:  # a model without queried errors mines nothing: there is nothing to label this round
        batch = export(estore, selection, str(root / engine / "exports"))
        labels = oracle_label_batch(batch.location, scenes.pool_json, str(root / engine / f"labels-{round_no}.json"))
        import_batch_labels(estore, labels, batch.batch_id, skip_if_labelled=True)
    result = retrain_candidate(estore, scenes.train_json, scenes.val_json, scenes.images, recipe, "auto", match=match,
                               query_images=query_subset, allow_no_batches=True, test_json=scenes.test_json)
    return result, batch, query_subset


def mining_config(engine: str, sizes: dict) -> MiningConfig:
    """How an engine mines: its strategy (errors for "random", whose batch is the errors run's random arm, and for
    "none", which labels nothing), the loop's query types and the budget split by hits (the demo's; every part of
    the strategies bench ran so), unless it is a variant."""
    mining = {"strategy": "errors" if engine in ENGINES else engine, "types": QUERIED_FP_TYPES,
              "budget_split": "hits", **VARIANTS.get(engine, {})}
    return MiningConfig(k=sizes["k"], budget=sizes["budget"], random_arm=engine == "random", **mining)


def _selection(engine: str, mined) -> str | None:
    """The selection an engine labels this round: none for "none", the random arm's for "random", else the
    mined one; None when it selected nothing."""
    if engine == "none":
        return None
    if engine == "random":
        return mined.random_selection_id if mined.random_uris else None
    return mined.selection_id if mined.selected else None


def _numbers(round_no: int, version: str, runs: list[dict], promoted: bool, batch: ExportResult | None) -> dict:
    """The production model's numbers after a round. A promoted candidate was trained once per training seed and
    the seed best on the superset is the one served: its own numbers are `bbox_superset` etc.; the mean over all
    seeds (what the gate judged) is beside them, as `*_seeds_mean`, with every seed's superset mAP."""
    def mean(values):
        return sum(values) / len(values)

    maps = [r["mAP"] for r in runs]
    served = runs[served_run(runs)]
    types = sorted({t for r in runs for t in r["errors"]})
    return {"round": round_no, "production": version, "promoted": promoted,
            "batch": batch.batch_id if batch else None, "batch_images": batch.images if batch else 0,
            "bbox_superset": served["mAP"]["superset"]["bbox"],
            "bbox_query": served["mAP"].get("query subset", {}).get("bbox", 0.0),
            "errors": {t: served["errors"].get(t, 0) for t in types},
            "error_cost": served.get("error_cost", {}),
            "bbox_superset_seeds_mean": mean([m["superset"]["bbox"] for m in maps]),
            "bbox_superset_runs": [m["superset"]["bbox"] for m in maps],
            "bbox_query_seeds_mean": mean([m.get("query subset", {}).get("bbox", 0.0) for m in maps]),
            "errors_seeds_mean": {t: mean([r["errors"].get(t, 0) for r in runs]) for t in types},
            **({"test": _test_numbers(served["test"])} if "test" in served else {})}


def _candidate_test(runs: list[dict]) -> dict:
    """This round's candidate on the test split, whether or not the gate promoted it: mean and sd over its training
    seeds of each `_test_numbers` metric. What the labelled data is worth, apart from the gate's luck on val (the
    served model's curve moves only on promotion, and follows one seed)."""
    per_seed = [_test_numbers(run["test"]) for run in runs if "test" in run]
    return {metric: {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
                     "runs": values}
            for metric in per_seed[0] for values in [[numbers[metric] for numbers in per_seed]]}


def _test_numbers(test: dict) -> dict:
    """The served model on the test split: bbox mAP per subset, false positives per image at the serving
    threshold, and what fixing every error would gain per subset (`mining.model_errors.ErrorCost`'s ceiling: the
    most any batch of labels could buy there by fixing errors)."""
    return {**{f"bbox_{s}": m["bbox"] for s, m in test["mAP"].items()},
            **{f"fp_per_image_{s}": p["all"]["fp_per_image"] for s, p in test["operating_point"].items()},
            **{f"error_ceiling_{s}": c["ceiling"] for s, c in test.get("error_cost_by_subset", {}).items()
               if "ceiling" in c}}
