"""A labelling batch made and shipped: a selection's images with the model's predictions as CVAT XML + COCO +
manifest + images, written to a folder or to S3 (`export.export_batch` chooses where; `labelstudio` pushes the same
prepared batch to a server).

Layout of a batch (`<target>/<batch_id>/`):

    annotations.xml                          CVAT for images 1.1
    annotations/instances_default.json       COCO 1.0 as CVAT exports it
    images/<file name>                       the images (one copy serves both formats)
    manifest.csv, manifest.json              one row per image: origin and why it was selected
    _DONE                                    written last: a batch without it is incomplete

Why the protocol: a consumer (CVAT import job, a person) must never pick up half a batch. The files are built in
a temporary folder, then moved or uploaded, and `_DONE` comes last. The fdb `exports` record goes
`in_progress` -> `done` only after that, and selection docs get `export_id` only then, so an interrupted export
leaves the images eligible for mining and the batch visibly unfinished; running it again completes it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from annotation_export.config import ExportConfig
from annotation_export.formats import BatchImage, build_batch, coco_json, cvat_xml
from annotation_export.manifest import manifest_csv, manifest_json, rejected_rows
from fdb import FeatureDB
from fdb import detections as detection_store
from fdb import exports as export_store
from fdb import images as image_store
from fdb import models as model_store
from fdb import selections as selection_store
from records import Detection, SelectionInfo
from records.hashing import file_sha256, part_digest
from storage import read_uri
from storage import s3 as s3mod

CVAT_XML = "annotations.xml"
COCO_JSON = "annotations/instances_default.json"
DONE = "_DONE"


class ExportError(RuntimeError):
    pass


class NothingToExport(ExportError):
    """Every image of the selection was rejected (or, with only the accepted ones, none was accepted)."""


@dataclass
class ExportResult:
    batch_id: str
    location: str  # local folder or s3:// prefix of the batch
    files: list[str]  # relative paths, sorted, without the marker
    counts: dict[str, int] = field(default_factory=dict)
    server: dict | None = None  # an annotation server's push: project, tasks added and already there

    @property
    def images(self) -> int:
        return self.counts.get("images", 0)

    def as_doc(self) -> dict:
        """What a night records of its batch: where it went and its counts (not every file name)."""
        return {"batch_id": self.batch_id, "location": self.location, "counts": self.counts}

    @classmethod
    def from_doc(cls, doc: dict) -> "ExportResult":
        counts = doc.get("counts") or {k: v for k, v in doc.items() if k not in ("batch_id", "location")}
        return cls(doc["batch_id"], doc["location"], [], counts)


def batch_id_for(selection_id: str, image_ids: list, model_version: str, min_score: float) -> str:
    """Stable batch id: the same selection, images, model and score threshold always give the same batch.

    The threshold is part of it because it changes the annotation files."""
    return "batch-" + part_digest(selection_id, model_version, repr(float(min_score)), *sorted(map(str, image_ids)),
                                  size=8).hex()


def model_categories(fdb: FeatureDB, model_version: str, detections: list[Detection]) -> list[dict]:
    """The model's categories [{id, name}] from its `models` record (classes + category ids); without one,
    those seen in the detections."""
    try:
        known = model_store.categories(fdb, model_version)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if known:
        return known
    seen = {int(d.category_id): d.category_name or str(d.category_id) for d in detections}
    if not seen:
        raise ExportError(f"model {model_version} has no models doc and no detections to take categories from")
    return [{"id": i, "name": n} for i, n in sorted(seen.items())]


def _pre_annotating_model(fdb: FeatureDB, mined_by: str | None, selected: list) -> str | None:
    """The production model when it has processed every selected image (its predictions are the best guess the
    team can start from), else the model that mined the selection."""
    production = model_store.production_version(fdb)
    if production and production != mined_by:
        uris = [img.uri for img in selected]
        if len(image_store.processed_uris(fdb, uris, production)) == len(set(uris)):
            return production
    return mined_by


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass
class PreparedBatch:
    """A selection made into a batch, before it ships anywhere: the images not rejected with the model's
    predictions, the decisions, and the batch's stable id. A folder, an S3 prefix and an annotation server all
    ship the same prepared batch, so they record the same thing."""

    batch_id: str
    selection_id: str
    model_version: str
    min_score: float
    info: SelectionInfo
    selected: list  # SelectedImage, the images that ship
    rejected: list
    undecided: list  # left out under `only_accepted`
    decisions: dict
    images: list[BatchImage]  # in file-name order, objects in rank order
    categories: list[dict]  # export categories (ids from 1)
    category_map: dict[int, int]  # project id -> export id
    fdb_ids: dict  # str(image id) -> the fdb id

    @property
    def image_ids(self) -> list:
        return [img.image_id for img in self.selected]

    @property
    def counts(self) -> dict[str, int]:
        return {"images": len(self.images), "objects": sum(len(im.objects) for im in self.images),
                "polygons": sum(len(o.polygons) for im in self.images for o in im.objects)}

    def image_records(self) -> list[dict]:
        """The `images` of the batch's export record: what an import checks the labels against."""
        return [{"image_id": self.fdb_ids[im.image_id], "uri": im.uri, "file_name": im.file_name,
                 "width": im.width, "height": im.height} for im in self.images]

    def documents(self, rows: list[dict]) -> dict[str, bytes]:
        """The batch's label files by name (CVAT XML, COCO JSON, the manifest with `rows`)."""
        return _batch_documents(self.batch_id, self.selection_id, self.images, self.categories, rows,
                                self.rejected, self.undecided, self.decisions)


def prepare_batch(fdb: FeatureDB, selection_id: str, config: ExportConfig = ExportConfig(),
                  model_version: str | None = None) -> PreparedBatch:
    """Freeze the selection's decisions and build its batch: the images not rejected (with `only_accepted`, only
    the accepted ones) and the model's predictions with score >= `config.min_score`."""
    min_score = config.min_score
    found = selection_store.read_selection(fdb, selection_id)
    if found is None:
        raise ExportError(f"no selection {selection_id!r} in fdb")
    info, selected = found
    selected, rejected, undecided, decisions = _decided(fdb, selection_id, selected, config)
    image_ids = [img.image_id for img in selected]
    model_version = model_version or _pre_annotating_model(fdb, info.model_version, selected)
    if not model_version:
        raise ExportError(f"selection {selection_id!r} names no model version; pass model_version")
    images = _selected_images(fdb, selection_id, image_ids)
    detections = detection_store.read_detections(fdb, model_version, image_ids, min_score=min_score)
    categories = model_categories(fdb, model_version, detections)
    batch, export_cats, cat_map = build_batch(images, detections, categories, min_score)
    return PreparedBatch(batch_id_for(selection_id, image_ids, model_version, min_score), selection_id,
                         model_version, min_score, info, selected, rejected, undecided, decisions, batch,
                         export_cats, cat_map, {str(i["_id"]): i["_id"] for i in images})


def _decided(fdb: FeatureDB, selection_id: str, selected: list, config: ExportConfig) -> tuple[list, list, list, dict]:
    """(the images to export, the rejected ones, the undecided ones left out under `config.only_accepted`, the
    decisions), the selection's decisions frozen first; a selection with nothing left to export is refused."""
    # The decisions are read after they are frozen: what ships is what a person last decided.
    selection_store.freeze(fdb, selection_id)
    decisions = selection_store.decisions(fdb, selection_id)
    decision = {img.image_id: (decisions.get(img.image_id) or {}).get("decision") for img in selected}
    rejected = [img for img in selected if decision[img.image_id] == "rejected"]
    undecided = [img for img in selected if decision[img.image_id] is None] if config.only_accepted else []
    selected = [img for img in selected if decision[img.image_id] == "accepted"
                or (decision[img.image_id] is None and not config.only_accepted)]
    if not selected:
        raise NothingToExport(f"selection {selection_id!r}: nothing to export ({len(rejected)} images rejected"
                          + (f", {len(undecided)} not accepted" if config.only_accepted else "") + ")")
    return selected, rejected, undecided, decisions


def _selected_images(fdb: FeatureDB, selection_id: str, image_ids: list) -> list[dict]:
    """The fdb records of the images to export; an image fdb no longer holds is refused."""
    images = list(image_store.by_id(fdb, image_ids).values())
    missing = set(map(str, image_ids)) - {str(i["_id"]) for i in images}
    if missing:
        raise ExportError(f"selection {selection_id!r}: images not in fdb: {sorted(missing)}")
    return images


def _batch_documents(batch_id: str, selection_id: str, batch: list, export_cats: list[dict], rows: list[dict],
                     rejected: list, undecided: list, decisions: dict) -> dict[str, bytes]:
    """The batch's label files by name: CVAT XML, COCO JSON and the manifest (CSV, and JSON with the images left
    out and why)."""
    return {
        CVAT_XML: cvat_xml(batch, export_cats, task_name=f"{batch_id} ({selection_id})"),
        COCO_JSON: coco_json(batch, export_cats), "manifest.csv": manifest_csv(rows),
        "manifest.json": manifest_json(rows, rejected_rows(rejected, decisions),
                                       [{"uri": img.uri, "image_id": str(img.image_id), "rank": img.rank}
                                        for img in undecided])}


def batch_location(fdb: FeatureDB, target: str, batch_id: str, refusal: str) -> str:
    """Where batch `batch_id` goes under `target` (a folder, or an s3:// prefix). A batch whose labels already
    came back is never exported again: refused with `refusal` (formatted with the batch id)."""
    previous = export_store.get(fdb, batch_id)
    if previous and previous.get("status") == "labelled":
        raise ExportError(refusal.format(batch_id) + "; it is not exported again")
    if target.startswith("s3://"):
        return target.rstrip("/") + "/" + batch_id
    return str(Path(target) / batch_id)


def ship_batch(batch_id: str, target: str, location: str, documents: dict[str, bytes], images: dict[str, str],
               client=None) -> tuple[list[str], dict[str, str]]:
    """Write a batch's `documents` (relative path -> bytes) and its images (file name -> uri, under `images/`)
    to `location` (a folder under `target`, or an s3:// prefix) with the `_DONE` protocol above; returns the
    files (relative, sorted) and their sha256."""
    is_s3 = location.startswith("s3://")
    parent = None if is_s3 else Path(target)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{batch_id}-", dir=parent) as tmp:
        root = Path(tmp) / batch_id
        for name, data in documents.items():
            _write(root / name, data)
        for file_name, uri in images.items():
            _write(root / "images" / file_name, read_uri(uri))
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        digests = {f: file_sha256(root / f) for f in files}
        marker = (json.dumps({"batch_id": batch_id, "files": digests}, sort_keys=True, indent=1) + "\n").encode()
        if is_s3:
            # A re-export must not look done while its files are being replaced: the marker goes first.
            s3mod.delete_object(f"{location}/{DONE}", client)
            for f in files:
                ctype = "application/xml" if f.endswith(".xml") else None
                s3mod.upload_file(root / f, f"{location}/{f}", client, content_type=ctype)
            s3mod.put_bytes(marker, f"{location}/{DONE}", client)
        else:
            final = Path(location)
            if final.exists():
                (final / DONE).unlink(missing_ok=True)
                shutil.rmtree(final)
            os.replace(root, final)
            _write(final / DONE, marker)
    return files, digests
