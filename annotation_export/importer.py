"""Import the labelling team's annotations (COCO json, CVAT xml, or a CVAT export zip) as ground truth in fdb.

Storage (`labels` collection): one document per (image, label version):
`{_id, image_id, batch_id, label_version, annotations: [{category_id, category_name, bbox [x,y,w,h],
segmentation (polygons, or a COCO RLE), area, iscrowd, attributes}], source, source_sha256, created_at}`. One document per image
keeps an image's labels together (what training reads) and makes a version a single write per image. Every import
is a new version (1, 2, ... per batch); earlier versions are kept, so a relabel can be compared or rolled back.

Why validate everything before writing: a file with one bad record must not leave half a version in fdb. All
problems are collected and reported together, each naming its record.
"""

from __future__ import annotations

import io
import json
import math
import os
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fdb import FeatureDB
from fdb import exports as export_store
from fdb import images as image_store
from fdb import labels as label_store
from records.hashing import sha256_hex

BOX_TOLERANCE = 1.0  # pixels: CVAT rounds coordinates, so a box may poke a pixel out


class LabelImportError(ValueError):
    """The file was refused; `problems` lists every record at fault. Nothing was written."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:50]) + (f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else "")
        super().__init__(f"{source}: {len(problems)} problem(s), nothing imported:\n  {shown}")


@dataclass
class ImportReport:
    batch_id: str
    label_version: int
    images: int
    annotations: int
    unlabelled: list[str] = field(default_factory=list)  # batch files absent from the labelled file
    unchanged: bool = False  # a pull that found nothing new: `label_version` is the existing one, nothing written


def _parse_coco(data: bytes, source: str) -> list[dict]:
    """-> [{file_name, width, height, annotations: [{where, category, bbox, segmentation, attributes}]}]"""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelImportError(source, [f"not valid JSON: {exc}"]) from None
    except RecursionError:
        raise LabelImportError(source, ["not a COCO file: nested too deeply"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise LabelImportError(source, ["not a COCO file: no 'images' list"])
    cats = {c.get("id"): c.get("name") for c in doc.get("categories") or [] if isinstance(c, dict)}
    images, by_id = [], {}
    for im in doc["images"]:
        rec = {"file_name": im.get("file_name"), "width": im.get("width"), "height": im.get("height"),
               "annotations": []}
        images.append(rec)
        by_id[im.get("id")] = rec
    problems = []
    for i, ann in enumerate(doc.get("annotations") or []):
        where = f"annotation id {ann.get('id')} (#{i})"
        rec = by_id.get(ann.get("image_id"))
        if rec is None:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} is not in the file's images")
            continue
        seg = ann.get("segmentation")
        rec["annotations"].append({
            "where": f"{where} on {rec['file_name']}",
            "category": cats.get(ann.get("category_id"), f"<category id {ann.get('category_id')!r}>"),
            # Polygons (what CVAT returns) or an RLE mask (what other COCO tools write): both are kept.
            "bbox": ann.get("bbox"), "segmentation": seg if isinstance(seg, (list, dict)) else [],
            "iscrowd": int(ann.get("iscrowd", 0) or 0), "attributes": ann.get("attributes") or {}})
    if problems:
        raise LabelImportError(source, problems)
    return images


def _parse_cvat(data: bytes, source: str) -> list[dict]:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise LabelImportError(source, [f"not valid XML: {exc}"]) from None
    if root.tag != "annotations":
        raise LabelImportError(source, [f"not a CVAT for images file: root element <{root.tag}>"])
    images = []
    for im in root.iter("image"):
        rec = {"file_name": im.get("name"), "width": _int(im.get("width")), "height": _int(im.get("height")),
               "annotations": []}
        images.append(rec)
        for k, shape in enumerate(im):
            where = f"<{shape.tag}> #{k} on {rec['file_name']}"
            attrs = {a.get("name"): a.text for a in shape.findall("attribute")}
            try:
                if shape.tag == "box":
                    x0, y0, x1, y1 = (float(shape.get(a)) for a in ("xtl", "ytl", "xbr", "ybr"))
                    bbox, seg = [x0, y0, x1 - x0, y1 - y0], []
                elif shape.tag == "polygon":
                    pts = [float(v) for p in shape.get("points", "").split(";") for v in p.split(",")]
                    xs, ys = pts[0::2], pts[1::2]
                    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                    seg = [pts]
                else:
                    continue  # points, polylines, tags: not instance labels
            except (TypeError, ValueError):
                rec["annotations"].append({"where": where, "category": shape.get("label"), "bbox": None,
                                           "segmentation": [], "attributes": attrs, "iscrowd": 0})
                continue
            rec["annotations"].append({"where": where, "category": shape.get("label"), "bbox": bbox,
                                       "segmentation": seg, "attributes": attrs, "iscrowd": 0,
                                       "group": shape.get("group_id")})
    return _merge_cvat_groups(images)


def _merge_cvat_groups(images: list[dict]) -> list[dict]:
    """A CVAT box and the polygons sharing its group id (and label) are one object, as in COCO: one annotation
    whose bbox is the box's (or the polygons' extent when there is no box) and whose segmentation is the
    polygons."""
    for rec in images:
        merged, groups = [], {}
        for ann in rec["annotations"]:
            g = ann.pop("group", None)
            if g in (None, "", "0"):
                merged.append(ann)
                continue
            key = (g, ann["category"])
            first = groups.get(key)
            if first is None:
                groups[key] = ann
                ann["_has_box"] = not ann["segmentation"]
                merged.append(ann)
                continue
            first["segmentation"] = first["segmentation"] + ann["segmentation"]
            if not ann["segmentation"]:  # the group's box
                first["bbox"], first["_has_box"] = ann["bbox"], True
                first["attributes"] = {**ann["attributes"], **first["attributes"]}
            elif not first["_has_box"] and first["bbox"] is not None and ann["bbox"] is not None:
                x0, y0 = min(first["bbox"][0], ann["bbox"][0]), min(first["bbox"][1], ann["bbox"][1])
                x1 = max(first["bbox"][0] + first["bbox"][2], ann["bbox"][0] + ann["bbox"][2])
                y1 = max(first["bbox"][1] + first["bbox"][3], ann["bbox"][1] + ann["bbox"][3])
                first["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        for ann in merged:
            ann.pop("_has_box", None)
        rec["annotations"] = merged
    return images


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def read_label_file(path: str | Path) -> tuple[list[dict], bytes]:
    """Parse a COCO json, a CVAT xml, or a zip holding one of them; returns the records and the raw bytes."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise LabelImportError(source, ["file not found"])
    data = path.read_bytes()
    if not data.strip():
        raise LabelImportError(source, ["empty file"])
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = sorted(zf.namelist())
            xmls = [n for n in names if n.endswith("annotations.xml")]
            jsons = [n for n in names if n.endswith(".json") and "annotations/" in n]
            if xmls:
                records = _parse_cvat(zf.read(xmls[0]), f"{source}:{xmls[0]}")
            elif jsons:
                records = _parse_coco(zf.read(jsons[0]), f"{source}:{jsons[0]}")
            else:
                raise LabelImportError(source, ["zip holds no annotations.xml nor annotations/*.json"])
    elif data.lstrip().startswith(b"<"):
        records = _parse_cvat(data, source)
    else:
        records = _parse_coco(data, source)
    if not records:
        raise LabelImportError(source, ["empty file: no images"])
    return records, data


def _check_box(where: str, bbox, width: int, height: int) -> str | None:
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        # NaN passes every range check below (NaN <= 0 is False): a non-finite number is refused here.
        return f"{where}: bbox {bbox!r} is not [x, y, w, h] finite numbers"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"{where}: bbox {list(bbox)} has no area"
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        return f"{where}: bbox {list(bbox)} lies outside the {width}x{height} image"
    return None


def import_labels(fdb: FeatureDB, path: str | Path, batch_id: str) -> ImportReport:
    """Validate the labelled file against the batch, then store it as a new label version for its images,
    mark them labelled and close the batch (status "labelled")."""
    export = exported_batch(fdb, str(path), batch_id)
    records, data = read_label_file(path)
    return import_records(fdb, export, records, data, str(path))


def import_records(fdb: FeatureDB, export: dict, records: list[dict], data: bytes, source: str) -> ImportReport:
    """Validate parsed label records (as `_parse_coco` makes them) against the batch `export` describes, then
    store them as its next label version in one durable, transactional write. `data` is what the records were
    read from (its sha256 is kept with the version), `source` where (a path, or a server's URL: never a token).
    A label file and a pull from an annotation server (`annotation_export.labelstudio`) both come through here."""
    batch_id = export["_id"]
    batch_images = {im["file_name"]: im for im in export.get("images", [])}
    category_of = _category_ids(export)
    problems, seen = _problems(records, batch_images, category_of, batch_id)
    if problems:
        raise LabelImportError(source, problems)

    version = (label_store.latest_version(fdb, batch_id) or 0) + 1
    digest = sha256_hex(data)
    labelled, n_ann = _labelled_images(records, batch_images, category_of)
    with fdb.transaction() as session:  # one transaction on a replica set; in order, committed last, elsewhere
        label_store.write_version(fdb, batch_id, version, labelled, source=source, source_sha256=digest,
                                  session=session)
        image_store.mark_label_version(fdb, [im["image_id"] for im in labelled], version, session=session)
        export_store.mark_labelled(fdb, batch_id, version, session=session)
    unlabelled = sorted(set(batch_images) - seen)
    return ImportReport(batch_id, version, len(labelled), n_ann, unlabelled)


def exported_batch(fdb: FeatureDB, source: str, batch_id: str) -> dict:
    """The export record of `batch_id`; a batch fdb does not hold, or one not exported yet, is refused (the
    refusal names `source`, what the labels were to come from)."""
    export = export_store.get(fdb, batch_id)
    if export is None:
        raise LabelImportError(source, [f"no export batch {batch_id!r} in fdb"])
    if export.get("status") not in ("done", "labelled"):
        raise LabelImportError(source, [f"batch {batch_id} is {export.get('status')!r}, not exported"])
    return export


def _category_ids(export: dict) -> dict[str, int]:
    """Category name -> project category id, for the categories the batch was exported with."""
    # Export names -> project category ids (exports shift 0-based ids; names map back unambiguously).
    inverse = {v: int(k) for k, v in (export.get("category_map") or {}).items()}
    return {c["name"]: inverse.get(c["id"], c["id"]) for c in export.get("categories", [])}


def _problems(records: list[dict], batch_images: dict[str, dict], category_of: dict[str, int],
              batch_id: str) -> tuple[list[str], set[str]]:
    """(every problem of the labelled file, each naming its record; the batch file names it labels)."""
    problems: list[str] = []
    seen: set[str] = set()
    for rec in records:
        name = rec["file_name"]
        im = batch_images.get(name)
        if im is None:
            problems.append(f"image {name!r}: not in batch {batch_id}")
            continue
        if name in seen:
            problems.append(f"image {name!r}: listed twice")
        seen.add(name)
        for ann in rec["annotations"]:
            problems += _annotation_problems(ann, im, category_of)
    return problems, seen


def _annotation_problems(ann: dict, im: dict, category_of: dict[str, int]) -> list[str]:
    """What is wrong with one annotation on its batch image: its category, its box, its mask (RLE or polygons)."""
    problems = []
    if ann["category"] not in category_of:
        problems.append(f"{ann['where']}: unknown category {ann['category']!r} "
                        f"(known: {sorted(category_of)})")
    why = _check_box(ann["where"], ann["bbox"], im["width"], im["height"])
    if why:
        problems.append(why)
    if isinstance(ann["segmentation"], dict):
        size = ann["segmentation"].get("size")
        if size != [im["height"], im["width"]] or "counts" not in ann["segmentation"]:
            problems.append(f"{ann['where']}: RLE mask of size {size!r} on a "
                            f"{im['width']}x{im['height']} image (size is [height, width])")
        return problems
    for poly in ann["segmentation"]:
        xs, ys = poly[0::2], poly[1::2]
        if len(poly) < 6 or len(xs) != len(ys):
            problems.append(f"{ann['where']}: polygon with {len(poly)} coordinates")
        elif (min(xs) < -BOX_TOLERANCE or min(ys) < -BOX_TOLERANCE
              or max(xs) > im["width"] + BOX_TOLERANCE or max(ys) > im["height"] + BOX_TOLERANCE):
            problems.append(f"{ann['where']}: polygon lies outside the {im['width']}x{im['height']} image")
    return problems


def _labelled_images(records: list[dict], batch_images: dict[str, dict],
                     category_of: dict[str, int]) -> tuple[list[dict], int]:
    """(the label documents of the file's images, by file name; how many annotations they hold), as
    `label_store.write_version` takes them."""
    labelled, n_ann = [], 0
    for rec in sorted(records, key=lambda r: r["file_name"]):
        im = batch_images[rec["file_name"]]
        anns = []
        for ann in rec["annotations"]:
            x, y, w, h = ann["bbox"]
            anns.append({"category_id": category_of[ann["category"]], "category_name": ann["category"],
                         "bbox": [float(x), float(y), float(w), float(h)], "segmentation": ann["segmentation"],
                         "area": float(w * h), "iscrowd": ann.get("iscrowd", 0),
                         "attributes": {str(k): v for k, v in (ann["attributes"] or {}).items()}})
        n_ann += len(anns)
        labelled.append({"image_id": im["image_id"], "file_name": rec["file_name"], "annotations": anns})
    return labelled, n_ann


def labels_as_coco(fdb: FeatureDB, batch_id: str, image_dir: str | Path,
                   label_version: int | None = None) -> tuple[list[dict], list[dict]]:
    """The labels of a batch (its newest version by default) as COCO images and annotations, with file names
    relative to `image_dir`, ready to be merged into a training set."""
    if label_version is None:
        label_version = label_store.latest_version(fdb, batch_id)
        if label_version is None:
            raise LookupError(f"no labels imported for batch {batch_id}")
    docs = label_store.read_version(fdb, batch_id, label_version)
    image_docs = image_store.by_id(fdb, [d["image_id"] for d in docs])
    images, annotations = [], []
    for n, doc in enumerate(docs, start=1):
        image = image_docs[doc["image_id"]]
        images.append({"id": n, "file_name": os.path.relpath(image["uri"], image_dir), "width": image["width"],
                       "height": image["height"]})
        for ann in doc["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": ann["category_id"],
                                "bbox": ann["bbox"], "segmentation": ann.get("segmentation") or [],
                                "area": ann.get("area", ann["bbox"][2] * ann["bbox"][3]),
                                "iscrowd": ann.get("iscrowd", 0)})
    return images, annotations
