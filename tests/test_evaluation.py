"""The evaluation that tells the arms apart: a test split that fed nothing (and refusals of one that did), its
superset / tail / rest, the operating point and TIDE's costs on hand-made cases, the power numbers, and the
experiment reported on the test split with its verdict in the report and comparison.json."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from mining.config import MatchConfig
from mining.evaluation import (MARGINS, LeakyTestSplit, OperatingPoint, check_batches_apart, check_test_split,
                               compare, judge, min_detectable_difference, report_subsets, tail_from_errors,
                               tail_from_metadata, verdict)
from records.coco import load_coco


def _coco(tmp_path, name, images, annotations, extra=None):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "sign"}, {"id": 2, "name": "car"}]}))
    return load_coco(path, image_dir=tmp_path)


def _images(names, **extra):
    return [{"id": i, "file_name": n, "width": 100, "height": 100, **extra} for i, n in enumerate(names, start=1)]


def det(bbox, score, category_id):
    return SimpleNamespace(bbox=bbox, score=score, category_id=category_id, category_name=str(category_id))


def test_a_split_that_fed_the_queries_is_refused_as_a_test_split(tmp_path):
    val = _coco(tmp_path, "val", _images(["v1.png", "v2.png"]), [])
    test = _coco(tmp_path, "test", _images(["t1.png", "t2.png"]), [])
    check_test_split(test, {"the queries and the gate (val)": val})  # apart: accepted
    with pytest.raises(LeakyTestSplit, match=r"is the split that fed the queries and the gate \(val\)"):
        check_test_split(val, {"the queries and the gate (val)": val})
    mixed = _coco(tmp_path, "mixed", _images(["t1.png", "v2.png"]), [])
    with pytest.raises(LeakyTestSplit, match=r"shares 1 of its 2 images with the split that fed the queries"):
        check_test_split(mixed, {"the queries and the gate (val)": val})
    check_batches_apart(test, {"mined": ([{"file_name": "p1.png"}], [])})
    with pytest.raises(LeakyTestSplit, match=r"the mined batch trains on 1 images of the test split"):
        check_batches_apart(test, {"mined": ([{"file_name": "t2.png"}], [])})


def test_the_tail_comes_from_the_generator_or_from_production_errors(tmp_path):
    images = _images(["a.png", "b.png", "c.png"])
    images[1]["distractors"] = [{"kind": "red_logo", "bbox": [1, 1, 5, 5]}]
    images[0]["distractors"] = images[2]["distractors"] = []
    synthetic = _coco(tmp_path, "synthetic", images, [])
    assert tail_from_metadata(synthetic) == [2]
    users = _coco(tmp_path, "users", _images(["a.png", "b.png", "c.png"]), [])
    assert tail_from_metadata(users) is None
    assert tail_from_errors({1: {"miss"}, 2: set(), 3: {"fp_background", "miss"}}, ["fp_background"]) == [3]
    assert report_subsets(synthetic, [2, 99]) == {"superset": [1, 2, 3], "tail": [2], "rest": [1, 3]}


def test_the_operating_point_counts_at_the_serving_threshold_per_class_and_subset(tmp_path):
    gts = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
           {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "area": 900, "iscrowd": 0},
           {"id": 3, "image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0},
           {"id": 4, "image_id": 2, "category_id": 1, "bbox": [50, 0, 40, 40], "area": 1600, "iscrowd": 1}]
    coco = _coco(tmp_path, "gt", _images(["1.png", "2.png"]), gts)
    point = OperatingPoint(coco, {"superset": [1, 2], "tail": [2]}, serving_threshold=0.5, params=MatchConfig())
    point.reset()
    point.process([1, 2], [
        # image 1: one sign found (0.9), one background sign (0.8), the second sign found only below the threshold
        SimpleNamespace(detections=[det([10, 10, 30, 30], 0.9, 1), det([0, 70, 20, 20], 0.8, 1),
                                    det([60, 60, 30, 30], 0.3, 1)]),
        # image 2: the car found; a sign on the crowd region is neither a true nor a false positive
        SimpleNamespace(detections=[det([5, 5, 20, 20], 0.7, 2), det([55, 5, 30, 30], 0.9, 1)])])
    out = point.evaluate()
    sign, car = out["superset"]["per_class"]["sign"], out["superset"]["per_class"]["car"]
    assert (sign["tp"], sign["fp"], sign["fn"]) == (1, 1, 1)
    assert (car["tp"], car["fp"], car["fn"]) == (1, 0, 0)
    everything = out["superset"]["all"]
    assert everything["precision"] == pytest.approx(2 / 3) and everything["recall"] == pytest.approx(2 / 3)
    assert everything["fp_per_image"] == pytest.approx(0.5) and everything["images"] == 2
    assert out["tail"]["all"] == {"tp": 1, "fp": 0, "fn": 0, "images": 1, "precision": 1.0, "recall": 1.0,
                                  "fp_per_image": 0.0}
    # A lower serving threshold turns the 0.3 detection into a true positive.
    low = OperatingPoint(coco, {"superset": [1, 2]}, serving_threshold=0.25)
    low.reset()
    low.process([1], [SimpleNamespace(detections=[det([10, 10, 30, 30], 0.9, 1), det([60, 60, 30, 30], 0.3, 1)])])
    assert low.evaluate()["superset"]["per_class"]["sign"]["tp"] == 2


def test_tide_costs_a_miss_and_prices_each_subset(tmp_path):
    """One image with both signs found, one with a sign nobody found: the miss costs what asking for it loses."""
    from mining.model_errors import ErrorCost

    gts = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
           {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0},
           {"id": 3, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0}]
    coco = _coco(tmp_path, "gt", _images(["1.png", "2.png"]), gts)
    cost = ErrorCost(coco, MatchConfig(), subsets={"tail": [2]})
    cost.process([1, 2], [SimpleNamespace(detections=[det([10, 10, 30, 30], 0.9, 1)]),
                          SimpleNamespace(detections=[det([50, 50, 30, 30], 0.8, 1)])])
    out = cost.evaluate()
    # sign: 2 of 3 found, each at precision 1: AP = 2/3 (car has no ground truth, so it is not in the mean).
    assert out["bbox_map"] == pytest.approx(2 / 3, abs=0.01)
    assert out["cost"]["miss"] == pytest.approx(1 / 3, abs=0.01)
    assert out["by_subset"]["tail"]["bbox_map"] == pytest.approx(0.5, abs=0.01)
    assert out["by_subset"]["tail"]["cost"]["miss"] == pytest.approx(0.5, abs=0.01)
    assert out["cost"]["fp_background"] == 0.0
    # Every error fixed at once: the boxes found fit exactly, so what is left below 1.0 is all errors' doing.
    assert out["ceiling"] == pytest.approx(1 / 3, abs=0.01)
    assert out["by_subset"]["tail"]["ceiling"] == pytest.approx(0.5, abs=0.01)


def test_the_error_ceiling_prices_every_error_fixed_at_once(tmp_path):
    """Two of three signs found, a background box and a duplicate ranked above a true positive: fixing one type
    alone leaves the others costing; only every error fixed together reaches 1.0 (the boxes found fit exactly)."""
    from mining.model_errors import ErrorCost

    gts = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
           {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 10, 30, 30], "area": 900, "iscrowd": 0},
           {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 60, 20, 20], "area": 400, "iscrowd": 0}]
    coco = _coco(tmp_path, "gt", _images(["1.png"]), gts)
    cost = ErrorCost(coco, MatchConfig())
    cost.process([1], [SimpleNamespace(detections=[
        det([60, 60, 30, 30], 0.99, 1),  # background, far from any sign
        det([10, 10, 30, 30], 0.95, 1),
        det([12, 12, 30, 30], 0.9, 1),  # a second box on sign 1: a duplicate (localisation)
        det([60, 10, 30, 30], 0.8, 1)])])  # sign 3 is missed
    out = cost.evaluate()
    alone = max(out["cost"][t] for t in ("fp_background", "fp_localisation", "miss"))
    assert out["bbox_map"] + out["ceiling"] == pytest.approx(1.0, abs=0.01)
    assert out["ceiling"] > alone + 0.05


def test_the_minimum_detectable_difference_is_twice_the_sd_of_the_difference():
    a, b = [0.70, 0.72, 0.74], [0.68, 0.69, 0.70]
    expected = 2 * math.sqrt(0.02 ** 2 / 3 + 0.01 ** 2 / 3)
    assert min_detectable_difference(a, b) == pytest.approx(expected)
    said = compare(a, b)
    assert said["difference"] == pytest.approx(0.03) and said["beyond_noise"] is True
    assert compare([0.7], [0.6]) == {"difference": pytest.approx(0.1), "sd": None, "min_detectable_difference": None,
                                     "beyond_noise": None}


def test_the_verdict_calls_a_difference_only_beyond_its_noise_and_no_difference_only_within_the_margin():
    # The demo's two draws on the tail: one difference inside its noise, one at it; both, with their noise, inside
    # the 0.02 that matters on the tail, so both draws say the same.
    assert judge({"difference": -0.0050, "min_detectable_difference": 0.0091}, 0.02) == "no difference"
    assert judge({"difference": -0.0068, "min_detectable_difference": 0.0067}, 0.02) == "no difference"
    # Beyond the noise and not inside the margin: a real difference, in the metric's own direction.
    assert judge({"difference": -0.030, "min_detectable_difference": 0.010}, 0.02) == "worse"
    assert judge({"difference": 0.015, "min_detectable_difference": 0.010}, 0.02) == "better"
    assert judge({"difference": -0.85, "min_detectable_difference": 0.21}, 0.1, lower_is_better=True) == "better"
    assert judge({"difference": 0.30, "min_detectable_difference": 0.21}, 0.1, lower_is_better=True) == "worse"
    # Neither apart nor surely close: the evaluation is too weak to say.
    assert judge({"difference": -0.012, "min_detectable_difference": 0.015}, 0.02) == "inconclusive"
    assert judge({"difference": 0.01, "min_detectable_difference": None}, 0.02) is None
    # An interval that touches the margin is inside it; one that crosses it is not.
    assert judge({"difference": 0.004, "min_detectable_difference": 0.006}, 0.01) == "no difference"
    assert judge({"difference": 0.005, "min_detectable_difference": 0.006}, 0.01) == "inconclusive"

    said = verdict({"mined-random": {"tail_fp_per_image": compare([0.3, 0.2, 0.4], [1.0, 1.2, 1.3]),
                                     "superset_bbox_map": compare([0.850, 0.851], [0.851, 0.852])},
                    "random-control": {"tail_bbox_map": compare([0.8, 0.9], [0.1, 0.2])}})
    assert set(said) == {"tail_fp_per_image", "superset_bbox_map"}  # only mined against random, only what it has
    assert said["tail_fp_per_image"]["verdict"] == "better" and said["tail_fp_per_image"]["margin"] == 0.1
    assert said["superset_bbox_map"]["verdict"] == "no difference"
    assert said["superset_bbox_map"]["margin"] == MARGINS["superset_bbox_map"] == 0.01


def test_the_control_gain_is_judged_against_the_noise_of_a_training_run_pooled_over_the_arms():
    from mining.compare import ArmResult, Comparison
    from mining.evaluation import pooled_sd, summarise

    assert pooled_sd([[1.0, 2.0, 3.0], [2.0, 2.0], [5.0]]) == (pytest.approx(math.sqrt(2 / 3)), 5)
    assert math.isnan(pooled_sd([[1.0], [2.0]])[0])

    def arm(name, maps):
        return ArmResult(name, 0, 1, 0.0, {}, {}, runs=[{"seed": i, "mAP": {"superset": {"bbox": m}}}
                                                         for i, m in enumerate(maps)])

    comparison = Comparison({"superset": [1, 2]}, evaluated_on="test")
    comparison.arms["before"] = ArmResult("before", 0, 0, 0.0, {"superset": {"bbox": {"mAP": 0.850}}}, {})
    comparison.arms["mined"] = arm("mined", [0.845, 0.850, 0.855])
    comparison.arms["random"] = arm("random", [0.848, 0.852, 0.850])
    # Two control seeds that happen to agree: their own sd (0.0001) would call a 0.002 gain beyond noise.
    comparison.arms["control"] = arm("control", [0.8520, 0.8521])
    gain = summarise(comparison)["control_gain"]["superset_bbox_map"]
    assert gain["control_sd"] == pytest.approx(0.0000707, abs=1e-6) and gain["runs_pooled"] == 8
    assert gain["sd"] == pytest.approx(pooled_sd([[0.845, 0.850, 0.855], [0.848, 0.852, 0.850], [0.8520, 0.8521]])[0])
    assert gain["gain"] == pytest.approx(0.00205) and gain["within_2_sd"] is True
    # A gain well beyond a training run's noise is still called: the seed had not plateaued.
    comparison.arms["control"] = arm("control", [0.870, 0.871])
    assert summarise(comparison)["control_gain"]["superset_bbox_map"]["within_2_sd"] is False


def test_the_precision_recall_plot_draws_every_class_any_arm_has_and_a_note_when_none_has_one(tmp_path):
    from mining.compare import ArmResult, Comparison
    from mining.report import _plot_pr

    def arm(name, curves):
        return ArmResult(name, 0, 0, 0.0, {"superset": {"bbox": {"mAP": 0.0, "pr_curves": curves}}}, {})

    curve = {"recall": [0.0, 0.5], "precision_iou50": [1.0, 0.5]}
    comparison = Comparison({"superset": [1]}, evaluated_on="test")
    comparison.arms["before"] = arm("before", {})  # a seed that detects nothing: the mined arm's classes still show
    comparison.arms["mined"] = arm("mined", {"stop_sign": curve})
    assert _plot_pr(comparison, tmp_path / "pr.png").stat().st_size > 0
    comparison.arms["mined"] = arm("mined", {})
    assert _plot_pr(comparison, tmp_path / "none.png").stat().st_size > 0  # was: ValueError, 0 columns
