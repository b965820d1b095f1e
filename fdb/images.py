"""Image ingestion: every image gets one record; an unreadable one is quarantined with its reason, never dropped.

Only new uris are read and hashed, so the cost of an ingest grows with new images, not with the archive.
A quarantined image is looked at again on the next ingest, so a file that was repaired comes back on its own.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from PIL import Image, UnidentifiedImageError

from fdb.store import FeatureDB, WriteReport, bulk_insert, utcnow

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class UnreadableImage(Exception):
    """An image that cannot be decoded; its message is the quarantine reason."""


@dataclass
class ImageInfo:
    sha256: str
    width: int
    height: int


def read_uri(uri: str) -> bytes:
    """The bytes behind an image uri: a local path or file:// uri (S3 uris are read by annotation_export.s3)."""
    if uri.startswith("s3://"):
        from annotation_export.s3 import read_s3_uri  # noqa: PLC0415 - S3 is optional for local work

        return read_s3_uri(uri)
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    return path.read_bytes()


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


def list_images(folder: str | Path, pattern: str = "*") -> list[str]:
    """Files under `folder` (a local folder or an `s3://bucket/prefix`) whose names match `pattern` and look like
    images, sorted. Files that only pretend are caught on read."""
    if str(folder).startswith("s3://"):
        from annotation_export.s3 import list_keys, parse_s3_uri  # noqa: PLC0415 - S3 is optional for local work

        bucket, _ = parse_s3_uri(str(folder))
        return sorted(f"s3://{bucket}/{key}" for key in list_keys(str(folder))
                      if fnmatch.fnmatch(key.rsplit("/", 1)[-1], pattern)
                      and Path(key).suffix.lower() in IMAGE_SUFFIXES)
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder {folder} does not exist")
    return sorted(str(p.resolve()) for p in folder.rglob(pattern)
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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
