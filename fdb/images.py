"""The `images` collection: ingest, quarantine, which model processed what, which images may be mined.

Every image gets one record; an unreadable one is quarantined with its reason, never dropped.

Only new uris are read and hashed, so the cost of an ingest grows with new images, not with the archive.
A quarantined image is looked at again on the next ingest, so a file that was repaired comes back on its own.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from bson import ObjectId
from PIL import Image, UnidentifiedImageError
from pymongo import ASCENDING

from fdb.selections import exported_image_ids
from fdb.store import FeatureDB, WriteReport, bulk_insert, utcnow
from storage import read_uri


class UnreadableImage(Exception):
    """An image that cannot be decoded; its message is the quarantine reason."""


@dataclass
class ImageInfo:
    sha256: str
    width: int
    height: int


def inspect_image(data: bytes) -> ImageInfo:
    """Decode the whole image (not only its header), so truncated files are caught here, not in the detector."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            width, height = im.size
    except UnidentifiedImageError:
        raise UnreadableImage("not an image file (no known image format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"corrupt image: {exc}") from None
    if width == 0 or height == 0:
        raise UnreadableImage(f"empty image ({width}x{height})")
    return ImageInfo(hashlib.sha256(data).hexdigest(), width, height)


@dataclass
class IngestReport:
    new: int = 0
    existing: int = 0
    recovered: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (uri, reason)
    write: WriteReport = field(default_factory=WriteReport)

    def __str__(self) -> str:
        s = f"{self.new} new images, {self.existing} already known, {len(self.quarantined)} quarantined"
        if self.recovered:
            s += f", {self.recovered} recovered from quarantine"
        return s


def ingest_images(fdb: FeatureDB, uris: Iterable[str], source: str = "local", split: str = "pool",
                  labelled: bool = False, extra: dict | None = None) -> IngestReport:
    """Register images in fdb. Known good uris are skipped without being read."""
    uris = list(dict.fromkeys(str(u) for u in uris))
    report = IngestReport()
    known = {d["uri"]: d for d in fdb.images.find({"uri": {"$in": uris}}, {"uri": 1, "status": 1})}
    docs = []
    for uri in uris:
        previous = known.get(uri)
        if previous and previous["status"] == "ok":
            report.existing += 1
            continue
        try:
            info = inspect_image(read_uri(uri))
            fields = {"sha256": info.sha256, "width": info.width, "height": info.height, "status": "ok",
                      "reason": None}
        except (UnreadableImage, OSError) as exc:
            reason = f"file not found: {uri}" if isinstance(exc, FileNotFoundError) else str(exc)
            fields = {"sha256": None, "width": None, "height": None, "status": "quarantined", "reason": reason}
            report.quarantined.append((uri, reason))
        if previous:  # a quarantined image seen again: update it in place
            fdb.images.update_one({"_id": previous["_id"]}, {"$set": {**fields, "checked_at": utcnow()}})
            if fields["status"] == "ok":
                report.recovered += 1
            continue
        docs.append({"uri": uri, **fields, "source": source, "split": split, "labelled": labelled,
                     "ingested_at": utcnow(), "processed_by": [], **(extra or {})})
    report.write = bulk_insert(fdb.images, docs)
    report.new = report.write.inserted
    report.existing += report.write.existing
    return report


# ---------------------------------------------------------------------------------------------------- reads
def by_uri(fdb: FeatureDB, uris: Iterable[str]) -> dict[str, dict]:
    """uri -> its image record (`_id`, `uri`, `width`, `height`, `status`, `split`, `labelled`, ...)."""
    return {d["uri"]: d for d in fdb.images.find({"uri": {"$in": list(uris)}})}


def by_id(fdb: FeatureDB, image_ids: Iterable[ObjectId]) -> dict[ObjectId, dict]:
    return {d["_id"]: d for d in fdb.images.find({"_id": {"$in": list(image_ids)}})}


def processed_uris(fdb: FeatureDB, uris: Sequence[str], model_version: str) -> set[str]:
    """Those of `uris` whose detections and features from `model_version` are complete."""
    return set(fdb.images.distinct("uri", {"uri": {"$in": list(uris)}, "processed_by": model_version}))


def unprocessed(fdb: FeatureDB, uris: Sequence[str], model_version: str) -> list[dict]:
    """Readable images among `uris` that `model_version` has not processed yet, by uri."""
    query = {"status": "ok", "processed_by": {"$ne": model_version}, "uri": {"$in": list(uris)}}
    return list(fdb.images.find(query).sort("uri", ASCENDING))


def eligible_pool(fdb: FeatureDB, model_version: str) -> list[dict]:
    """Pool images that may be selected: unlabelled, readable, processed by this model, not yet exported.
    Records with `_id`, `uri` and `sha256`, in `_id` order."""
    return list(fdb.images.find({"split": "pool", "labelled": False, "status": "ok", "processed_by": model_version,
                                 "_id": {"$nin": exported_image_ids(fdb)}}, {"uri": 1, "sha256": 1}).sort("_id", 1))


def processed_pool_ids(fdb: FeatureDB, model_version: str) -> list[ObjectId]:
    """Every pool image `model_version` has processed, exported or not."""
    return fdb.images.distinct("_id", {"split": "pool", "processed_by": model_version})


def ids_with_labels_back(fdb: FeatureDB) -> list[ObjectId]:
    """Images whose labels came back from the annotation team (any label version)."""
    return fdb.images.distinct("_id", {"label_version": {"$exists": True}})


# ---------------------------------------------------------------------------------------------------- writes
def mark_processed(fdb: FeatureDB, image_ids: Sequence[ObjectId], model_version: str) -> None:
    """Record that the images' detections and features from this model are complete (the incremental key)."""
    fdb.images.update_many({"_id": {"$in": list(image_ids)}}, {"$addToSet": {"processed_by": model_version}})


def quarantine(fdb: FeatureDB, image_id: ObjectId, reason: str) -> None:
    """An image that could be ingested but not decoded for detection: out of every later step, with its reason."""
    fdb.images.update_one({"_id": image_id}, {"$set": {"status": "quarantined", "reason": reason,
                                                       "checked_at": utcnow()}})


def mark_labelled(fdb: FeatureDB, uris: Sequence[str], split: str = "val") -> None:
    """Images with ground truth are labelled, whatever an earlier ingest called them: never mine them."""
    fdb.images.update_many({"uri": {"$in": list(uris)}}, {"$set": {"split": split, "labelled": True}})


def mark_label_version(fdb: FeatureDB, image_ids: Sequence[ObjectId], label_version: int) -> None:
    """Labels came back for these images: they are labelled, at this version."""
    fdb.images.update_many({"_id": {"$in": list(image_ids)}},
                           {"$set": {"labelled": True, "label_version": label_version}})
