"""Label-error suspects on hand-made cases with known answers, neighbour agreement, and which model errors a
suspect explains (so mining leaves them out)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fdb import detections as detection_store
from mining.config import LabelErrorConfig, MatchConfig, MiningConfig
from mining.model_errors import type_image_errors
from mining.label_errors import (
    explained_errors,
    neighbour_agreement,
    suspect_image_labels,
)
from records import Detection

CAR, SIGN = 3, 1


def det(id, category_id, bbox, score):
    return Detection(0, bbox, score, category_id, str(category_id), id=id)


def gt(id, category_id, bbox, iscrowd=0):
    return {"id": id, "category_id": category_id, "bbox": bbox, "iscrowd": iscrowd}


def suspects_of(dets, gts, agreement=None, **config):
    found = suspect_image_labels(dets, gts, LabelErrorConfig(**config), MatchConfig(), agreement)
    return {(s.type, s.detection_id if s.detection_id is not None else s.gt_id): s for s in found}


def test_agreeing_prediction_and_label_raise_nothing():
    assert suspects_of([det("a", CAR, [10, 10, 100, 50], 0.95)], [gt(1, CAR, [10, 10, 100, 50])]) == {}


def test_possible_missing_is_a_confident_prediction_on_no_label():
    found = suspects_of([det("a", CAR, [10, 10, 100, 50], 0.9), det("low", CAR, [300, 10, 50, 50], 0.3)], [],
                        agreement={"a": 0.8})
    assert set(found) == {("possible_missing", "a")}  # the 0.3 prediction is not confident enough to accuse
    s = found[("possible_missing", "a")]
    assert s.suspicion == pytest.approx(0.9 * 0.8) and s.agreement == 0.8 and s.gt_id is None
    assert s.bbox == [10, 10, 100, 50] and s.category_id == CAR


def test_a_prediction_unlike_its_class_is_the_models_error_not_a_missing_label():
    found = suspects_of([det("logo", SIGN, [10, 10, 30, 30], 0.9)], [], agreement={"logo": 0.1})
    assert found[("possible_missing", "logo")].suspicion == pytest.approx(0.09)


def test_possible_wrong_class_names_both_classes():
    found = suspects_of([det("a", SIGN, [10, 10, 100, 50], 0.9)], [gt(7, CAR, [12, 10, 100, 50])])
    assert set(found) == {("possible_wrong_class", "a")}  # the label is accused, not suspected spurious as well
    s = found[("possible_wrong_class", "a")]
    assert (s.category_id, s.gt_category_id, s.gt_id) == (SIGN, CAR, 7) and s.iou > 0.9


def test_another_class_on_a_label_its_own_class_found_is_the_models_confusion():
    dets = [det("car", CAR, [10, 10, 100, 50], 0.95), det("sign", SIGN, [11, 10, 100, 50], 0.9)]
    assert suspects_of(dets, [gt(7, CAR, [10, 10, 100, 50])]) == {}


def test_possible_bad_box_on_a_matched_but_sloppy_label_and_on_a_shifted_one():
    found = suspects_of([det("a", CAR, [0, 0, 100, 100], 0.9), det("b", CAR, [300, 0, 100, 100], 0.8)],
                        [gt(1, CAR, [0, 0, 100, 60]), gt(2, CAR, [360, 0, 100, 100])])
    assert set(found) == {("possible_bad_box", "a"), ("possible_bad_box", "b")}
    a, b = found[("possible_bad_box", "a")], found[("possible_bad_box", "b")]
    assert a.gt_id == 1 and a.iou == pytest.approx(0.6)  # matched at 0.5 <= IoU < bad_box_iou
    assert a.suspicion == pytest.approx(0.9 * (0.75 - 0.6) / 0.25)
    assert b.gt_id == 2 and b.iou == pytest.approx(0.25) and b.suspicion == pytest.approx(0.8)  # unmatched: full


def test_a_duplicate_prediction_accuses_nothing():
    dets = [det("a", CAR, [0, 0, 100, 50], 0.95), det("dup", CAR, [2, 0, 100, 50], 0.9)]
    assert suspects_of(dets, [gt(1, CAR, [0, 0, 100, 50])]) == {}


def test_possible_spurious_is_a_label_nothing_supports():
    dets = [det("weak", SIGN, [200, 0, 40, 40], 0.26), det("other", CAR, [400, 0, 40, 40], 0.9)]
    gts = [gt(1, SIGN, [0, 0, 40, 40]), gt(2, SIGN, [200, 0, 40, 40]), gt(3, SIGN, [400, 0, 40, 40])]
    found = suspects_of(dets, gts)
    assert found[("possible_spurious", 1)].suspicion == pytest.approx(1.0)  # nothing there at all
    assert found[("possible_spurious", 1)].gt_category_id == SIGN
    weak = found[("possible_spurious", 2)]  # a weak prediction of its class: a miss of the model more likely
    assert weak.support == pytest.approx(0.26) and weak.suspicion < 0.15
    # a confident car on a sign label: the label's class is suspected, not its existence
    assert ("possible_spurious", 3) not in found and ("possible_wrong_class", "other") in found


def test_crowd_labels_are_never_suspected():
    assert suspects_of([], [gt(1, CAR, [0, 0, 300, 100], iscrowd=1)]) == {}


def test_neighbour_agreement_counts_matched_neighbours_of_the_same_class_in_other_images():
    rng = np.random.default_rng(0)
    cars = rng.normal(0, 0.05, (6, 8)) + np.eye(8)[0] * 3
    logos = rng.normal(0, 0.05, (6, 8)) + np.eye(8)[1] * 3
    vectors = np.vstack([cars, logos])
    classes = np.array([CAR] * 6 + [CAR] * 6)  # the model calls the logos cars too
    matched = np.array([True] * 5 + [False] + [False] * 6)
    images = np.arange(12)
    agreement = neighbour_agreement(vectors, classes, matched, images, np.array([5, 6]), k=4)
    assert agreement[0] == pytest.approx(1.0)  # an unlabelled car: its neighbours are labelled cars
    assert agreement[1] == pytest.approx(0.0)  # a logo: its neighbours are the other unmatched logos
    same_image = neighbour_agreement(vectors, classes, matched, np.zeros(12, int), np.array([5]), k=4)
    assert same_image[0] == 1.0  # no other image to ask: no evidence against the prediction


def test_explained_errors_link_false_positives_and_misses_to_their_suspects():
    dets = [det("sign_on_car", SIGN, [0, 0, 100, 50], 0.9), det("unlabelled", CAR, [300, 0, 100, 50], 0.9),
            det("logo", SIGN, [600, 0, 30, 30], 0.9)]
    gts = [gt(1, CAR, [0, 0, 100, 50]), gt(2, SIGN, [800, 0, 30, 30])]
    errors = type_image_errors(dets, gts, MatchConfig())
    suspects = suspect_image_labels(dets, gts, LabelErrorConfig(), MatchConfig(),
                                    {"unlabelled": 0.9, "logo": 0.1, "sign_on_car": 0.9})
    for e in errors:
        e.id, e.image_id = (e.type, e.detection_id or e.gt_id), "im"
    for s in suspects:
        s.image_id = "im"
    explained = explained_errors(errors, suspects, threshold=0.5)
    assert explained == {("fp_wrong_class", "sign_on_car"): "possible_wrong_class", ("miss", 1): "possible_wrong_class",
                         ("fp_background", "unlabelled"): "possible_missing", ("miss", 2): "possible_spurious"}
    # the logo stays a model error: its suspicion (0.9 x 0.1) is under the threshold
    assert ("fp_background", "logo") not in explained


# ---------------------------------------------------------------------------------------------------- in the store
MODEL = "m-label-errors"
DIM = 16
CAR_ID, SIGN_ID = 1, 2  # the labelled set's category ids
CATEGORIES = [{"id": CAR_ID, "name": "car"}, {"id": SIGN_ID, "name": "sign"}]


def _unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture()
def labelled_world(fdb, tmp_path):
    """A labelled set of 8 images (v0-v7) the model never trained on, and a pool of 8 (p0-p7), in fdb with the
    model's detections and FC vectors. Cars look like direction A, the logos the model calls cars like B.

    v0-v5: a labelled car the model finds; v6: a car nobody labelled (a missing label); v5, v7 and v4: a logo
    the model calls a car (its error); v2: a sign label on what the model calls a car (a wrong class); v3: a
    sign label on nothing (spurious). Pool: p0-p3 hold cars, p4-p7 logos."""
    from PIL import Image

    from fdb import images as image_store
    from fdb.models import register_model
    from records import BOX_LAYER, IMAGE_LAYER

    rng = np.random.default_rng(0)
    car, logo = _unit(rng.standard_normal(DIM)), _unit(rng.standard_normal(DIM))
    root = tmp_path / "labelled"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations, plan = [], [], {}
    for i in range(8):
        name = f"v{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "images" / name)
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 48})
        dets = []
        if i <= 5:
            label_class = SIGN_ID if i == 2 else CAR_ID
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": label_class,
                                "bbox": [4.0, 4.0, 20.0, 14.0], "area": 280.0, "iscrowd": 0, "segmentation": []})
            dets.append(([4.0, 4.0, 20.0, 14.0], 0.95, car))
        if i == 6:
            dets.append(([30.0, 20.0, 20.0, 14.0], 0.9, car))
        if i in (4, 5, 7):
            dets.append(([40.0, 30.0, 10.0, 10.0], 0.9, logo))
        if i == 3:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": SIGN_ID,
                                "bbox": [44.0, 2.0, 10.0, 10.0], "area": 100.0, "iscrowd": 0, "segmentation": []})
        plan[str((root / "images" / name).resolve())] = dets
    gt_json = root / "annotations" / "val.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    for i in range(8):
        path = tmp_path / "pool" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
        plan[str(path.resolve())] = [([10.0, 10.0, 20.0, 14.0], 0.8, car if i < 4 else logo)]

    labelled_uris = [u for u in plan if "/labelled/" in u]
    image_store.ingest_images(fdb, labelled_uris, split="val", labelled=True)
    image_store.ingest_images(fdb, [u for u in plan if "/pool/" in u], split="pool")
    docs = image_store.by_uri(fdb, plan)
    for uri, dets in plan.items():
        image_id = docs[uri]["_id"]
        detection_store.write_detections(fdb, MODEL, [Detection(r, box, score, CAR_ID, "car", image_id=image_id)
                                                      for r, (box, score, _) in enumerate(dets)])
        if dets:
            vectors = np.stack([_unit(look + 0.05 * rng.standard_normal(DIM)) for _, _, look in dets])
            owners = [detection_store.detection_id(image_id, MODEL, r) for r in range(len(dets))]
            fdb.write_features(MODEL, BOX_LAYER, owners, vectors, image_ids=[image_id] * len(dets))
        fdb.write_features(MODEL, IMAGE_LAYER, [image_id], _unit(rng.standard_normal(DIM))[None], owner_kind="image")
        image_store.mark_processed(fdb, [image_id], MODEL)
    train_json = tmp_path / "train.json"  # what the model trained on: other images
    train_json.write_text(json.dumps({"images": [], "annotations": [], "categories": CATEGORIES}))
    register_model(fdb, MODEL, "/ckpt", ["car", "sign"], {"category_ids": [CAR_ID, SIGN_ID]},
                   training_data={"train": str(train_json)})
    return {"gt_json": gt_json, "root": root, "docs": docs}


CONFIG = LabelErrorConfig(neighbours=3)


def mine_hard_cases(fdb, ground_truth, config, out_dir, label_config):
    """`select_hard_cases` as `dataengine mine` runs it: the pool index brought up to date first."""
    from mining.selection import pool_index_upkeep, select_hard_cases

    pool_index_upkeep(fdb, MODEL, config, Path(out_dir) / "indexes")
    return select_hard_cases(fdb, MODEL, ground_truth, config, out_dir=out_dir, label_config=label_config)


def test_find_label_errors_types_and_records_each_suspect(fdb, labelled_world):
    from mining.label_errors import find_label_errors
    from records.coco import load_coco

    report = find_label_errors(fdb, MODEL, load_coco(labelled_world["gt_json"]), CONFIG)
    assert report.predictions == "held_out" and report.images == 8 and report.skipped_in_sample == 0
    errors = {(s.type, s.uri.rsplit("/", 1)[1]) for s in report.label_errors}
    assert errors == {("possible_missing", "v6.png"), ("possible_wrong_class", "v2.png"),
                      ("possible_spurious", "v3.png")}
    logos = [s for s in report.suspects if s.type == "possible_missing" and s.uri.endswith(("v4.png", "v7.png"))]
    assert len(logos) == 2 and all(s.suspicion < CONFIG.threshold for s in logos)  # the model's own errors
    stored = fdb.label_errors.find_one({"type": "possible_wrong_class"})
    assert stored["gt_category_name"] == "sign" and stored["category_name"] == "car" and stored["is_label_error"]
    assert stored["iou"] == pytest.approx(1.0) and stored["predictions"] == "held_out"
    again = find_label_errors(fdb, MODEL, load_coco(labelled_world["gt_json"]), CONFIG)
    assert fdb.label_errors.count_documents({}) == len(again.suspects) == len(report.suspects)  # no duplicates


def test_a_model_never_judges_labels_it_trained_on(fdb, labelled_world):
    from fdb.models import register_model
    from mining.label_errors import find_label_errors
    from records.coco import load_coco

    register_model(fdb, MODEL, "/ckpt", ["car", "sign"], {"category_ids": [CAR_ID, SIGN_ID]},
                   training_data={"train": str(labelled_world["gt_json"])})
    report = find_label_errors(fdb, MODEL, load_coco(labelled_world["gt_json"]), CONFIG)
    assert report.images == 0 and report.skipped_in_sample == 8 and report.suspects == []
    assert "8 the model trained on were not judged" in report.table()


def test_mining_leaves_label_errors_out_of_its_queries_unless_asked(fdb, labelled_world, tmp_path):
    from mining.config import MiningConfig
    from records.coco import load_coco

    gt = load_coco(labelled_world["gt_json"])
    config = MiningConfig(k=2, budget=4, types=("fp_background",), random_arm=False)
    default = mine_hard_cases(fdb, gt, config, tmp_path / "m1", CONFIG)
    assert len(default.queries) == 3 and default.left_out == {"possible_missing": 1}
    assert {Path(im.uri).name for im in default.selection.images} <= {"p4.png", "p5.png", "p6.png", "p7.png"}
    kept = mine_hard_cases(fdb, gt, MiningConfig(**{**config.as_dict(), "types": ("fp_background",),
                                                    "keep_label_errors": True}), tmp_path / "m2", CONFIG)
    assert len(kept.queries) == 4 and kept.left_out == {}
    run = fdb.runs.find_one({"_id": default.run_id})
    assert run["metrics"]["left_out_as_label_errors"] == {"possible_missing": 1}
    assert run["metrics"]["label_errors"]["possible_spurious"] == 1


def test_review_batch_round_trip_makes_a_new_labelled_set_version(fdb, store, labelled_world, tmp_path):
    from datumaro.components.annotation import AnnotationType
    from datumaro.components.dataset import Dataset

    from fdb import labelled_sets
    from mining.model_errors import find_errors
    from records.coco import load_coco
    from flows.labelling import import_batch_labels
    from flows.review_labels import export_review, judge_labels
    from tasks.index import update_pool_index
    from tasks.mine import mine, read_labelled_set
    from jobs.context import newest_labels

    gt_json = str(labelled_world["gt_json"])
    judged = judge_labels(store, MODEL, gt_json, config=CONFIG)
    assert judged.counts() == {"possible_missing": 1, "possible_wrong_class": 1, "possible_bad_box": 0,
                                "possible_spurious": 1}
    exported = export_review(store, MODEL, gt_json, target=str(tmp_path / "review"))
    assert exported.images == 3 and exported.counts["predictions"] == 2 and exported.counts["labels"] == 3
    root = Path(exported.location)
    manifest = json.loads((root / "manifest.json").read_text())
    why = {row["file_name"]: [s["type"] for s in row["suspects"]] for row in manifest["images"]}
    assert why == {"v2.png": ["possible_wrong_class"], "v3.png": ["possible_spurious"],
                   "v6.png": ["possible_missing"]}

    cvat = Dataset.import_from(str(root / "annotations.xml"), "cvat")  # read back by datumaro
    origins = {}
    for item in cvat:
        for ann in item.annotations:
            if ann.type == AnnotationType.bbox:
                origins.setdefault(Path(item.id).name, []).append((ann.attributes["origin"], ann.attributes["suspect"]))
    assert sorted(origins["v2"]) == [("label", "possible_wrong_class"), ("prediction", "possible_wrong_class")]
    assert sorted(origins["v3"]) == [("label", ""), ("label", "possible_spurious")]  # its car is not suspected
    assert origins["v6"] == [("prediction", "possible_missing")]

    # The team: v2 relabelled a car (the prediction kept, the label deleted), v3's sign deleted, v6's car kept.
    coco = json.loads((root / "annotations" / "instances_default.json").read_text())
    coco["annotations"] = [a for a in coco["annotations"]
                           if not (a["attributes"]["origin"] == "label" and a["attributes"]["suspect"])]
    corrected = tmp_path / "corrected.json"
    corrected.write_text(json.dumps(coco))
    result = (imported := import_batch_labels(store, exported.batch_id, labels=str(corrected))).review
    assert imported.report.label_version == 1 and imported.report.images == 3
    assert result["version"] == 2 and result["changes"] == {"images": 3, "kept": 1, "moved": 0, "relabelled": 1,
                                                             "removed": 1, "added": 1}
    assert newest_labels(store, gt_json) == result["path"] != gt_json
    assert Path(gt_json).read_text() == labelled_world["gt_json"].read_text()  # the old version is kept
    assert [v["version"] for v in labelled_sets.versions(fdb, gt_json)] == [1, 2]

    newest = load_coco(result["path"])
    assert newest.image_dir == load_coco(gt_json).image_dir
    errors = find_errors(fdb, MODEL, newest).totals()
    assert errors["miss"] == 0 and errors["fp_background"] == 3  # only the logos are left as the model's errors
    # the mining task reads the newest version too
    mining = MiningConfig(k=2, budget=4, random_arm=False)
    update_pool_index.fn(store, MODEL, mining)
    mined = mine.fn(store, MODEL, read_labelled_set.fn(store, gt_json), mining=mining, label_config=CONFIG)
    assert mined.errors["miss"] == {} and sum(mined.label_errors.values()) == 0
    again = judge_labels(store, MODEL, gt_json, config=CONFIG)
    assert sum(again.counts().values()) == 0  # judged on the newest version: the corrected labels


def test_k_fold_judges_every_image_with_the_model_that_never_saw_it(fdb, tmp_path):
    from detectors.config import TrainConfig
    from detectors.synthetic import generate
    from mining.label_errors import find_label_errors, trained_on
    from records.coco import load_coco
    from jobs.label_folds import fold_models

    paths = generate(tmp_path / "data", n_train=6, n_val=0, n_pool=0, seed=5, width=128, height=96, progress=False)
    labelled = load_coco(paths["train"])
    versions = fold_models(fdb, labelled, 2, tmp_path / "folds", TrainConfig(steps=2, batch_size=2, warmup_steps=1),
                           min_size=96, max_size=128)
    assert len(set(versions)) == 2
    seen = [trained_on(fdb, v)[0] for v in versions]
    uris = {str(labelled.image_path(i).resolve()) for i in labelled.images}
    assert not seen[0] & seen[1] and seen[0] | seen[1] == uris  # each fold model trained on the other fold only
    report = find_label_errors(fdb, versions, labelled)
    assert report.predictions == "k_fold" and report.images == 6 and report.skipped_in_sample == 0
    for s in report.suspects:
        judge = versions.index(s.model_version)
        assert s.uri not in seen[judge] and s.predictions == "k_fold"
    # one fold model alone can only judge the images it did not train on
    alone = find_label_errors(fdb, versions[0], labelled)
    assert alone.images == len(uris - seen[0]) and alone.skipped_in_sample == len(seen[0])


def test_review_labels_from_the_command_line(engine, capsys):
    """An untrained model supports no label: every val label is suspected spurious, shipped for review, and the
    corrections (here: the team deletes the first image's labels, keeps the rest) become version 2."""
    from dataengine.cli import main

    gt = str(engine / "annotations" / "val.json")
    assert main(["review-labels", "--gt", gt, "--model", "tiny-v1", "--to", str(engine / "review")]) == 0
    out = capsys.readouterr().out
    assert "possible_spurious" in out and "review batch review-" in out
    batch = out.split("review batch ")[1].split(":")[0]
    root = engine / "review" / batch
    coco = json.loads((root / "annotations" / "instances_default.json").read_text())
    assert coco["annotations"] and all(a["attributes"]["origin"] == "label" for a in coco["annotations"])
    first = coco["images"][0]["id"]
    removed = sum(a["image_id"] == first for a in coco["annotations"])
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != first]
    corrected = engine / "corrected.json"
    corrected.write_text(json.dumps(coco))
    assert main(["import-labels", str(corrected), "--batch", batch]) == 0
    out = capsys.readouterr().out
    assert f"{removed} removed" in out and "labelled set version 2" in out
    assert main(["evaluate", "--data", str(engine), "--split", "val", "--model", "tiny-v1"]) == 0
    assert "val.v2.json, corrected by review" in capsys.readouterr().out  # evaluation reads the newest labels
    assert main(["review-labels", "--import", str(corrected)]) == 2  # no --batch: refused with what is missing
    assert "--import needs --batch" in capsys.readouterr().err


def test_a_judge_that_supports_no_label_leaves_nothing_out_of_mining(fdb, labelled_world, tmp_path):
    """A model that barely detects calls every label spurious: its word must not strip mining of its misses."""
    from mining.config import MiningConfig
    from records.coco import load_coco

    fdb.detections.delete_many({"box": [4.0, 4.0, 20.0, 14.0]})  # the model now finds none of the labelled cars
    gt = load_coco(labelled_world["gt_json"])
    result = mine_hard_cases(fdb, gt, MiningConfig(k=2, budget=4, types=("miss",), random_arm=False), tmp_path,
                             CONFIG)
    assert result.label_errors.judge_too_weak and result.label_errors.counts()["possible_spurious"] == 7
    assert result.left_out == {} and len(result.queries) == 7  # every miss still queries
    assert "too weak to judge them" in result.label_errors.table()


def test_the_nightly_summary_shows_label_errors_beside_the_model_errors(store, labelled_world):
    from flows.nightly import NightReport, _summary
    from tasks.index import update_pool_index
    from tasks.mine import mine, read_labelled_set
    from jobs.detect import DetectReport

    mining = MiningConfig(k=2, budget=4, types=("fp_background",), random_arm=False)
    update_pool_index.fn(store, MODEL, mining)
    mined = mine.fn(store, MODEL, read_labelled_set.fn(store, str(labelled_world["gt_json"])), mining=mining,
                    label_config=CONFIG)
    summary = _summary(NightReport(MODEL, DetectReport(MODEL), mined, None))
    assert "fp_background" in summary and "possible_missing" in summary and "possible_spurious" in summary
    assert "left out of the queries as label errors: 1 (possible_missing)" in summary
    assert mined.left_out == {"possible_missing": 1} and mined.label_error_predictions == "held_out"


# ---------------------------------------------------------------------------------------------------- the judge's check
def _street_labels(images=10, per_image=4):
    """An in-memory labelled set: `images` 200x150 images with `per_image` 20x16 boxes each, cars and signs."""
    from records.coco import CocoSet

    annotations = {cid: [{**gt(cid * 100 + j, (CAR_ID, SIGN_ID)[j % 2], [10.0 + 45 * j, 20.0 + 10 * j, 20.0, 16.0]),
                          "image_id": cid} for j in range(per_image)] for cid in range(1, images + 1)}
    return CocoSet(Path("street.json"), Path("images"), {cid: {"id": cid, "file_name": f"s{cid}.png", "width": 200,
                                                               "height": 150} for cid in annotations},
                   annotations, CATEGORIES)


def test_planting_is_seeded_and_plants_every_kind_of_error():
    from mining.label_error_check import MOVED_IOU, PLANTED_KINDS, plant_label_errors
    from records.boxes import box_ious

    labels = _street_labels()
    before = json.dumps(labels.annotations_by_image)
    copy, planted = plant_label_errors(labels, seed=3)
    assert json.dumps(labels.annotations_by_image) == before  # the labelled set is left as it was
    again_copy, again = plant_label_errors(labels, seed=3)
    assert again == planted and again_copy.annotations_by_image == copy.annotations_by_image
    assert plant_label_errors(labels, seed=4)[1] != planted
    kinds = {k: [p for p in planted if p.kind == k] for k in PLANTED_KINDS}
    assert all(len(errors) == 2 for errors in kinds.values())  # 10 % of 40 labels is 4: at least 2 of each kind
    in_copy = {a["id"]: a for anns in copy.annotations_by_image.values() for a in anns}
    assert not {p.gt_id for p in kinds["deleted"]} & set(in_copy)
    for p in kinds["moved"]:
        assert in_copy[p.gt_id]["bbox"] == p.bbox
        assert MOVED_IOU[0] <= box_ious([p.bbox], [p.original_bbox])[0, 0] <= MOVED_IOU[1]
    for p in kinds["relabelled"]:
        assert in_copy[p.gt_id]["category_id"] == p.category_id != p.original_category_id
    for p in kinds["added"]:
        others = [a["bbox"] for a in copy.annotations_by_image[p.image_id] if a["id"] != p.gt_id]
        assert p.gt_id not in {a["id"] for anns in labels.annotations_by_image.values() for a in anns}
        assert box_ious([p.bbox], others).max() == 0  # on background
    assert len(in_copy) == 40 - 2 + 2 and len({p.gt_id for p in planted}) == 8  # each label changed once at most


def test_scoring_planted_errors_on_a_hand_made_case():
    from mining.label_error_check import PlantedError, score_planted
    from records import LabelSuspect

    planted = [PlantedError("deleted", 1, 1, [0.0, 0.0, 40.0, 40.0], CAR),
               PlantedError("moved", 1, 2, [130.0, 0.0, 40.0, 40.0], CAR, [100.0, 0.0, 40.0, 40.0], CAR),
               PlantedError("relabelled", 2, 3, [0.0, 0.0, 40.0, 40.0], SIGN, [0.0, 0.0, 40.0, 40.0], CAR),
               PlantedError("added", 2, 10, [200.0, 0.0, 20.0, 20.0], SIGN)]
    spurious_on_nothing = LabelSuspect("possible_spurious", 0.9, SIGN, gt_id=5, gt_bbox=[300.0, 0.0, 9.0, 9.0],
                                       gt_category_id=SIGN)
    copy_suspects = {
        1: [LabelSuspect("possible_missing", 0.9, CAR, detection_id="d1", bbox=[2.0, 0.0, 40.0, 40.0]),  # hit
            LabelSuspect("possible_spurious", 0.8, CAR, gt_id=2, gt_bbox=[130.0, 0.0, 40.0, 40.0],
                         gt_category_id=CAR),  # on the moved label, but not a bad box: false
            spurious_on_nothing],  # the labelled set's own suspect: not counted
        2: [LabelSuspect("possible_wrong_class", 0.7, CAR, detection_id="d3", gt_id=3, gt_category_id=SIGN),  # hit
            LabelSuspect("possible_spurious", 0.95, SIGN, gt_id=10, gt_bbox=[200.0, 0.0, 20.0, 20.0],
                         gt_category_id=SIGN),  # hit
            LabelSuspect("possible_missing", 0.3, CAR, detection_id="d9", bbox=[0.0, 0.0, 40.0, 40.0]),  # under
            LabelSuspect("possible_missing", 0.6, CAR, detection_id="d7", bbox=[80.0, 80.0, 30.0, 30.0])]}  # false
    natural = {1: [spurious_on_nothing]}
    check = score_planted(planted, copy_suspects, natural, threshold=0.5, min_precision=0.8)
    # 5 suspects counted (d1, gt 2, d3, gt 10, d7), 3 of them hits; 3 of the 4 planted errors found
    assert check.precision == pytest.approx(3 / 5) and check.recall == pytest.approx(3 / 4)
    assert check.recall_by_kind() == {"deleted": 1.0, "moved": 0.0, "relabelled": 1.0, "added": 1.0}
    assert check.precision_by_type() == {"possible_missing": 0.5, "possible_bad_box": None,
                                         "possible_wrong_class": 1.0, "possible_spurious": 0.5}
    assert not check.trusted and "precision 0.60 < 0.8" in check.reason
    # a missing-label suspect overlapping the deleted box under IoU 0.5 does not find it
    near = {1: [LabelSuspect("possible_missing", 0.9, CAR, detection_id="d1", bbox=[25.0, 0.0, 40.0, 40.0])]}
    assert score_planted(planted[:1], near, {}, 0.5).found == {}
    assert score_planted(planted, {}, {}, 0.5).precision is None  # nothing to measure it on: not trusted
    assert not score_planted(planted, {}, {}, 0.5).trusted


def test_the_judge_removes_nothing_when_its_precision_on_planted_errors_is_below_the_bar(fdb, labelled_world,
                                                                                        tmp_path):
    """A model blind to a third of the labelled cars calls them spurious, and calls a planted error on such a car
    spurious as well, whatever it was: measured on the planted errors it is imprecise, and mining keeps its misses."""
    from dataclasses import replace

    from records.coco import load_coco

    blind = [labelled_world["docs"][str((labelled_world["root"] / "images" / f"v{i}.png").resolve())]["_id"]
             for i in (1, 3)]
    fdb.detections.delete_many({"box": [4.0, 4.0, 20.0, 14.0], "image_id": {"$in": blind}})
    gt = load_coco(labelled_world["gt_json"])
    config = MiningConfig(k=2, budget=4, types=("miss",), random_arm=False)
    result = mine_hard_cases(fdb, gt, config, tmp_path / "m1", CONFIG)
    report, check = result.label_errors, result.label_errors.check
    assert report.counts()["possible_spurious"] == 3 and not report.supports_too_few_labels  # 3 of 7: the old cause
    assert check.precision < CONFIG.min_precision and report.judge_too_weak  # is silent, the check is not
    assert result.left_out == {} and len(result.queries) == 4  # every miss still queries
    assert check.reason in report.table() and "mining leaves nothing out on its word" in check.reason
    metrics = fdb.runs.find_one({"_id": result.run_id})["metrics"]
    assert metrics["label_error_judge_too_weak"] and metrics["label_error_check"]["precision"] == check.precision
    assert metrics["label_error_check"]["reason"] == check.reason
    assert set(metrics["label_error_check"]["recall_by_kind"]) == {"deleted", "moved", "relabelled", "added"}
    # the bar, not anything else, kept the misses: lowered under what it measured, the judge removes them
    lax = mine_hard_cases(fdb, gt, config, tmp_path / "m2", replace(CONFIG, min_precision=check.precision))
    assert lax.left_out and len(lax.queries) < 4 and lax.label_errors.check.trusted


def test_a_judge_that_finds_the_planted_errors_removes_what_it_explains(fdb, labelled_world):
    from mining.label_errors import find_label_errors
    from records.coco import load_coco

    report = find_label_errors(fdb, MODEL, load_coco(labelled_world["gt_json"]), CONFIG)
    assert report.check.trusted and not report.judge_too_weak
    assert "judge checked on label errors planted in a copy" in report.table()
