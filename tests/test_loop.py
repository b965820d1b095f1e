"""Closing the loop: a registry with exactly one production model, promotion and rollback, the gate, retrain and
compare from the CLI, and a box-only dataset through train -> detect -> mine -> export -> import -> retrain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_at_once

from fdb import models as registry
from mining.gate import COST_FLOOR, decide


def _register(fdb, *versions):
    for v in versions:
        registry.register_model(fdb, v, f"/ckpt/{v}.pt", ["car"], {"category_ids": [1]})


def test_promotion_and_rollback_keep_exactly_one_production_model(fdb):
    _register(fdb, "a", "b", "arm-1")
    assert registry.production_version(fdb) is None and {d["stage"] for d in registry.list_models(fdb)} == {"candidate"}
    registry.promote(fdb, "a", why="first")
    registry.promote(fdb, "b", why="better", numbers={"bbox_map": 0.5}, expected="a")
    stages = {d["_id"]: d["stage"] for d in registry.list_models(fdb)}
    assert stages == {"a": "archived", "b": "production", "arm-1": "candidate"}
    # A decision made against a production that has changed since switches nothing.
    with pytest.raises(registry.PromotionConflict):
        registry.promote(fdb, "arm-1", why="stale", expected="a")
    assert registry.production_version(fdb) == "b"
    back = registry.rollback(fdb, why="b misbehaved")
    assert (back["from"], back["to"]) == ("b", "a")
    stages = {d["_id"]: d["stage"] for d in registry.list_models(fdb)}
    assert list(stages.values()).count("production") == 1 and stages["a"] == "production"
    history = registry.promotions(fdb)
    assert [(p["from"], p["to"], p["why"]) for p in history] == [(None, "a", "first"), ("a", "b", "better"),
                                                                  ("b", "a", "b misbehaved")]
    assert history[1]["numbers"] == {"bbox_map": 0.5} and all(p["at"] for p in history)


def test_a_decided_hand_over_switches_once_and_refuses_a_stale_decision(fdb):
    """`hand_over` is how a retrain and a rollout promote: a retry of a switch already made is done, and a
    decision made against a production that changed since switches nothing."""
    _register(fdb, "a", "b", "c")
    registry.promote(fdb, "a", why="first")
    switch = registry.hand_over(fdb, "b", "a", "gate passed", {"bbox_map": 0.5})
    assert (switch["from"], switch["to"], switch["switched"]) == ("a", "b", True) and "at" not in switch
    again = registry.hand_over(fdb, "b", "a", "gate passed", {"bbox_map": 0.5})  # its answer was lost: a retry
    assert again == {"from": "a", "to": "b", "why": "gate passed", "switched": False}
    with pytest.raises(registry.PromotionConflict):
        registry.hand_over(fdb, "c", "a", "judged against a", {})
    assert registry.production_version(fdb) == "b" and len(registry.promotions(fdb)) == 2


def test_concurrent_promotions_leave_one_winner(fdb):
    _register(fdb, "a", "b", "c")
    registry.promote(fdb, "a", why="first")
    results = []

    def switch(version):
        try:
            results.append(registry.promote(fdb, version, why="race", expected="a")["to"])
        except registry.PromotionConflict:
            results.append("conflict")

    run_at_once(switch, ("b", "c"))
    assert sorted(results)[0] == "conflict" or results.count("conflict") == 1
    assert registry.production_version(fdb) in ("b", "c")
    assert [d["stage"] for d in registry.list_models(fdb)].count("production") == 1


def test_the_gate_refuses_a_worse_candidate_and_one_that_fixes_nothing():
    key = "fp_background+fp_wrong_class"
    types = ["fp_background", "fp_wrong_class"]
    production = {"version": "p", "bbox_map": 0.60, "errors": {"fp_background": 10, "miss": 5},
                  "error_cost": {key: 0.030}}

    def run(bbox_map, cost, fps=3):
        return {"bbox_map": bbox_map, "errors": {"fp_background": fps}, "error_cost": {key: cost}}

    better = decide(production, [run(0.61, 0.010, 4), run(0.62, 0.014, 6)], types, "c")
    assert better.promote and better.candidate["errors"]["fp_background"] == 5.0
    assert better.candidate["served_seed"] == 1 and better.candidate["served_bbox_map"] == 0.62
    assert better.candidate["error_cost"][key] == pytest.approx(0.012)
    worse = decide(production, [run(0.55, 0.001), run(0.56, 0.001)], types, "c")
    assert not worse.promote and not worse.checks["not_worse_on_superset"] and worse.checks["queried_errors_cost_less"]
    assert "worse beyond the noise" in worse.reasons[0]
    # Within the seed noise (2 sd = 0.02) the mean may trail, but the served model may not, and the queried errors
    # must cost less.
    noisy = decide(production, [run(0.58, 0.030), run(0.60, 0.031)], types, "c")
    assert noisy.checks["not_worse_on_superset"] and noisy.checks["served_model_not_worse"]
    assert not noisy.checks["queried_errors_cost_less"] and not noisy.promote
    trailing = decide(production, [run(0.57, 0.01), run(0.595, 0.01)], types, "c")
    assert trailing.checks["not_worse_on_superset"] and not trailing.checks["served_model_not_worse"]
    assert not trailing.promote
    one_seed = decide(production, [run(0.599, 0.0)], types, "c")
    assert not one_seed.promote  # no noise estimate: it must not trail at all
    # More high-score false positives, but they cost less mAP (ranked below the true positives): it passes.
    confident = decide(production, [run(0.68, 0.012, fps=21), run(0.66, 0.016, fps=19)], types, "c")
    assert confident.promote and confident.candidate["errors"]["fp_background"] == 20
    # Production's queried errors already cost (almost) nothing: staying under the floor is enough, rising is not.
    clean = {**production, "error_cost": {key: COST_FLOOR / 2}}
    assert decide(clean, [run(0.62, COST_FLOOR * 0.8), run(0.63, COST_FLOOR * 0.9)], types, "c").promote
    assert not decide(clean, [run(0.62, 0.02), run(0.63, 0.02)], types, "c").promote
    # Misses only: nothing to delete, their count must fall.
    misses = decide({**production, "errors": {"miss": 5}}, [
        {"bbox_map": 0.61, "errors": {"miss": 3}}, {"bbox_map": 0.62, "errors": {"miss": 4}}], ["miss"], "c")
    assert misses.promote and "fewer" in misses.reasons[2]


def test_error_cost_is_the_map_an_oracle_gains_by_deleting_each_error_type(tmp_path):
    """ErrorCost against pycocotools by hand: one TP per image, one background FP ranked above the TP on one
    image (it costs AP) and a wrong-class FP ranked below everything (it costs nothing at this recall)."""
    from types import SimpleNamespace

    from mining.config import MatchConfig
    from mining.model_errors import ErrorCost
    from records.coco import load_coco

    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2)]
    gts = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
           {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0},
           {"id": 3, "image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0}]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": gts,
                                "categories": [{"id": 1, "name": "sign"}, {"id": 2, "name": "car"}]}))
    coco = load_coco(path, image_dir=tmp_path)

    def det(bbox, score, category_id):
        return SimpleNamespace(bbox=bbox, score=score, category_id=category_id, category_name=str(category_id))

    cost = ErrorCost(coco, MatchConfig(), ["fp_background", "fp_wrong_class"])
    cost.process([1, 2], [SimpleNamespace(detections=[det([10, 10, 30, 30], 0.9, 1), det([60, 0, 20, 20], 0.95, 1)]),
                          SimpleNamespace(detections=[det([50, 50, 30, 30], 0.8, 1), det([5, 5, 20, 20], 0.1, 1),
                                                      det([5, 5, 20, 20], 0.7, 2)])])
    out = cost.evaluate()
    # sign: FP(0.95) TP(0.9) TP(0.8) FP(0.1): interpolated AP = 2/3 at every recall point; car: TP only, AP 1.
    assert out["bbox_map"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-3)
    assert out["cost"]["fp_background"] == pytest.approx((1 - 2 / 3) / 2, abs=1e-3)
    assert out["cost"]["fp_wrong_class"] == pytest.approx(0.0, abs=1e-6)  # ranked after both true positives
    assert out["cost"]["fp_localisation"] == 0.0
    assert out["cost"]["fp_background+fp_wrong_class"] == pytest.approx(out["cost"]["fp_background"], abs=1e-6)


def test_nightly_runs_the_production_model_not_the_newest(prefect_backend, engine, fdb, tmp_path):
    from detectors.checkpoint import load_checkpoint, save_checkpoint
    from flows.nightly import nightly
    from mining.config import MiningConfig
    from jobs.context import register_checkpoint

    tiny = load_checkpoint(engine.parent / "m.pt")
    newer = load_checkpoint(save_checkpoint(tmp_path / "m2.pt", tiny.model, tiny.config, "tiny-v2", "h2"))
    register_checkpoint(fdb, newer, role="arm")  # the newest registered model, an experiment's arm
    args = dict(images=str(engine / "images"), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                mining=MiningConfig(k=3, budget=2))
    assert nightly(**args).model_version == "tiny-v1"
    registry.promote(fdb, "tiny-v2", why="test")
    after = nightly(**args)
    # The new production model processes the pool again (once per version) and mines with its own errors.
    assert after.model_version == "tiny-v2" and after.detect.images_processed == 6
    assert fdb.errors.count_documents({"model_version": "tiny-v2"}) > 0


def test_a_box_only_dataset_through_the_whole_loop(prefect_backend, mongod, fdb, store, tmp_path, monkeypatch,
                                                   capsys):
    """Train, detect, mine, export (boxes only), import, retrain and compare on COCO without segmentations."""
    from annotation_export.config import ExportConfig
    from dataengine.cli import main
    from detectors.config import DetectConfig, TrainConfig
    from detectors.pipeline import dataset_split, train_detector
    from detectors.synthetic import generate, oracle_labels
    from mining.config import MatchConfig, MiningConfig
    from tasks.detect import detect, detect_labelled
    from tasks.labelling import export, import_batch_labels
    from tasks.index import update_pool_index
    from tasks.mine import mine, read_labelled_set
    from jobs.context import register_checkpoint

    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", store.home)
    data = tmp_path / "boxes"
    generate(data, n_train=6, n_val=4, n_pool=10, seed=3, width=128, height=96, progress=False, boxes_only=True,
             n_test=4)
    train, val = dataset_split(data, "train"), dataset_split(data, "val")
    assert not train.has_masks and "segmentation" not in json.loads((data / "annotations" / "train.json")
                                                                     .read_text())["annotations"][0]
    checkpoint, _, metrics = train_detector(train, val, tmp_path / "models", TrainConfig(steps=2, batch_size=2),
                                            progress=False, min_size=96, max_size=128, box_score_thresh=0.0)
    assert not checkpoint.config.masks and not checkpoint.model.roi_heads.has_mask()
    assert set(metrics["val"]) >= {"bbox"} and "segm" not in metrics["val"]  # boxes only: no segm metrics
    register_checkpoint(fdb, checkpoint, first_is_production=True)

    pool = sorted(str(p.resolve()) for p in (data / "images").glob("pool_*.png"))
    barely_trained = DetectConfig(min_score=0.0)  # two steps of training: every detection is a weak one
    assert detect.fn(store, checkpoint.version, pool, barely_trained).images_processed == 10
    assert fdb.detections.count_documents({}) > 0 and fdb.detections.count_documents({"mask": {"$exists": True}}) == 0
    val_json, images = str(data / "annotations" / "val.json"), str(data / "images")
    labelled = read_labelled_set.fn(store, val_json, images)
    detect_labelled.fn(store, checkpoint.version, labelled, barely_trained)
    update_pool_index.fn(store, checkpoint.version, MiningConfig(k=3, budget=3))
    mined = mine.fn(store, checkpoint.version, labelled, MiningConfig(k=3, budget=3), MatchConfig(score_threshold=0.0))
    assert mined.selected == 3 and len(mined.random_uris) == 3
    batches = {}
    for arm, selection in (("mined", mined.selection_id), ("random", mined.random_selection_id)):
        out = export.fn(store, selection, str(tmp_path / "queue"), ExportConfig(min_score=0.0))
        xml = (Path(out.location) / "annotations.xml").read_text()
        coco = json.loads((Path(out.location) / "annotations" / "instances_default.json").read_text())
        assert "<box " in xml and "<polygon" not in xml  # boxes only, as pre-annotations
        assert coco["annotations"] and all(not a["segmentation"] for a in coco["annotations"])
        labels = oracle_labels(Path(out.location) / "manifest.json", data / "annotations" / "pool.json",
                               tmp_path / f"labels_{arm}.json")
        assert import_batch_labels.fn(store, str(labels), out.batch_id)["label_version"] == 1
        batches[arm] = out.batch_id

    # Retrain from the CLI: a candidate on the labelled set plus both batches, judged by the gate.
    # A split that fed the gate is refused as a test split, with the reason, before anything is trained.
    assert main(["retrain", "--data", str(data), "--steps", "1", "--seeds", "0", "--test-split", "val"]) == 2
    assert "is the split that fed the gate (val)" in capsys.readouterr().err
    # Its two training seeds train in two worker processes (`jobs.parallel`), spawned from inside the retrain task.
    assert main(["retrain", "--data", str(data), "--steps", "1", "--seeds", "0", "1", "--workers", "2",
                 "--promote", "auto", "--test-split", "test"]) == 0
    out = capsys.readouterr().out
    run = fdb.runs.find_one({"kind": "retrain"})
    decision = run["metrics"]["decision"]
    candidate = run["metrics"]["candidate"]
    assert decision["candidate"]["seeds"] == 2 and set(run["parameters"]["queried_types"]) <= {
        "fp_background", "fp_wrong_class", "fp_localisation", "miss"}
    # The switch happened exactly when the gate said so, and is recorded with its numbers.
    assert (registry.production_version(fdb) == candidate) == decision["promote"]
    assert ("production:" in out) == decision["promote"] and "report:" in out
    doc = registry.get_model(fdb, candidate)
    assert doc["parent"] == checkpoint.version and len(doc["training_data"]["batches"]) == 2
    assert doc["recipe"]["steps"] == 1 and "segm" not in doc["evaluation"]["mAP"]["superset"]
    assert Path(run["metrics"]["report"]).read_text().startswith("# Retrain: candidate")
    # The test split is reported beside the gate's numbers, and kept in the registry, never gated on.
    assert "## On the test split (reported only" in Path(run["metrics"]["report"]).read_text()
    assert set(doc["evaluation"]["test"]["mAP"]) == {"superset", "tail", "rest"} - (
        set() if doc["evaluation"]["test"]["images"]["tail"] else {"tail"})
    assert doc["evaluation"]["test"]["images"]["superset"] == 4
    assert "superset" in registry.get_model(fdb, checkpoint.version)["evaluation"]["test"]["operating_point"]

    # The mined / random / control experiment on the same data, from the CLI.
    assert main(["compare", "--data", str(data), "--mined", batches["mined"], "--random", batches["random"],
                 "--model", checkpoint.version, "--steps", "1", "--seeds", "0", "--test-split", "test"]) == 0
    report = capsys.readouterr().out.split("report: ")[1].strip()
    saved = json.loads((Path(report).parent / "comparison.json").read_text())
    assert set(saved["arms"]) == {"before", "mined", "random", "control"}
    assert saved["evaluation"]["evaluated_on"] == "test" and saved["subsets"]["superset"] == 4
    assert all(set(a["mAP"]["superset"]) == {"bbox"} for a in saved["arms"].values())  # no segm on boxes
    assert "masks: none" in Path(report).with_suffix(".md").read_text()
    # Experiment arms are registered, never in production by accident.
    assert all(registry.get_model(fdb, a["version"])["stage"] == "candidate" for n, a in saved["arms"].items()
               if n != "before")


def test_two_rounds_of_the_loop_for_two_engines(prefect_backend, mongod, fdb, tmp_path, monkeypatch):
    """The multi-round loop at a tiny size: every engine starts from one seed, each round's production model is
    the one the gate left, no promoted model is worse than the one it replaced, and the numbers are written."""
    from detectors.config import DetectConfig, FinetuneConfig
    from flows.loop import loop
    from mining.config import MatchConfig

    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    tiny = dict(train=6, val=4, pool=12, test=4, seed_steps=3, budget=2, k=3, width=128, height=96,
                detections_per_image=20)
    # A few steps of training make weak detections only: store and count them all. The candidate's two training
    # seeds train one after another here (in worker processes: the box-only retrain above; each spawn costs
    # seconds, and this loop retrains four times).
    result = loop(rounds=2, engines=["errors", "none"], sizes=tiny,
                  recipe=FinetuneConfig(steps=1, seeds=(0, 1), workers=1),
                  root=str(tmp_path / "loop"), detection=DetectConfig(min_score=0.0),
                  match=MatchConfig(score_threshold=0.0))
    saved = json.loads((tmp_path / "loop" / "loop.json").read_text())
    assert saved["engines"] == json.loads(json.dumps(result["engines"], default=str))
    for engine, rounds in result["engines"].items():
        assert [r["round"] for r in rounds] == [0, 1, 2]
        assert rounds[0]["production"] == result["engines"]["errors"][0]["production"]  # one seed for all
        for before, after in zip(rounds, rounds[1:]):
            if after["promoted"]:  # the gate let it through: not worse beyond the noise
                assert after["production"] != before["production"]
            else:
                assert after["production"] == before["production"]
    assert [r["batch"] is not None for r in result["engines"]["errors"][1:]] == [True, True]
    assert all(r["batch"] is None for r in result["engines"]["none"])
    # Every round's production model is also reported on the test split, which fed nothing.
    assert all({"bbox_superset", "fp_per_image_superset", "error_ceiling_superset"} <= set(r["test"])
               for rounds in result["engines"].values() for r in rounds)
    # And every round's candidate, promoted or not: one number per training seed, their mean and sd.
    for rounds in result["engines"].values():
        for r in rounds[1:]:
            superset = r["candidate_test"]["bbox_superset"]
            assert len(superset["runs"]) == 2 and superset["sd"] is not None
            assert superset["mean"] == pytest.approx(sum(superset["runs"]) / 2)
    # Each engine has its own registry: the errors engine's labels never reach the no-new-data engine.
    from pymongo import MongoClient

    dbs = [n for n in MongoClient(mongod.uri).list_database_names() if n.startswith(fdb.db.name + "-loop-")]
    assert len(dbs) == 2


def test_each_loop_engine_mines_with_its_own_settings():
    from flows.loop import loop, mining_config
    from records import QUERIED_FP_TYPES

    sizes = dict(k=3, budget=5)
    mined, cost = mining_config("errors", sizes), mining_config("errors-cost", sizes)
    assert (mined.strategy, mined.types, mined.budget_split) == ("errors", QUERIED_FP_TYPES, "hits")
    # The cost-driven variant queries every error type (misses and localisation errors too) and splits by cost.
    assert (cost.strategy, cost.types, cost.budget_split) == ("errors", None, "cost")
    assert mining_config("uncertainty", sizes).strategy == "uncertainty"
    assert mining_config("random", sizes).random_arm and not mined.random_arm
    assert (mined.k, mined.budget) == (3, 5)
    # An engine is named after its strategy: the old name of the errors engine is refused, and says so.
    with pytest.raises(ValueError, match="the engine once called mined is errors"):
        loop.fn(engines=["mined"])


def test_models_from_the_command_line(mongod, fdb, tmp_path, monkeypatch, capsys):
    from dataengine.cli import main

    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    _register(fdb, "m-1", "m-2")
    assert main(["models", "rollback"]) == 2 and "nothing to roll back" in capsys.readouterr().err
    assert main(["models", "promote", "m-1", "--why", "first"]) == 0
    assert main(["models", "promote", "m-2", "--why", "better on val"]) == 0
    assert "production: m-1 -> m-2" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == ["production", "archived"]
    assert main(["models", "show"]) == 0
    shown = capsys.readouterr().out
    assert '"_id": "m-2"' in shown and "m-1 -> m-2: better on val" in shown
    assert main(["models", "rollback", "--why", "regression"]) == 0 and registry.production_version(fdb) == "m-1"
    assert main(["models", "promote", "nope"]) == 2 and "no model 'nope'" in capsys.readouterr().err
