"""Annotation files for a labelling batch: "CVAT for images 1.1" XML and COCO 1.0 as CVAT exports it.

Why these two: CVAT imports both into a task as pre-annotations, and datumaro / pycocotools read them, so the
labelling team starts from the model's predictions instead of a blank image.

Everything here is deterministic (sorted keys, fixed float formatting, order by file name then rank, no
timestamps), so exporting the same batch twice gives byte-identical files: a diff between two exports shows only
what really changed.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from records import Detection
from records.hashing import part_digest

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------------------------------------------- names
def _short_hash(text: str, n: int = 8) -> str:
    return part_digest(text, size=16).hex()[:n]


def safe_basename(uri: str) -> str:
    """The last path component of `uri`, reduced to [A-Za-z0-9._-], without leading dots.

    Why: file names end up as paths inside the export and inside CVAT's task; an absolute path, `..` or a
    separator there could write outside the batch folder or be refused by CVAT.
    """
    base = re.split(r"[/\\]", uri.split("?", 1)[0].rstrip("/\\"))[-1]
    base = _UNSAFE.sub("_", base).lstrip(".")
    if not base or base.strip("._-") == "":
        base = "image"
    return base[:150]


def unique_file_names(uris: list[str]) -> dict[str, str]:
    """uri -> a safe file name, unique within the batch (case-insensitively, for case-folding file systems).

    Colliding names all get `-<hash of the uri>` before the suffix, so the name of an image does not depend on
    which other images happen to share its basename first.
    """
    base = {u: safe_basename(u) for u in sorted(set(uris))}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    out: dict[str, str] = {}
    taken: set[str] = set()
    for uri, name in base.items():
        if counts[name.lower()] > 1:
            stem, dot, suffix = name.rpartition(".")
            if not dot:
                stem, suffix = name, ""
            n = 8
            candidate = f"{stem}-{_short_hash(uri, n)}{'.' + suffix if suffix else ''}"
            while candidate.lower() in taken:  # hash prefix clash: lengthen, still stable
                n += 4
                candidate = f"{stem}-{_short_hash(uri, n)}{'.' + suffix if suffix else ''}"
            name = candidate
        taken.add(name.lower())
        out[uri] = name
    return out


# ---------------------------------------------------------------------------------------------------- masks
def mask_polygons(rle: dict, min_area_fraction: float = 0.05, epsilon: float = 0.75) -> list[list[float]]:
    """Polygons [x1, y1, x2, y2, ...] of a COCO RLE mask: its outer contours, largest first, simplified.

    Why only outer contours above a fraction of the largest one: CVAT polygons have no holes, and specks of a
    thresholded mask would each become a shape for the labeller to delete.
    """
    counts = rle["counts"]
    binary = mask_utils.decode({"size": list(rle["size"]),
                                "counts": counts.encode() if isinstance(counts, str) else counts})
    contours, _ = cv2.findContours(np.ascontiguousarray(binary, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    found = []
    for c in contours:
        c = cv2.approxPolyDP(c, epsilon, True).reshape(-1, 2)
        if len(c) < 3:
            continue
        area = float(cv2.contourArea(c.astype(np.float32)))
        if area <= 0:
            continue
        found.append((area, c))
    if not found:
        return []
    largest = max(a for a, _ in found)
    found = [(a, c) for a, c in found if a >= largest * min_area_fraction]
    # Stable order: by area descending, then by first point, so equal-area contours do not swap between runs.
    found.sort(key=lambda ac: (-ac[0], ac[1][0].tolist()))
    return [[float(v) for v in c.reshape(-1)] for _, c in found]


# ---------------------------------------------------------------------------------------------------- batch
@dataclass
class BatchImage:
    """One image of a batch: its fdb id, uri, file name inside the export and size."""

    image_id: str
    uri: str
    file_name: str
    width: int
    height: int
    objects: list["BatchObject"] = field(default_factory=list)


@dataclass
class BatchObject:
    """One predicted object: a box [x, y, w, h], its score, export category id and name, and its polygons."""

    rank: int
    category_id: int
    category_name: str
    box: list[float]
    score: float | None  # None: a label, not a prediction
    polygons: list[list[float]]
    area: float
    source: str = "auto"  # CVAT's shape source: "auto" for a prediction, "manual" for a label someone drew
    attributes: dict[str, str] = field(default_factory=dict)  # extra text attributes (a review batch's tags)


def export_categories(categories: list[dict]) -> tuple[list[dict], dict[int, int]]:
    """Categories with ids from 1, and the map project id -> export id.

    Why: CVAT rejects category id 0; a project whose ids start at 0 is shifted by one (and the map kept, so an
    import maps the labels back). Ids from 1 are kept as they are.
    """
    cats = sorted(({"id": int(c["id"]), "name": str(c["name"])} for c in categories), key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    if len(set(names)) != len(names):
        raise ValueError(f"category names must be unique, got {names}")
    shift = 1 if cats and cats[0]["id"] < 1 else 0
    if cats and cats[0]["id"] + shift < 1:
        raise ValueError(f"category ids must be >= 0, got {cats[0]['id']}")
    mapping = {c["id"]: c["id"] + shift for c in cats}
    return [{"id": mapping[c["id"]], "name": c["name"]} for c in cats], mapping


def build_batch(images: list[dict], detections: list[Detection], categories: list[dict],
                min_score: float) -> tuple[list[BatchImage], list[dict], dict[int, int]]:
    """Join image records (`_id`, `uri`, `width`, `height`) and detections into the batch, in file-name order,
    objects in rank order.

    Returns the batch images, the export categories and the project -> export category id map.
    """
    cats, mapping = export_categories(categories)
    name_of = {c["id"]: c["name"] for c in cats}
    by_name = {c["name"]: c["id"] for c in cats}
    names = unique_file_names([im["uri"] for im in images])
    batch = {str(im["_id"]): BatchImage(str(im["_id"]), im["uri"], names[im["uri"]], int(im["width"]),
                                        int(im["height"])) for im in images}
    for det in sorted(detections, key=lambda d: (str(d.image_id), d.rank)):
        if det.score < min_score or str(det.image_id) not in batch:
            continue
        if det.category_id in mapping:
            cid = mapping[det.category_id]
        elif det.category_name in by_name:
            cid = by_name[det.category_name]
        else:
            raise ValueError(f"detection rank {det.rank} of image {det.image_id}: category "
                             f"{det.category_id!r} ({det.category_name!r}) is not among {cats}")
        polygons = mask_polygons(det.mask) if det.mask else []
        if det.mask:
            m = det.mask
            area = float(mask_utils.area({"size": list(m["size"]), "counts": m["counts"].encode()
                                          if isinstance(m["counts"], str) else m["counts"]}))
        else:
            area = float(det.bbox[2] * det.bbox[3])
        batch[str(det.image_id)].objects.append(BatchObject(
            int(det.rank), cid, name_of[cid], [float(v) for v in det.bbox], float(det.score), polygons, area))
    return sorted(batch.values(), key=lambda b: b.file_name), cats, mapping


def _f(x: float) -> str:
    """Fixed float formatting: two decimals, so the bytes never depend on float repr noise."""
    return f"{x:.2f}"


def _r(x: float, nd: int = 2) -> float:
    v = round(float(x), nd)
    return 0.0 if v == 0 else v  # no "-0.0"


# ---------------------------------------------------------------------------------------------------- CVAT
def cvat_xml(batch: list[BatchImage], categories: list[dict], task_name: str) -> bytes:
    """CVAT for images 1.1 `annotations.xml`: boxes with a `score` attribute, polygons from masks.

    The score attribute is declared in each label's meta (number, 0..1), otherwise CVAT refuses the import;
    objects' extra attributes are declared there too, as text. Box and polygons of one detection share a
    `group_id`, so the labeller sees they are one object. Built with ElementTree (the importer reads it back with
    it) and byte-deterministic: attributes in insertion order, numbers in fixed formats.
    """
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    _texts(task, name=task_name, size=str(len(batch)), mode="annotation")
    labels = ET.SubElement(task, "labels")
    extra = sorted({name for im in batch for obj in im.objects for name in obj.attributes})
    for c in categories:
        label = ET.SubElement(labels, "label")
        _texts(label, name=c["name"], type="any")
        declared = ET.SubElement(label, "attributes")
        _texts(ET.SubElement(declared, "attribute"), name="score", mutable="False", input_type="number",
               default_value="0", values="0\n1\n0.0001")
        for name in extra:
            _texts(ET.SubElement(declared, "attribute"), name=name, mutable="True", input_type="text",
                   default_value="", values="")
    for i, im in enumerate(batch):
        image = ET.SubElement(root, "image", id=str(i), name=im.file_name, width=str(im.width), height=str(im.height))
        for obj in im.objects:
            _cvat_shapes(image, obj)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _texts(parent: ET.Element, **children: str) -> None:
    for tag, text in children.items():
        ET.SubElement(parent, tag).text = text


def _cvat_shapes(image: ET.Element, obj: BatchObject) -> None:
    """A detection's box and its polygons, one group, each carrying the score and the extra attributes."""
    x, y, w, h = obj.box
    shared = {"label": obj.category_name, "source": obj.source, "occluded": "0"}
    attributes = ([("score", f"{obj.score:.4f}")] if obj.score is not None else [])
    attributes += [(k, str(v)) for k, v in sorted(obj.attributes.items())]
    group = str(obj.rank + 1)
    shapes = [ET.SubElement(image, "box", **shared, xtl=_f(x), ytl=_f(y), xbr=_f(x + w), ybr=_f(y + h),
                            z_order="0", group_id=group)]
    for poly in obj.polygons:
        points = ";".join(f"{_f(poly[k])},{_f(poly[k + 1])}" for k in range(0, len(poly), 2))
        shapes.append(ET.SubElement(image, "polygon", **shared, points=points, z_order="0", group_id=group))
    for shape in shapes:
        for name, value in attributes:
            ET.SubElement(shape, "attribute", name=name).text = value


# ---------------------------------------------------------------------------------------------------- COCO
def coco_json(batch: list[BatchImage], categories: list[dict]) -> bytes:
    """COCO 1.0 `instances_default.json` laid out as CVAT exports it (`attributes` holds `occluded` and `score`).

    Image ids are 1..N in file-name order, annotation ids 1..M; a detection without a usable mask keeps its box
    and an empty segmentation.
    """
    images, annotations = [], []
    for i, im in enumerate(batch, start=1):
        images.append({"id": i, "width": im.width, "height": im.height, "file_name": im.file_name, "license": 0,
                       "flickr_url": "", "coco_url": "", "date_captured": 0})
        for obj in im.objects:
            annotations.append({
                "id": len(annotations) + 1, "image_id": i, "category_id": obj.category_id,
                "segmentation": [[_r(v) for v in p] for p in obj.polygons], "area": _r(obj.area),
                "bbox": [_r(v) for v in obj.box], "iscrowd": 0,
                "attributes": {"occluded": False, **({"score": _r(obj.score, 4)} if obj.score is not None else {}),
                               "rank": obj.rank, **obj.attributes}})
    doc = {"licenses": [{"name": "", "id": 0, "url": ""}],
           "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
           "categories": [{"id": c["id"], "name": c["name"], "supercategory": ""} for c in categories],
           "images": images, "annotations": annotations}
    return (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()
