"""COCO-format instance datasets for training and evaluating torchvision's Mask R-CNN.

`load_coco` reads and validates a COCO json once, up front, so that a broken export fails with a message that
names the field and the record (``annotations[12] (id 345): 'bbox' must be ...``) instead of a shape error deep
inside a training step hours later. `CocoDetection` then turns a validated `CocoSet` into the (image, target)
pairs that `torchvision.models.detection.maskrcnn_resnet50_fpn` expects, in the style of torchvision's
``references/detection``: crowd regions and degenerate boxes are left out of training targets, images stay at
their original size (the model's own transform resizes them), and labels are contiguous 1..K with 0 kept for
background, because COCO category ids need not be contiguous (COCO itself uses 1..90 with gaps for 80 classes).

`pennfudan_to_coco` converts the PennFudanPed pedestrian dataset (instance-id masks) into the same format, so
every dataset reaches the model through one loader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image

# Records are printed as e.g. "annotations[12] (id 345)"; fields as 'bbox'.
REQUIRED_FIELDS = {
    "images": ("id", "file_name", "width", "height"),
    "categories": ("id", "name"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
}


class CocoFormatError(ValueError):
    """A COCO json that does not follow the format; the message names the field and the record."""


def _is_number(x: Any) -> bool:
    # bool is an int subclass in Python, but True is never a meaningful coordinate or id.
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _where(key: str, index: int, record: Any) -> str:
    if isinstance(record, dict) and "id" in record:
        return f"{key}[{index}] (id {record['id']!r})"
    return f"{key}[{index}]"


def _check_record(key: str, index: int, record: Any) -> str:
    """Check that a record is an object with its required fields; return how to name it in errors."""
    where = _where(key, index, record)
    if not isinstance(record, dict):
        raise CocoFormatError(f"{where}: must be an object, got {type(record).__name__}")
    for name in REQUIRED_FIELDS[key]:
        if name not in record:
            raise CocoFormatError(f"{where}: missing field {name!r}")
    if not _is_int(record["id"]):
        raise CocoFormatError(f"{where}: 'id' must be an integer, got {record['id']!r}")
    return where


def _check_segmentation(where: str, segmentation: Any, height: int, width: int) -> None:
    """Polygons: a list of flat [x1, y1, x2, y2, ...] lists; RLE: {'size': [h, w], 'counts': list or str}.

    pycocotools guesses the kind from the shape of the data (a 4-number polygon is taken for a box), so a
    malformed segmentation would silently become a wrong mask rather than an error; hence the strict checks.
    """
    if isinstance(segmentation, list):
        for k, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
                raise CocoFormatError(f"{where}: 'segmentation' polygon {k} must be a list of numbers "
                                      f"[x1, y1, x2, y2, ...], got {polygon!r:.80}")
            if len(polygon) < 6 or len(polygon) % 2:
                raise CocoFormatError(f"{where}: 'segmentation' polygon {k} must have an even number of "
                                      f"coordinates, at least 6 (3 points), got {len(polygon)}")
        return
    if not isinstance(segmentation, dict):
        raise CocoFormatError(f"{where}: 'segmentation' must be a list of polygons or an RLE object, "
                              f"got {type(segmentation).__name__}")
    for name in ("size", "counts"):
        if name not in segmentation:
            raise CocoFormatError(f"{where}: 'segmentation' RLE is missing {name!r}")
    size, counts = segmentation["size"], segmentation["counts"]
    if not isinstance(size, list) or size != [height, width]:
        raise CocoFormatError(f"{where}: 'segmentation' RLE 'size' {size!r} does not match the image's "
                              f"[height, width] [{height}, {width}]")
    if isinstance(counts, list):
        if not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != height * width:
            raise CocoFormatError(f"{where}: 'segmentation' uncompressed RLE 'counts' must be non-negative "
                                  f"integers summing to height * width = {height * width}")
    elif not isinstance(counts, (str, bytes)):
        raise CocoFormatError(f"{where}: 'segmentation' RLE 'counts' must be a list (uncompressed) or a string "
                              f"(compressed), got {type(counts).__name__}")


@dataclass
class CocoSet:
    """A validated COCO instance dataset, indexed for lookups by image."""

    path: Path
    image_dir: Path
    images: dict[int, dict]  # image id -> image record, in file order
    annotations_by_image: dict[int, list[dict]]  # image id -> its annotations (every image has an entry)
    categories: list[dict]  # sorted by id
    label_of: dict[int, int] = field(default_factory=dict)  # COCO category id -> contiguous label 1..K
    category_of: dict[int, int] = field(default_factory=dict)  # contiguous label -> COCO category id
    has_masks: bool = False  # any non-crowd annotation has a segmentation: train the mask head

    @property
    def class_names(self) -> list[str]:
        """Category names in label order: class_names[0] is label 1 (label 0 is background)."""
        return [c["name"] for c in self.categories]

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.images[image_id]["file_name"]

    def __len__(self) -> int:
        return len(self.images)


def load_coco(json_path: str | Path, image_dir: str | Path | None = None) -> CocoSet:
    """Read and validate a COCO instances json.

    `image_dir` is where the images' `file_name`s resolve. By default it is the sibling `images/` of the json's
    folder when that exists (the usual ``annotations/instances.json`` + ``images/`` layout), else the json's
    folder itself.
    """
    path = Path(json_path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CocoFormatError(f"{path}: not valid json: {e}") from e
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: top level must be an object with 'images', 'annotations' and "
                              f"'categories', got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise CocoFormatError(f"{path}: missing top-level key {key!r}")
        if not isinstance(data[key], list):
            raise CocoFormatError(f"{path}: top-level {key!r} must be a list, got {type(data[key]).__name__}")

    images: dict[int, dict] = {}
    first_at: dict[int, int] = {}
    for i, img in enumerate(data["images"]):
        where = _check_record("images", i, img)
        if img["id"] in images:
            raise CocoFormatError(f"{where}: duplicate image 'id' {img['id']} "
                                  f"(first at images[{first_at[img['id']]}])")
        for name in ("width", "height"):
            if not _is_int(img[name]) or img[name] <= 0:
                raise CocoFormatError(f"{where}: {name!r} must be a positive integer, got {img[name]!r}")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise CocoFormatError(f"{where}: 'file_name' must be a non-empty string, got {img['file_name']!r}")
        images[img["id"]] = img
        first_at[img["id"]] = i

    categories: dict[int, dict] = {}
    first_at = {}
    for i, cat in enumerate(data["categories"]):
        where = _check_record("categories", i, cat)
        if cat["id"] in categories:
            raise CocoFormatError(f"{where}: duplicate category 'id' {cat['id']} "
                                  f"(first at categories[{first_at[cat['id']]}])")
        if not isinstance(cat["name"], str):
            raise CocoFormatError(f"{where}: 'name' must be a string, got {cat['name']!r}")
        categories[cat["id"]] = cat
        first_at[cat["id"]] = i

    annotations_by_image: dict[int, list[dict]] = {image_id: [] for image_id in images}
    seen: dict[int, int] = {}
    has_masks = False
    for i, ann in enumerate(data["annotations"]):
        where = _check_record("annotations", i, ann)
        if ann["id"] in seen:
            raise CocoFormatError(f"{where}: duplicate annotation 'id' {ann['id']} "
                                  f"(first at annotations[{seen[ann['id']]}])")
        seen[ann["id"]] = i
        if ann["image_id"] not in images:
            raise CocoFormatError(f"{where}: 'image_id' {ann['image_id']!r} is not in images")
        if ann["category_id"] not in categories:
            raise CocoFormatError(f"{where}: 'category_id' {ann['category_id']!r} is not in categories")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)
                and bbox[2] >= 0 and bbox[3] >= 0):
            raise CocoFormatError(f"{where}: 'bbox' must be 4 numbers [x, y, w, h] with w, h >= 0, got {bbox!r}")
        iscrowd = ann.get("iscrowd", 0)
        if not _is_int(iscrowd) or iscrowd not in (0, 1):
            raise CocoFormatError(f"{where}: 'iscrowd' must be 0 or 1, got {iscrowd!r}")
        if "area" in ann and (not _is_number(ann["area"]) or ann["area"] < 0):
            raise CocoFormatError(f"{where}: 'area' must be a non-negative number, got {ann['area']!r}")
        segmentation = ann.get("segmentation")
        if segmentation:  # None, [] and {} all mean "box only"
            img = images[ann["image_id"]]
            _check_segmentation(where, segmentation, img["height"], img["width"])
            has_masks = has_masks or not iscrowd
        annotations_by_image[ann["image_id"]].append(ann)

    sorted_categories = sorted(categories.values(), key=lambda c: c["id"])
    label_of = {c["id"]: label for label, c in enumerate(sorted_categories, start=1)}
    if image_dir is None:
        sibling = path.parent.parent / "images"
        image_dir = sibling if sibling.is_dir() else path.parent
    return CocoSet(path=path, image_dir=Path(image_dir), images=images, annotations_by_image=annotations_by_image,
                   categories=sorted_categories, label_of=label_of,
                   category_of={label: cat_id for cat_id, label in label_of.items()}, has_masks=has_masks)


def annotation_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """The annotation's segmentation as an (H, W) uint8 array of 0/1; all zeros when it has none.

    Handles polygons (a list of flat coordinate lists, merged into one mask), uncompressed RLE (`counts` a list,
    as COCO stores crowd regions) and compressed RLE (`counts` a str or bytes).
    """
    segmentation = ann.get("segmentation")
    if not segmentation:
        return np.zeros((height, width), dtype=np.uint8)
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {"size": list(segmentation["size"]),
               "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(np.uint8)


def load_image(path) -> torch.Tensor:
    """An image (a path or a binary file object) as the detector takes it: float32 (3, H, W) RGB in [0, 1]."""
    with Image.open(path) as pil:
        rgb = np.array(pil.convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)


class CocoDetection(torch.utils.data.Dataset):
    """(image, target) pairs for torchvision's Mask R-CNN / Faster R-CNN.

    image: float32 (3, H, W) RGB in [0, 1] at the original size. target: `boxes` float32 (N, 4) xyxy in pixels,
    `labels` int64 (contiguous, see `CocoSet.label_of`), `masks` uint8 (N, H, W) only when the set has masks,
    `image_id` int (the COCO id, for evaluation), `area` float32 (N,) and `iscrowd` int64 (N,), all zeros since
    crowd annotations are left out (they mark regions, not instances; COCO evaluation reads them from the json).
    Boxes are clipped to the image and those under a pixel wide or high are left out, as torchvision's
    references do, since they give the box regression nothing to learn and NaN losses at worst.

    With `train=True`, image, boxes and masks are flipped left-right with probability 0.5 (drawn from torch's
    generator, so `torch.manual_seed` and the DataLoader's worker seeding apply).
    """

    def __init__(self, coco: CocoSet, image_ids: list[int] | None = None, train: bool = False):
        self.coco = coco
        self.image_ids = list(coco.images) if image_ids is None else list(image_ids)
        missing = [i for i in self.image_ids if i not in coco.images]
        if missing:
            raise KeyError(f"image ids not in {coco.path}: {missing[:10]}")
        self.train = train

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.image_ids[i]
        info = self.coco.images[image_id]
        path = self.coco.image_path(image_id)
        image = load_image(path)
        height, width = image.shape[-2:]
        if (width, height) != (info["width"], info["height"]):
            raise CocoFormatError(f"{path}: image is {width}x{height} but the json says "
                                  f"{info['width']}x{info['height']} (image id {image_id})")

        boxes, labels, areas, masks = [], [], [], []
        for ann in self.coco.annotations_by_image[image_id]:
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = ann["bbox"]
            x1, y1 = min(max(x, 0), width), min(max(y, 0), height)
            x2, y2 = min(max(x + w, 0), width), min(max(y + h, 0), height)
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.coco.label_of[ann["category_id"]])
            areas.append(ann.get("area", w * h))
            if self.coco.has_masks:
                mask = annotation_mask(ann, height, width)
                if not ann.get("segmentation"):
                    # A box-only annotation in a set with masks: an empty mask would teach the mask head that
                    # the object has no pixels; the filled box is the least wrong target.
                    mask[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = 1
                masks.append(mask)

        target: dict[str, Any] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": image_id,
            "area": torch.tensor(areas, dtype=torch.float32),
            "iscrowd": torch.zeros(len(boxes), dtype=torch.int64),
        }
        if self.coco.has_masks:
            target["masks"] = (torch.from_numpy(np.stack(masks)) if masks
                               else torch.zeros((0, height, width), dtype=torch.uint8))

        if self.train and torch.rand(1).item() < 0.5:
            image = image.flip(-1)
            boxes = target["boxes"]
            target["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
            if "masks" in target:
                target["masks"] = target["masks"].flip(-1)
        return image, target


def collate_fn(batch):
    """Detection models take lists of differently sized images and targets, so no stacking."""
    return tuple(zip(*batch))


def pennfudan_to_coco(root: str | Path, out_json: str | Path) -> Path:
    """Convert PennFudanPed (``PNGImages/*.png`` + ``PedMasks/*_mask.png``, pixel value = instance id) to COCO.

    One category, person (id 1). Image ids are 1..N in sorted file name order and annotation ids follow the
    instance ids within each image, so the output is the same on every run. Segmentations are compressed RLE
    (exact, unlike polygons traced from the mask); boxes and areas come from the RLE via pycocotools, so they
    agree with what COCO evaluation computes. Load it back with ``load_coco(out_json, image_dir=root / "PNGImages")``.
    """
    root, out_json = Path(root), Path(out_json)
    pngs = sorted((root / "PNGImages").glob("*.png"))
    if not pngs:
        raise FileNotFoundError(f"no PNGImages/*.png under {root}")
    images, annotations = [], []
    for image_id, png in enumerate(pngs, start=1):
        mask_path = root / "PedMasks" / f"{png.stem}_mask.png"
        with Image.open(png) as im:
            width, height = im.size
        with Image.open(mask_path) as m:
            instance_ids = np.asarray(m)
        if instance_ids.shape != (height, width):
            raise ValueError(f"{mask_path}: mask is {instance_ids.shape[::-1]} but the image is {(width, height)}")
        images.append({"id": image_id, "file_name": png.name, "width": width, "height": height})
        for instance in np.unique(instance_ids):
            if instance == 0:
                continue
            rle = mask_utils.encode(np.asfortranarray(instance_ids == instance, dtype=np.uint8))
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            })
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({
        "info": {"description": "PennFudanPed converted by detectors.coco.pennfudan_to_coco"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }))
    return out_json
