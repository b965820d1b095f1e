"""COCO-format datasets: validation messages, mask decoding, targets for Mask R-CNN, PennFudan conversion.

Real data (coco128, PennFudanPed) is read from the shared data folder, never copied; the small cases are
hand-made json files and PNGs in tmp_path.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from PIL import Image

from detectors.coco import CocoDetection, CocoFormatError, annotation_mask, collate_fn, load_coco, pennfudan_to_coco

SHARED_DATA = Path(os.environ.get("DATAENGINE_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))
COCO128 = SHARED_DATA / "coco128"
PENNFUDAN = SHARED_DATA / "PennFudanPed"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set DATAENGINE_SHARED_DATA to the folder holding "
                    f"coco128/ and PennFudanPed/)")
    return path


@pytest.fixture(scope="module")
def coco128():
    return load_coco(_need(COCO128 / "annotations" / "instances.json"))


@pytest.fixture(scope="module")
def pennfudan(tmp_path_factory):
    out = pennfudan_to_coco(_need(PENNFUDAN), tmp_path_factory.mktemp("pennfudan") / "pennfudan.json")
    return out, load_coco(out, image_dir=PENNFUDAN / "PNGImages")


def _mask_box(mask: np.ndarray | torch.Tensor) -> list[float]:
    """Tight xyxy box of a mask's pixels (x2, y2 exclusive, as COCO's pixel convention gives)."""
    rows, cols = np.nonzero(np.asarray(mask))
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def _check_masks_inside_boxes(target, tolerance=1.0):
    for box, mask in zip(target["boxes"].tolist(), target["masks"]):
        assert mask.sum() > 0
        x1, y1, x2, y2 = _mask_box(mask)
        assert x1 >= box[0] - tolerance and y1 >= box[1] - tolerance
        assert x2 <= box[2] + tolerance and y2 <= box[3] + tolerance


# ---------------------------------------------------------------------------------------------------- coco128


def test_coco128_loads_with_non_contiguous_categories(coco128):
    assert len(coco128.images) == 128
    assert coco128.image_dir == COCO128 / "images"
    assert all(coco128.image_path(i).is_file() for i in coco128.images)
    assert coco128.has_masks

    category_ids = [c["id"] for c in coco128.categories]
    assert len(category_ids) == 80 and max(category_ids) == 90  # COCO's ids have gaps
    assert category_ids == sorted(category_ids)
    assert sorted(coco128.label_of.values()) == list(range(1, 81))
    assert all(coco128.category_of[coco128.label_of[c]] == c for c in category_ids)
    assert coco128.label_of[min(category_ids)] == 1 and coco128.label_of[90] == 80
    names = {c["id"]: c["name"] for c in coco128.categories}
    assert coco128.class_names[0] == names[min(category_ids)]
    assert all(coco128.class_names[label - 1] == names[c] for c, label in coco128.label_of.items())
    assert sum(len(a) for a in coco128.annotations_by_image.values()) == 939


def test_coco128_crowd_rle_decodes_to_its_area(coco128):
    crowd = [a for anns in coco128.annotations_by_image.values() for a in anns if a.get("iscrowd")]
    assert len(crowd) == 10
    for ann in crowd:
        info = coco128.images[ann["image_id"]]
        assert isinstance(ann["segmentation"]["counts"], list)  # coco128's crowd RLEs are uncompressed
        mask = annotation_mask(ann, info["height"], info["width"])
        assert mask.shape == (info["height"], info["width"]) and mask.dtype == np.uint8
        rle = mask_utils.frPyObjects(ann["segmentation"], info["height"], info["width"])
        area = int(mask.sum())
        assert area == int(mask_utils.area(rle)) > 0
        # The decoded region spans the annotation's box: same top-left, and the integer box COCO stores for
        # crowds is one pixel short of the pixel extent.
        x, y, w, h = ann["bbox"]
        assert _mask_box(mask) == pytest.approx([x, y, x + w + 1, y + h + 1], abs=1)
        # coco128 keeps COCO 2017's stored crowd 'area', which is not the RLE's pixel count: it is 1% to 34% larger
        # (e.g. id 902800000315: 4665 stored, 3089 pixels). So only a loose agreement can be asserted.
        assert 0.6 * ann["area"] <= area <= 1.01 * ann["area"]


def test_coco128_detection_leaves_out_crowd(coco128):
    image_id = min(i for i, anns in coco128.annotations_by_image.items() if any(a["iscrowd"] for a in anns))
    anns = coco128.annotations_by_image[image_id]
    kept = [a for a in anns if not a["iscrowd"]]
    assert 0 < len(kept) < len(anns)

    image, target = CocoDetection(coco128, [image_id])[0]
    info = coco128.images[image_id]
    h, w = info["height"], info["width"]
    assert image.shape == (3, h, w) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.5
    assert target["image_id"] == image_id
    assert target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [coco128.label_of[a["category_id"]] for a in kept]
    assert target["boxes"].shape == (len(kept), 4) and target["boxes"].dtype == torch.float32
    x, y, bw, bh = kept[0]["bbox"]
    assert target["boxes"][0].tolist() == pytest.approx([x, y, x + bw, y + bh])
    assert target["masks"].shape == (len(kept), h, w) and target["masks"].dtype == torch.uint8
    assert target["iscrowd"].tolist() == [0] * len(kept)
    assert target["area"].tolist() == pytest.approx([a["area"] for a in kept])
    _check_masks_inside_boxes(target)


def test_coco128_image_without_annotations(coco128):
    image_id = next(i for i, anns in coco128.annotations_by_image.items() if not anns)
    image, target = CocoDetection(coco128, [image_id])[0]
    h, w = image.shape[1:]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, h, w)


# -------------------------------------------------------------------------------------------- hand-made json


def _write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


H, W = 20, 30
SQUARE = np.zeros((H, W), dtype=np.uint8)
SQUARE[5:15, 8:18] = 1


def _uncompressed_rle(mask: np.ndarray) -> list[int]:
    """Column-major run lengths, starting with a run of zeros, as COCO stores crowd regions."""
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    return counts + [run]


def test_polygon_and_both_rles_give_the_same_mask(tmp_path):
    compressed = mask_utils.encode(np.asfortranarray(SQUARE))["counts"].decode("ascii")
    segmentations = [
        [[8, 5, 18, 5, 18, 15, 8, 15]],
        {"size": [H, W], "counts": _uncompressed_rle(SQUARE)},
        {"size": [H, W], "counts": compressed},
    ]
    for seg in segmentations:
        assert np.array_equal(annotation_mask({"segmentation": seg}, H, W), SQUARE)

    _write_png(tmp_path / "images" / "a.png", np.zeros((H, W, 3), dtype=np.uint8))
    (tmp_path / "annotations").mkdir()
    coco = load_coco(_write_json(tmp_path / "annotations" / "instances.json", {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "categories": [{"id": 5, "name": "thing"}],
        "annotations": [{"id": k, "image_id": 1, "category_id": 5, "bbox": [8, 5, 10, 10], "segmentation": seg,
                         "iscrowd": 0, "area": 100} for k, seg in enumerate(segmentations, start=1)],
    }))
    assert coco.image_dir == tmp_path / "images" and coco.has_masks
    image, target = CocoDetection(coco)[0]
    assert image.shape == (3, H, W)
    assert target["labels"].tolist() == [1, 1, 1]
    for mask in target["masks"]:
        assert torch.equal(mask, torch.from_numpy(SQUARE))


def test_boxes_only_has_no_masks(tmp_path):
    _write_png(tmp_path / "b.png", np.full((H, W, 3), 255, dtype=np.uint8))
    coco = load_coco(_write_json(tmp_path / "boxes.json", {
        "images": [{"id": 7, "file_name": "b.png", "width": W, "height": H}],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 10, 5]},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 4, 4], "segmentation": []},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 5, 0.5, 8]},  # degenerate: left out
            {"id": 4, "image_id": 7, "category_id": 1, "bbox": [5, 5, 3, 3], "iscrowd": 1},  # crowd: left out
            {"id": 5, "image_id": 7, "category_id": 3, "bbox": [25, 15, 10, 10]},  # clipped to the image
        ],
    }))
    assert coco.image_dir == tmp_path  # no sibling images/: the json's own folder
    assert not coco.has_masks
    assert coco.class_names == ["person", "car"]
    image, target = CocoDetection(coco)[0]
    assert "masks" not in target
    assert torch.all(image == 1.0)
    assert target["labels"].tolist() == [2, 1, 2]
    assert target["boxes"].tolist() == [[1, 2, 11, 7], [0, 0, 4, 4], [25, 15, 30, 20]]

    batch = collate_fn([CocoDetection(coco)[0], CocoDetection(coco)[0]])
    assert isinstance(batch, tuple) and len(batch) == 2 and len(batch[0]) == 2


# ---------------------------------------------------------------------------------------------- malformed json


def _valid() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 8},
                   {"id": 2, "file_name": "b.png", "width": 10, "height": 8}],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2],
             "segmentation": [[1, 1, 3, 1, 3, 3]]},
            {"id": 11, "image_id": 2, "category_id": 3, "bbox": [1, 1, 2, 2],
             "segmentation": {"size": [8, 10], "counts": [11, 2, 67]}},
        ],
    }


def _set(path):
    """A mutation that sets (or, given _DELETE, deletes) a field at a path like ("annotations", 1, "bbox")."""
    def mutate(data, value):
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return mutate


_DELETE = object()

MALFORMED = [
    ("bbox_3", ("annotations", 1, "bbox"), [1, 2, 3],
     ["annotations[1] (id 11)", "'bbox' must be 4 numbers [x, y, w, h] with w, h >= 0, got [1, 2, 3]"]),
    ("bbox_negative", ("annotations", 0, "bbox"), [1, 2, -3, 4], ["annotations[0] (id 10)", "'bbox'", "-3"]),
    ("bbox_string", ("annotations", 0, "bbox"), "1 2 3 4", ["annotations[0] (id 10)", "'bbox'"]),
    ("image_width", ("images", 1, "width"), _DELETE, ["images[1] (id 2): missing field 'width'"]),
    ("image_height_zero", ("images", 0, "height"), 0, ["images[0] (id 1)", "'height'"]),
    ("category_id", ("annotations", 1, "category_id"), 99,
     ["annotations[1] (id 11): 'category_id' 99 is not in categories"]),
    ("image_id", ("annotations", 0, "image_id"), 1234, ["annotations[0] (id 10): 'image_id' 1234 is not in images"]),
    ("dup_image", ("images", 1, "id"), 1, ["images[1] (id 1)", "duplicate image 'id' 1", "images[0]"]),
    ("dup_category", ("categories", 1, "id"), 1, ["categories[1] (id 1)", "duplicate category 'id' 1"]),
    ("dup_annotation", ("annotations", 1, "id"), 10, ["annotations[1] (id 10)", "duplicate annotation 'id' 10"]),
    ("ann_no_id", ("annotations", 1, "id"), _DELETE, ["annotations[1]: missing field 'id'"]),
    ("no_images", ("images",), _DELETE, ["missing top-level key 'images'"]),
    ("no_categories", ("categories",), _DELETE, ["missing top-level key 'categories'"]),
    ("polygon_short", ("annotations", 0, "segmentation"), [[1, 1, 3, 1]],
     ["annotations[0] (id 10)", "'segmentation' polygon 0", "got 4"]),
    ("polygon_odd", ("annotations", 0, "segmentation"), [[1, 1, 3, 1, 3, 3], [1, 1, 3, 1, 3, 3, 4]],
     ["annotations[0] (id 10)", "'segmentation' polygon 1", "even", "got 7"]),
    ("polygon_flat", ("annotations", 0, "segmentation"), [1, 1, 3, 1, 3, 3],
     ["annotations[0] (id 10)", "'segmentation' polygon 0"]),
    ("rle_no_size", ("annotations", 1, "segmentation", "size"), _DELETE,
     ["annotations[1] (id 11)", "'segmentation' RLE is missing 'size'"]),
    ("rle_no_counts", ("annotations", 1, "segmentation", "counts"), _DELETE,
     ["annotations[1] (id 11)", "'segmentation' RLE is missing 'counts'"]),
    ("rle_size", ("annotations", 1, "segmentation", "size"), [10, 8],
     ["annotations[1] (id 11)", "'size' [10, 8]", "[height, width] [8, 10]"]),
    ("rle_counts_sum", ("annotations", 1, "segmentation", "counts"), [11, 2, 60],
     ["annotations[1] (id 11)", "'counts'", "80"]),
    ("iscrowd", ("annotations", 0, "iscrowd"), 2, ["annotations[0] (id 10)", "'iscrowd'"]),
]


def test_valid_base_loads(tmp_path):
    coco = load_coco(_write_json(tmp_path / "ok.json", _valid()))
    assert coco.has_masks and coco.label_of == {1: 1, 3: 2}


@pytest.mark.parametrize("path, value, expected", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_json_names_field_and_record(tmp_path, path, value, expected):
    data = copy.deepcopy(_valid())
    _set(path)(data, value)
    with pytest.raises(CocoFormatError) as error:
        load_coco(_write_json(tmp_path / "bad.json", data))
    for text in expected:
        assert text in str(error.value)


def test_json_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(CocoFormatError, match="broken.json"):
        load_coco(path)


# ------------------------------------------------------------------------------------------------- PennFudan


def test_pennfudan_conversion(pennfudan):
    out, coco = pennfudan
    assert len(coco.images) == 170
    assert coco.class_names == ["person"] and coco.has_masks
    names = [img["file_name"] for img in coco.images.values()]
    assert list(coco.images) == list(range(1, 171)) and names == sorted(names)
    assert all(coco.image_path(i).is_file() for i in coco.images)

    image_id = 7  # FudanPed00007: three pedestrians
    info = coco.images[image_id]
    instance_ids = np.asarray(Image.open(PENNFUDAN / "PedMasks" / info["file_name"].replace(".png", "_mask.png")))
    present = [v for v in np.unique(instance_ids) if v != 0]
    anns = coco.annotations_by_image[image_id]
    assert len(anns) == len(present) > 1
    for ann, instance in zip(anns, present):
        assert isinstance(ann["segmentation"]["counts"], str)
        expected = (instance_ids == instance).astype(np.uint8)
        assert np.array_equal(annotation_mask(ann, info["height"], info["width"]), expected)
        x1, y1, x2, y2 = _mask_box(expected)
        assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
        assert ann["area"] == expected.sum() and ann["iscrowd"] == 0

    _, target = CocoDetection(coco, [image_id])[0]
    assert [_mask_box(m) for m in target["masks"]] == target["boxes"].tolist()


def test_pennfudan_conversion_is_deterministic(pennfudan, tmp_path):
    out, _ = pennfudan
    root = tmp_path / "small"
    for sub in ("PNGImages", "PedMasks"):
        (root / sub).mkdir(parents=True)
    for stem in ("FudanPed00007", "PennPed00010"):  # a subset, linked, to keep the test fast
        (root / "PNGImages" / f"{stem}.png").symlink_to(PENNFUDAN / "PNGImages" / f"{stem}.png")
        (root / "PedMasks" / f"{stem}_mask.png").symlink_to(PENNFUDAN / "PedMasks" / f"{stem}_mask.png")
    first = pennfudan_to_coco(root, tmp_path / "1.json").read_bytes()
    assert first == pennfudan_to_coco(root, tmp_path / "2.json").read_bytes()
    full = json.loads(out.read_text())
    small = json.loads(first)
    full_by_name = {img["file_name"]: img["id"] for img in full["images"]}
    for img in small["images"]:
        ours = [a["segmentation"] for a in small["annotations"] if a["image_id"] == img["id"]]
        theirs = [a["segmentation"] for a in full["annotations"] if a["image_id"] == full_by_name[img["file_name"]]]
        assert ours == theirs and ours


# ---------------------------------------------------------------------------------------------------- flips


def test_horizontal_flip_keeps_boxes_on_masks(tmp_path):
    # An asymmetric L-shaped red object on black: after a flip the box must follow the mask and the pixels.
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[2:12, 1:5] = 1
    mask[9:12, 1:13] = 1
    pixels = np.zeros((H, W, 3), dtype=np.uint8)
    pixels[mask == 1] = (255, 0, 0)
    _write_png(tmp_path / "l.png", pixels)
    rle = mask_utils.encode(np.asfortranarray(mask))["counts"].decode("ascii")
    coco = load_coco(_write_json(tmp_path / "l.json", {
        "images": [{"id": 1, "file_name": "l.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "ell"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 12, 10],
                         "segmentation": {"size": [H, W], "counts": rle}}],
    }))
    plain_image, plain = CocoDetection(coco)[0]
    assert plain["boxes"].tolist() == [[1, 2, 13, 12]]

    dataset = CocoDetection(coco, train=True)
    flips = 0
    torch.manual_seed(0)
    for _ in range(24):
        image, target = dataset[0]
        flipped = not torch.equal(image, plain_image)
        flips += flipped
        if flipped:
            assert torch.equal(image, plain_image.flip(-1))
            assert target["boxes"].tolist() == [[W - 13, 2, W - 1, 12]]
        assert _mask_box(target["masks"][0]) == target["boxes"][0].tolist()
        red = image[0] * (1 - image[1])  # 1 where red
        assert torch.equal(red.round().to(torch.uint8), target["masks"][0])
    assert 0 < flips < 24


def test_horizontal_flip_on_pennfudan(pennfudan):
    _, coco = pennfudan
    dataset = CocoDetection(coco, [7], train=True)
    seen = set()
    torch.manual_seed(1)
    for _ in range(12):
        _, target = dataset[0]
        seen.add(target["boxes"][0, 0].item())
        assert [_mask_box(m) for m in target["masks"]] == target["boxes"].tolist()
    assert len(seen) == 2  # both flipped and unflipped draws happened
