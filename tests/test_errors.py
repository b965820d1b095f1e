"""Error typing on hand-made cases with known answers: one of each type, crowd regions, thresholds."""

from __future__ import annotations

from mining.config import MatchConfig as MatchParams
from mining.model_errors import type_image_errors
from mining.matching import match_image
from records import Detection

CAR, SIGN = 3, 1
GT = [
    {"id": 10, "category_id": CAR, "bbox": [0, 0, 100, 50], "iscrowd": 0},      # found, then found again
    {"id": 11, "category_id": CAR, "bbox": [200, 0, 100, 50], "iscrowd": 0},    # called a sign
    {"id": 12, "category_id": SIGN, "bbox": [400, 0, 40, 40], "iscrowd": 0},    # boxed badly
    {"id": 13, "category_id": SIGN, "bbox": [500, 100, 40, 40], "iscrowd": 0},  # never found
    {"id": 14, "category_id": CAR, "bbox": [0, 300, 300, 100], "iscrowd": 1},   # a crowd of cars
]
def det(id, category_id, bbox, score):
    return Detection(0, bbox, score, category_id, str(category_id), id=id)


DETS = [
    det("tp", CAR, [0, 0, 100, 50], 0.95),
    det("dup", CAR, [2, 1, 100, 50], 0.90),
    det("wrong", SIGN, [200, 0, 100, 50], 0.85),
    det("loc", SIGN, [410, 10, 40, 40], 0.80),
    det("bg", SIGN, [700, 300, 30, 30], 0.75),
    det("in_crowd", CAR, [10, 310, 60, 40], 0.70),
    det("low", CAR, [800, 0, 30, 30], 0.20),
]


def by_kind(errors):
    return {(e.type, e.detection_id or e.gt_id): e for e in errors}


def test_one_of_each_type():
    errors = by_kind(type_image_errors(DETS, GT, MatchParams(iou_threshold=0.5, score_threshold=0.5)))
    assert set(errors) == {("fp_localisation", "dup"), ("fp_wrong_class", "wrong"), ("fp_localisation", "loc"),
                           ("fp_background", "bg"), ("miss", 11), ("miss", 12), ("miss", 13)}
    assert errors[("fp_localisation", "dup")].detail == "duplicate"
    assert errors[("fp_localisation", "dup")].gt_id == 10
    assert errors[("fp_wrong_class", "wrong")].true_category_id == CAR
    assert errors[("fp_localisation", "loc")].detail == "poor_localisation"
    assert 0.1 <= errors[("fp_localisation", "loc")].iou < 0.5
    assert errors[("miss", 13)].category_id == SIGN and errors[("miss", 13)].detail is None
    # COCO counts a car called a sign twice: a wrong-class FP and a missed car; the miss says why.
    assert errors[("miss", 11)].detail == "detected_as_other_class"
    assert errors[("miss", 12)].detail == "poorly_localised"


def test_thresholds_are_parameters():
    # A looser IoU threshold makes the badly boxed sign a match; a higher score threshold drops the weak FPs.
    errors = by_kind(type_image_errors(DETS, GT, MatchParams(iou_threshold=0.3, score_threshold=0.78)))
    assert ("fp_localisation", "loc") not in errors and ("fp_background", "bg") not in errors
    assert ("miss", 12) not in errors and ("miss", 13) in errors and ("miss", 11) in errors
    # With a low score threshold, the weak detection far from everything becomes a background FP.
    low = by_kind(type_image_errors(DETS, GT, MatchParams(score_threshold=0.1)))
    assert ("fp_background", "low") in low


def test_crowd_regions_are_ignored_not_errors():
    errors = type_image_errors(DETS, GT, MatchParams())
    assert all(e.detection_id != "in_crowd" for e in errors)
    assert all(e.gt_id != 14 for e in errors)


def test_no_detections_means_every_object_is_missed():
    errors = type_image_errors([], GT, MatchParams())
    assert sorted(e.gt_id for e in errors) == [10, 11, 12, 13]
    assert type_image_errors([], [], MatchParams()) == []


def test_the_one_matcher_takes_the_best_free_label_most_confident_first_as_cocoeval_does():
    match = match_image(DETS, GT, min_score=0.5, iou_threshold=0.5)
    ids = [d.id for d in match.detections]
    assert ids == ["tp", "dup", "wrong", "loc", "bg", "in_crowd"]  # by score, the low one left out
    assert {ids[i]: match.labels[j]["id"] for i, j in match.label_of.items()} == {"tp": 10}
    assert [ids[i] for i in match.ignored] == ["in_crowd"]
    assert [ids[i] for i in match.false_positives()] == ["dup", "wrong", "loc", "bg"]
    assert [match.labels[j]["id"] for j in match.missed_labels()] == [11, 12, 13]  # never the crowd region
    # Two labels the detection overlaps equally well: the first is taken (COCOeval's argmax), the second missed.
    twins = [{"id": i, "category_id": CAR, "bbox": [0, 0, 10, 10]} for i in (1, 2)]
    tie = match_image([det("a", CAR, [0, 0, 10, 10], 0.9)], twins, 0.5, 0.5)
    assert tie.label_of == {0: 0} and tie.missed_labels() == [1]
