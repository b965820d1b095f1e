"""COCO instance sets as the engine reads them: validated once, indexed by image.

A labelled set crosses every stage (detectors train and evaluate on it, mining types errors against it, the
importer checks labels like it), so it lives on the ground floor, with no torch in it. `load_coco` reads and
validates a COCO json once, up front, so that a broken export fails with a message that names the field and the
record (``annotations[12] (id 345): 'bbox' must be ...``) instead of a shape error deep inside a training step
hours later. Labels are contiguous 1..K with 0 kept for background (`label_of`,
`category_of`), because COCO category ids need not be contiguous (COCO itself uses 1..90 with gaps for 80
classes). `detectors.coco.CocoDetection` turns a `CocoSet` into the model's (image, target) pairs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from records.hashing import sha256_hex

# Records are printed as e.g. "annotations[12] (id 345)"; fields as 'bbox'.
REQUIRED_FIELDS = {
    "images": ("id", "file_name", "width", "height"),
    "categories": ("id", "name"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
}


class CocoFormatError(ValueError):
    """A COCO json that does not follow the format; the message names the field and the record."""


def _is_number(x: Any) -> bool:
    # bool is an int subclass in Python, but True is never a meaningful coordinate or id. NaN and infinities pass
    # every range check (NaN < 0 is False), so they are refused here, where a number enters.
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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
    """Read and validate a COCO instances json; an error names the offending record and field.

    `image_dir` is where the images' `file_name`s resolve. By default it is the sibling `images/` of the json's
    folder when that exists (the usual ``annotations/instances.json`` + ``images/`` layout), else the json's
    folder itself.
    """
    path = Path(json_path)
    return parse_coco(path.read_bytes(), path, image_dir)


def parse_coco(raw: bytes, path: str | Path, image_dir: str | Path | None = None) -> CocoSet:
    """`load_coco` of bytes already read from `path`."""
    path = Path(path)
    data = _read_top_level(raw, path)
    images = _checked_images(data["images"])
    categories = _checked_categories(data["categories"])
    annotations_by_image, has_masks = _checked_annotations(data["annotations"], images, categories)
    sorted_categories = sorted(categories.values(), key=lambda c: c["id"])
    label_of = {c["id"]: label for label, c in enumerate(sorted_categories, start=1)}
    if image_dir is None:
        sibling = path.parent.parent / "images"
        image_dir = sibling if sibling.is_dir() else path.parent
    return CocoSet(path=path, image_dir=Path(image_dir), images=images, annotations_by_image=annotations_by_image,
                   categories=sorted_categories, label_of=label_of,
                   category_of={label: cat_id for cat_id, label in label_of.items()}, has_masks=has_masks)


class LabelledSet:
    """A labelled set read once for a run: the file read (`path`, its newest version), the SHA-256 of its bytes
    (what names it in a night's state) and its COCO set (`coco`, parsed on first use: a night with nothing new
    only hashes it). A plain class, not a dataclass, on purpose: Prefect walks every dataclass and collection
    handed to a task in search of futures, and walking a large COCO set costs ten times reading it (6 s against
    0.6 s for 5,000 images of 10 boxes)."""

    def __init__(self, path: str | Path, image_dir: str | Path | None, raw: bytes):
        self.path, self.image_dir = Path(path), image_dir
        self.sha256 = sha256_hex(raw)
        self._raw: bytes | None = raw
        self._coco: CocoSet | None = None

    @classmethod
    def read(cls, path: str | Path, image_dir: str | Path | None = None) -> "LabelledSet":
        return cls(path, image_dir, Path(path).read_bytes())

    @property
    def coco(self) -> CocoSet:
        if self._coco is None:
            self._coco = parse_coco(self._raw, self.path, self.image_dir)
            self._raw = None  # parsed: the bytes are not needed again
        return self._coco


def _read_top_level(raw: bytes, path: Path) -> dict:
    try:
        data = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as e:
        raise CocoFormatError(f"{path}: not valid json: {e}") from e
    except RecursionError:
        raise CocoFormatError(f"{path}: nested too deeply to be a COCO file") from None
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: top level must be an object with 'images', 'annotations' and "
                              f"'categories', got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise CocoFormatError(f"{path}: missing top-level key {key!r}")
        if not isinstance(data[key], list):
            raise CocoFormatError(f"{path}: top-level {key!r} must be a list, got {type(data[key]).__name__}")
    return data


def _checked_images(records: list) -> dict[int, dict]:
    images: dict[int, dict] = {}
    first_at: dict[int, int] = {}
    for i, img in enumerate(records):
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
    return images


def _checked_categories(records: list) -> dict[int, dict]:
    categories: dict[int, dict] = {}
    first_at: dict[int, int] = {}
    for i, cat in enumerate(records):
        where = _check_record("categories", i, cat)
        if cat["id"] in categories:
            raise CocoFormatError(f"{where}: duplicate category 'id' {cat['id']} "
                                  f"(first at categories[{first_at[cat['id']]}])")
        if not isinstance(cat["name"], str):
            raise CocoFormatError(f"{where}: 'name' must be a string, got {cat['name']!r}")
        categories[cat["id"]] = cat
        first_at[cat["id"]] = i
    return categories


def _checked_annotations(records: list, images: dict[int, dict], categories: dict[int, dict]
                         ) -> tuple[dict[int, list[dict]], bool]:
    """image id -> its annotations (every image has an entry), and whether any non-crowd one has a mask."""
    annotations_by_image: dict[int, list[dict]] = {image_id: [] for image_id in images}
    seen: dict[int, int] = {}
    has_masks = False
    for i, ann in enumerate(records):
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
    return annotations_by_image, has_masks
