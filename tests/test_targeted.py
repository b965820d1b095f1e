"""Targeted mining (mining.strategies.targeted, mining.submodular): the greedy against the formula and against
submodlib, and on a tiny hand-made pool, the image most like the exemplar first, with the queries it serves."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from bson import ObjectId
from PIL import Image

from fdb import detections as detection_store
from mining.config import MiningConfig
from mining.queries import build_target_queries, target_errors
from mining.selection import pool_index_upkeep
from mining.strategies import StrategyContext, build_strategy
from mining.submodular import smi_greedy, smi_value
from records import BOX_LAYER, GT_BOX_LAYER, IMAGE_LAYER, Detection, ModelError
from records.coco import load_coco

MODEL = "m1"
DIM = 8


def axis(i, noise=0.0, rng=None):
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    if noise:
        v = v + noise * rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("function", ["fl2mi", "gcmi"])
def test_the_greedy_gains_add_up_to_the_formula_and_each_pick_is_the_best_gain(function):
    s = np.random.default_rng(3).random((5, 14))
    picks, gains = smi_greedy(s, 6, function, eta=0.7)
    assert len(set(picks)) == 6
    for t in range(1, 7):
        assert np.isclose(sum(gains[:t]), smi_value(s, picks[:t], function, 0.7))
        # Brute force: no other image would have added more at this step.
        before = smi_value(s, picks[:t - 1], function, 0.7)
        best = max(smi_value(s, picks[:t - 1] + [j], function, 0.7) - before
                   for j in range(14) if j not in picks[:t - 1])
        assert np.isclose(gains[t - 1], best)


def test_fl2mi_by_hand():
    # Two queries, three images. Image 0 serves query 0 well, image 2 serves both fairly, image 1 nothing.
    s = np.array([[0.9, 0.0, 0.5],
                  [0.1, 0.0, 0.6]])
    # f({2}) = 0.5 + 0.6 + eta * 0.6 = 1.7; f({0}) = 0.9 + 0.1 + 0.9 = 1.9: image 0 first (gain 1.9), then image 2:
    # coverage 0.9 + 0.6 = 1.5 (+0.5), relevance 0.9 + 0.6 (+0.6): gain 1.1.
    picks, gains = smi_greedy(s, 3, "fl2mi", eta=1.0)
    assert picks == [0, 2, 1] and np.allclose(gains, [1.9, 1.1, 0.0])
    assert smi_value(s, [0, 2], "fl2mi", 1.0) == pytest.approx(3.0)


def test_the_greedy_picks_what_submodlib_picks():
    submodlib = pytest.importorskip("submodlib")
    s = np.random.default_rng(0).random((4, 15)).astype(np.float32)
    fl2mi = submodlib.FacilityLocationVariantMutualInformationFunction(n=15, num_queries=4, query_sijs=s.T.copy(),
                                                                       queryDiversityEta=1.0)
    gcmi = submodlib.GraphCutMutualInformationFunction(n=15, num_queries=4, query_sijs=s.T.copy())
    for function, theirs, eta in (("fl2mi", fl2mi, 1.0), ("gcmi", gcmi, 0.5)):  # submodlib's GCMI has lambda 0.5
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a progress bar whatever it is told
            picked = theirs.maximize(budget=6, optimizer="NaiveGreedy", show_progress=False)
        ours = smi_greedy(s, 6, function, eta)
        assert ours[0] == [j for j, _ in picked]
        assert np.allclose(ours[1], [g for _, g in picked], atol=1e-5)


def test_similarities_must_be_non_negative_and_finite():
    with pytest.raises(ValueError, match="non-negative"):
        smi_greedy(np.array([[0.5, -0.1]]), 1)
    with pytest.raises(ValueError, match="unknown submodular"):
        smi_greedy(np.zeros((1, 2)), 1, "flmi")


@pytest.fixture()
def world(fdb, tmp_path):
    """Six pool images; p1's one detection looks like the labelled stop (axis 3), p4's second detection half like
    it, the rest lie elsewhere. Image vectors: p3 and p5 along axis 1, the others along axis 0. One labelled val
    image holds a stop box (its box-head vector along axis 3); an exemplar file holds one image, no boxes, whose
    image vector lies along axis 1."""
    rng = np.random.default_rng(0)
    ids = {}
    for i in range(6):
        image_id = ids[i] = ObjectId()
        fdb.images.insert_one({"_id": image_id, "uri": f"/pool/p{i}.png", "sha256": f"h{i}", "split": "pool",
                               "labelled": False, "status": "ok", "processed_by": [MODEL]})
        boxes = {1: [axis(3, 0.05, rng)], 4: [axis(5, 0.05, rng), (axis(3) + axis(6)) / np.sqrt(2)]}.get(
            i, [axis(4 + i % 3, 0.05, rng)])
        detection_store.write_detections(fdb, MODEL, [Detection(r, [1.0, 1.0, 5.0, 5.0], 0.6, 1, "speedlimit",
                                                                image_id=image_id) for r in range(len(boxes))])
        fdb.write_features(MODEL, BOX_LAYER, [detection_store.detection_id(image_id, MODEL, r)
                                              for r in range(len(boxes))], np.stack(boxes).astype(np.float32),
                           image_ids=[image_id] * len(boxes))
        fdb.write_features(MODEL, IMAGE_LAYER, [image_id], axis(1 if i in (3, 5) else 0, 0.05, rng)[None],
                           owner_kind="image")
    val = _coco(tmp_path / "val", "v0.png", [{"id": 7, "image_id": 1, "category_id": 2, "bbox": [2, 2, 6, 6],
                                               "area": 36, "iscrowd": 0}])
    exemplars = _coco(tmp_path / "exemplars", "e0.png", [])
    for coco, vector_of in ((val, None), (exemplars, axis(1))):
        uri = str(coco.image_path(1).resolve())
        image_id = ids[uri] = ObjectId()
        fdb.images.insert_one({"_id": image_id, "uri": uri, "split": "val", "labelled": True, "status": "ok",
                               "processed_by": [MODEL]})
        fdb.write_features(MODEL, IMAGE_LAYER, [image_id], (vector_of if vector_of is not None else axis(0))[None],
                           owner_kind="image")
    val_image = ids[str(val.image_path(1).resolve())]
    fdb.write_features(MODEL, GT_BOX_LAYER, [fdb.ground_truth_id(val_image, 7)], axis(3)[None],
                       image_ids=[val_image], owner_kind="ground_truth")
    pool_index_upkeep(fdb, MODEL, MiningConfig(strategy="targeted"), tmp_path / "indexes")  # the step before mining
    return ids, val, exemplars, val_image


def _coco(folder, name, annotations):
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (10, 10)).save(folder / "images" / name)
    (folder / "annotations").mkdir()
    path = folder / "annotations" / "set.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": name, "width": 10, "height": 10}],
                                "annotations": annotations,
                                "categories": [{"id": 1, "name": "speedlimit"}, {"id": 2, "name": "stop"}]}))
    return load_coco(path)


def test_the_pool_image_most_like_the_exemplar_ranks_first(fdb, world, tmp_path):
    ids, val, _, val_image = world
    queries = build_target_queries(fdb, MODEL, [], val, ["stop"])
    assert [(q.type, q.category_name, q.level) for q in queries] == [("exemplar", "stop", "detection")]
    context = StrategyContext(fdb, MODEL, queries, tmp_path / "indexes")
    ranking = build_strategy("targeted", MiningConfig(strategy="targeted")).rank(context, budget=3)
    order = [image.image_id for image in ranking.images]
    assert order[:2] == [ids[1], ids[4]]  # p1's detection is the stop's look-alike; p4's second one half of it
    first = ranking.images[0]
    assert first.queries[0].source_image_id == val_image and first.queries[0].type == "exemplar"
    assert "FL2MI pick 1" in first.reason and "serves 1 target queries" in first.reason
    assert ranking.params["smi"] == "fl2mi" and ranking.query_docs[0]["category"] == "stop"
    # An image is never picked twice, and the excluded are left out.
    again = build_strategy("targeted").rank(context, budget=3, exclude=frozenset({ids[1]}))
    assert ids[1] not in [image.image_id for image in again.images]
    assert again.images[0].image_id == ids[4]


def test_an_exemplar_image_without_boxes_finds_images_like_it(fdb, world, tmp_path):
    ids, val, exemplars, _ = world
    queries = build_target_queries(fdb, MODEL, [], val, [], exemplars)
    assert [(q.type, q.level) for q in queries] == [("exemplar_image", "image")]
    ranking = build_strategy("targeted").rank(StrategyContext(fdb, MODEL, queries, tmp_path / "indexes"), budget=2)
    assert {image.image_id for image in ranking.images} == {ids[3], ids[5]}


def test_the_errors_on_a_target_class_query_and_a_missed_box_is_not_queried_twice(fdb, world):
    _, val, _, val_image = world
    miss = ModelError(id=ObjectId(), type="miss", image_id=val_image, detection_id=None, gt_id=7, bbox=[2, 2, 6, 6],
                      score=None, category_id=2, category_name="stop")
    other = ModelError(id=ObjectId(), type="fp_background", image_id=val_image, detection_id=None, gt_id=None,
                       bbox=[0, 0, 3, 3], score=0.7, category_id=1, category_name="speedlimit")
    taken = ModelError(id=ObjectId(), type="fp_wrong_class", image_id=val_image, detection_id=None, gt_id=None,
                       bbox=[0, 0, 3, 3], score=0.7, category_id=1, category_name="speedlimit",
                       true_category_id=2, true_category_name="stop")
    assert target_errors([miss, other, taken], ["stop"]) == [miss, taken]
    queries = build_target_queries(fdb, MODEL, [miss], val, ["stop"])
    # The miss searches with its box's vector; the same box as an exemplar would only repeat it.
    assert [(q.type, q.level) for q in queries] == [("miss", "detection")]
