"""Retrain-and-compare and the demo: arms from one seed model, several training seeds, hard negatives, the
report (Markdown, HTML, JSON) and the whole demo loop at a tiny size, as a Prefect flow, against a real mongod."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from detectors.checkpoint import load_checkpoint, save_checkpoint
from detectors.config import FinetuneConfig
from detectors.early_stopping import holdout_ids
from detectors.model import build_model, preset_config
from detectors.pipeline import dataset_split
from detectors.synthetic import CATEGORIES, generate
from fdb import FeatureDB
from mining.compare import arm_training_set
from mining.report import write_report
from jobs.experiment import fine_tune, run_experiment


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    generate(out, n_train=6, n_val=4, n_pool=8, seed=2, width=128, height=96, progress=False,
             train_districts=(0, 1, 2, 3), n_test=6)
    return out


def _batch(pool_json, names):
    data = json.loads(pool_json.read_text())
    images = [im for im in data["images"] if im["file_name"] in names]
    ids = {im["id"] for im in images}
    return images, [a for a in data["annotations"] if a["image_id"] in ids]


def test_train_districts_keep_the_markets_out_of_the_labelled_set(scenes):
    train = json.loads((scenes / "annotations" / "train.json").read_text())
    assert {im["district"] for im in train["images"]} <= {0, 1, 2, 3}
    assert train["info"]["districts"] == [0, 1, 2, 3]


def test_arms_seeds_and_report(scenes, tmp_path, fdb):
    torch.manual_seed(0)
    cfg = preset_config("small", [c["name"] for c in CATEGORIES], [c["id"] for c in CATEGORIES], min_size=96,
                        max_size=128, box_score_thresh=0.0,
                        box_detections_per_img=10)
    seed = save_checkpoint(tmp_path / "seed.pt", build_model(cfg), cfg, "seed-v1", "h")
    train, val = dataset_split(scenes, "train"), dataset_split(scenes, "val")
    pool_json = scenes / "annotations" / "pool.json"
    batches = {"mined": _batch(pool_json, {"pool_00000.png", "pool_00001.png"}),
               "random": _batch(pool_json, {"pool_00005.png", "pool_00006.png"})}
    queries = sorted(val.images)[:2]
    recipe = FinetuneConfig(steps=2, seeds=(0, 1), hard_negatives=0.5, oversample=4.0)
    comparison = run_experiment(seed, train, batches, val, queries, tmp_path / "arms", recipe, fdb=fdb,
                                progress=False)

    assert list(comparison.arms) == ["before", "mined", "random", "control"]
    assert comparison.subsets["query subset"] == queries and len(comparison.subsets["without queries"]) == 2
    for name, extra in (("mined", 2), ("random", 2), ("control", 0)):
        arm = comparison.arms[name]
        assert arm.extra_images == extra and [r["seed"] for r in arm.runs] == [0, 1]
        assert len(arm.maps("superset", "bbox")) == 2 and len(arm.maps("query subset", "segm")) == 2
        # The first seed's model is saved, registered, and parented on the seed model.
        assert fdb.models.find_one({"_id": arm.version})["parent"] == "seed-v1"
        loaded = load_checkpoint(arm.checkpoint)
        assert loaded.model.roi_heads.fg_bg_sampler.__class__.__name__ == "BalancedPositiveNegativeSampler"
    assert comparison.arms["before"].maps("superset") == [comparison.arms["before"].metrics["superset"]["bbox"]["mAP"]]
    # The arms' training sets: the seed's images plus the batch, nothing lost, nothing twice.
    merged = json.loads((tmp_path / "arms" / "train_mined.json").read_text())
    assert len(merged["images"]) == len(train.images) + 2 and len({im["id"] for im in merged["images"]}) == 8

    report = write_report(comparison, tmp_path / "report", "test", {"steps": 2}, queried_types=["fp_background"],
                          hard_case_precision={"mined": {"images": 2, "hits": 1, "share": 0.5}})
    md = report["markdown"].read_text()
    assert "## Did the mined batch count?" in md and "fp_background errors on the superset: before" in md
    assert "| mined | 2 | 2 |" in md and " ± " in md  # mean ± sd over two training seeds
    assert "data:image/png;base64," in report["html"].read_text()
    saved = json.loads(report["json"].read_text())
    assert len(saved["arms"]["random"]["runs"]) == 2 and saved["hard_case_precision"]["mined"]["share"] == 0.5


def _seed_splits_and_one_image_batches(scenes, tmp_path):
    """An untrained tiny seed model (saved), the train / val / test splits, and a one-image mined and random batch."""
    torch.manual_seed(0)
    cfg = preset_config("small", [c["name"] for c in CATEGORIES], [c["id"] for c in CATEGORIES], min_size=96,
                        max_size=128, box_score_thresh=0.0,
                        box_detections_per_img=10)
    seed = save_checkpoint(tmp_path / "seed.pt", build_model(cfg), cfg, "seed-v1", "h")
    splits = tuple(dataset_split(scenes, s) for s in ("train", "val", "test"))
    pool_json = scenes / "annotations" / "pool.json"
    batches = {"mined": _batch(pool_json, {"pool_00000.png"}), "random": _batch(pool_json, {"pool_00005.png"})}
    return seed, splits, batches


def test_arms_reported_on_a_test_split_with_tail_operating_point_and_power(scenes, tmp_path, fdb):
    from mining.evaluation import LeakyTestSplit, sd_of_difference

    seed, (train, val, test), batches = _seed_splits_and_one_image_batches(scenes, tmp_path)
    recipe = FinetuneConfig(steps=1, seeds=(0, 1))
    with pytest.raises(LeakyTestSplit, match="fed the queries and the gate"):
        run_experiment(seed, train, batches, val, [], tmp_path / "leak", recipe, progress=False, test=val)

    comparison = run_experiment(seed, train, batches, val, sorted(val.images)[:2], tmp_path / "arms", recipe,
                                fdb=fdb, progress=False, test=test, queried_types=["fp_background"])
    tail = [i for i, im in test.images.items() if im["distractors"]]
    assert comparison.evaluated_on == "test" and "generator" in comparison.tail_source
    assert comparison.subsets == {"superset": sorted(test.images), "tail": tail,
                                  "rest": sorted(set(test.images) - set(tail))}
    run = comparison.arms["mined"].runs[0]
    assert set(run["operating_point"]) == {"superset", "tail", "rest"} - ({"tail"} if not tail else set())
    assert run["operating_point"]["superset"]["all"]["images"] == len(test.images)
    assert "miss" in run["error_cost_by_subset"]["superset"]["cost"]
    assert len(comparison.arms["control"].operating("superset", "precision")) == 2
    assert comparison.arms["before"].operating("superset", "recall")  # the seed model has its operating point too

    report = write_report(comparison, tmp_path / "report", "test", {"steps": 1}, queried_types=["fp_background"])
    md = report["markdown"].read_text()
    assert md.index("## The verdict on the test split") < md.index("- steps: 1")
    assert "FPs per image @ serving, superset" in md and "minimum detectable difference" in md
    assert "## What each error type costs" in md
    saved = json.loads(report["json"].read_text())["evaluation"]
    assert saved["evaluated_on"] == "test" and saved["images"]["superset"] == len(test.images)
    assert saved["arms"]["mined"]["superset_bbox_map"]["runs"] == comparison.arms["mined"].maps("superset")
    mdd = saved["differences"]["mined-random"]["superset_bbox_map"]["min_detectable_difference"]
    assert mdd == pytest.approx(2 * sd_of_difference(comparison.arms["mined"].maps("superset"),
                                                     comparison.arms["random"].maps("superset")))
    assert set(saved["control_gain"]) == {"superset_bbox_map"} | ({"tail_bbox_map"} if tail else set())
    # The report leads with the verdict, one word per metric, as comparison.json keeps it.
    assert md.index("**Verdict, mined against random:**") < md.index("Reported on the **test split**")
    assert saved["verdict"]["superset_bbox_map"]["verdict"] in {"better", "worse", "no difference", "inconclusive"}
    assert saved["verdict"]["superset_bbox_map"]["min_detectable_difference"] == pytest.approx(mdd)


def test_the_cost_table_prices_each_error_type_by_map_and_at_the_operating_point():
    from mining.compare import ArmResult, Comparison
    from mining.report import costs_markdown
    # Two training seeds: 30 and 34 background FPs costing almost no mAP, 20 and 22 misses costing 0.02.
    runs = [{"errors": {"fp_background": fps, "miss": misses},
             "error_cost_by_subset": {"superset": {"cost": {"fp_background": 0.0002, "miss": 0.02}}}}
            for fps, misses in ((30, 20), (34, 22))]
    comparison = Comparison({"superset": [1]}, {"mined": ArmResult("mined", 10, 1, 1.0, {}, {}, runs=runs)})
    rows = costs_markdown(comparison, miss_cost=3.0).splitlines()
    assert rows[2].startswith("| mined | superset | mAP | 0.000 ") and rows[2].endswith("| 0.020 ± 0.000 |")
    # Count x unit cost, mean ± sd over the seeds: 32 FPs x 1, 21 misses x 3.
    assert rows[3].startswith("| mined | superset | operating point | 32.0 ± 2.8 ") and rows[3].endswith(
        "| 63.0 ± 4.2 |")


def test_arm_runs_in_worker_processes_give_the_numbers_of_runs_one_after_another(scenes, tmp_path, fdb):
    """Two workers of one thread each against one process of one thread: the same kernels, so the same numbers
    to the last digit, in the same order; the control arm takes its own seeds."""
    seed, (train, val, test), batches = _seed_splits_and_one_image_batches(scenes, tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = {}
        for workers in (1, 2):
            recipe = FinetuneConfig(steps=1, seeds=(0, 1), control_seeds=(3,), workers=workers)
            outcome[workers] = run_experiment(seed, train, batches, val, [], tmp_path / f"arms-{workers}",
                                              recipe, fdb=fdb, progress=False, test=test)
    finally:
        torch.set_num_threads(threads)
    one, two = outcome[1], outcome[2]
    assert [r["seed"] for r in two.arms["mined"].runs] == [0, 1]
    assert [r["seed"] for r in two.arms["control"].runs] == [3]
    for name in ("mined", "random", "control"):
        strip = [{k: v for k, v in r.items() if k != "seconds"} for r in one.arms[name].runs]
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in two.arms[name].runs] == strip
        # The first run's model was saved by the worker and registered here.
        assert fdb.models.find_one({"_id": two.arms[name].version})["parent"] == "seed-v1"
        # (as JSON: an AP of a class with no ground truth is NaN, never equal to itself)
        assert json.dumps(two.arms[name].metrics, sort_keys=True) == json.dumps(one.arms[name].metrics,
                                                                                  sort_keys=True)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        FinetuneConfig(workers=0)


def test_demo_runs_the_whole_loop_as_a_flow_then_the_retrain_flow_on_its_batches(tiny_demo, mongod, mongo_client,
                                                                                 tmp_path, monkeypatch):
    """The session's tiny demo (`tiny_demo`), then the flow its two labelled batches trigger."""
    result, counts = tiny_demo["result"], tiny_demo["counts"]
    # The demo keeps a database of its own per configuration, beside the user's.
    assert result["database"].startswith(tiny_demo["base"] + "-demo-full-")
    saved = json.loads(open(result["json"]).read())
    assert set(saved["arms"]) == {"before", "mined", "random", "control"}
    assert saved["arms"]["mined"]["extra_images"] == 3 == saved["arms"]["random"]["extra_images"]
    assert saved["hard_case_precision"]["pool"]["images"] == 10
    # Both batches went out, came back labelled, and became label versions; three arm models were registered.
    assert counts == {"labelled exports": 2, "labels": 6, "arm models": 3}
    md = open(result["markdown"]).read()
    assert "## mAP" in md and "## Hard-case precision" in md and "## Did the mined batch count?" in md
    assert md.startswith("# gaze data engine demo") and "## The verdict on the test split" in md
    assert saved["evaluation"]["images"]["superset"] == 4 and saved["facts"]["test images (reported on)"] == 4
    # One training seed gives no noise estimate: the verdict leads, and says it cannot judge.
    assert saved["evaluation"]["verdict"]["superset_bbox_map"]["verdict"] is None
    assert md.index("**Verdict, mined against random:**") < md.index("## mAP") and "**not judged**" in md
    # The same tables are in the Prefect UI, as artifacts of the run.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts() if a.key and a.key.startswith("demo-")}
    assert set(artifacts) == {"demo-map", "demo-errors", "demo-hard-case-precision", "demo-report"}
    assert "| mined | 3 | 1 |" in artifacts["demo-map"].data
    assert result["report"].endswith("report.html") and artifacts["demo-report"].data.endswith("report.html)")

    # The team's labels came back to the demo's database; the retrain works on a copy of it, so the app's tests
    # (tests/test_ui.py) browse the demo as it was.
    copy = f"{result['database']}-retrain"
    source = mongo_client[result["database"]]
    for name in source.list_collection_names():
        source[name].aggregate([{"$out": {"db": copy, "coll": name}}])
    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", copy)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    try:
        retrain_and_compare_on_the_demo_batches(FeatureDB(mongo_client[copy]), tiny_demo["root"], tmp_path / "home")
    finally:
        mongo_client.drop_database(copy)


def retrain_and_compare_on_the_demo_batches(fdb, root, home):
    """The flow the annotation team's returned labels trigger: batch ids in, report and artifact out."""
    from flows.retrain_and_compare import retrain_and_compare as retrain_flow

    batches = {d["selection_id"][:3]: d["_id"] for d in fdb.exports.find({"status": "labelled"})}
    before = fdb.models.count_documents({})
    html = retrain_flow(seed_checkpoint=str(root / "work" / "seed-small-3.pt"), data_dir=str(root / "synthetic"),
                        mined_batch=batches["sel"], random_batch=batches["rnd"],
                        recipe=FinetuneConfig(steps=2, seeds=(0, 1)))
    saved = json.loads((home / "compare").glob("*/report/comparison.json").__next__().read_text())
    assert html.endswith("report.html") and set(saved["arms"]) == {"before", "mined", "random", "control"}
    assert [r["seed"] for r in saved["arms"]["mined"]["runs"]] == [0, 1]
    assert saved["facts"]["mined batch"] == batches["sel"] and saved["facts"]["hard-negative share"] == 0.25
    assert fdb.models.count_documents({}) == before + 3  # the new versions are registered, with their parent


def test_fine_tuning_holds_out_new_images_keeps_the_best_check_and_trains_on_the_rest(scenes, tmp_path):
    torch.manual_seed(0)
    cfg = preset_config("small", [c["name"] for c in CATEGORIES], [c["id"] for c in CATEGORIES], min_size=96,
                        max_size=128, box_score_thresh=0.0,
                        box_detections_per_img=10)
    seed = save_checkpoint(tmp_path / "seed.pt", build_model(cfg), cfg, "seed-v1", "h")
    train = dataset_split(scenes, "train")
    images, labels = _batch(scenes / "annotations" / "pool.json", {f"pool_0000{i}.png" for i in range(6)})
    arm_set, weights, new_names = arm_training_set(train, "mined", images, labels, tmp_path, oversample=4.0)
    recipe = FinetuneConfig(steps=2, seeds=(0,), holdout=0.5, check_every=1, patience=None)
    held_out = holdout_ids(arm_set, recipe.holdout, among=new_names)
    # Only new images are held out: the seed model trained on the others and would win the first check by memory.
    assert len(held_out) == 3 and {arm_set.images[i]["file_name"] for i in held_out} < new_names
    # The sampling weights follow the images left to train on (a misaligned list would sample outside them).
    checkpoint, result = fine_tune(seed, arm_set, weights, recipe, seed=0, new_names=new_names)
    assert result.steps == 2 and [s for s, _ in result.holdout["checks"]] == [0, 1, 2]
    assert result.holdout["best_map"] == max(m for _, m in result.holdout["checks"])
    # With no new images (the control arm) nothing is held out: the run trains every step on every image.
    _, plain = fine_tune(seed, arm_set, weights, recipe, seed=0)
    assert plain.holdout is None and plain.steps == 2
    # A holdout split of its own (`dataengine split --sizes holdout=N`) stops every run, the control's too, there.
    stop_set = dataset_split(scenes, "val")
    _, control = fine_tune(seed, arm_set, weights, recipe, seed=0, stop_set=stop_set)
    assert control.steps == 2 and [s for s, _ in control.holdout["checks"]] == [0, 1, 2]
    # Without the start as a check, the run keeps its best check after training began.
    _, trained = fine_tune(seed, arm_set, weights, replace(recipe, check_start=False), seed=0, stop_set=stop_set)
    assert [s for s, _ in trained.holdout["checks"]] == [1, 2] and trained.holdout["best_step"] in (1, 2)
