"""Image uris: read the bytes behind one, list the images under a folder or an S3 prefix."""

from __future__ import annotations

import fnmatch
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def read_uri(uri: str) -> bytes:
    """The bytes behind an image uri: a local path, a file:// uri, or an s3:// uri."""
    if uri.startswith("s3://"):
        from storage.s3 import read_s3_uri  # noqa: PLC0415 - boto3 only when S3 is used

        return read_s3_uri(uri)
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    return path.read_bytes()


def list_images(folder: str | Path, pattern: str = "*") -> list[str]:
    """Files under `folder` (a local folder or an `s3://bucket/prefix`) whose names match `pattern` and look like
    images, sorted. Files that only pretend are caught on read."""
    if str(folder).startswith("s3://"):
        from storage.s3 import list_keys, parse_s3_uri  # noqa: PLC0415 - boto3 only when S3 is used

        bucket, _ = parse_s3_uri(str(folder))
        return sorted(f"s3://{bucket}/{key}" for key in list_keys(str(folder))
                      if fnmatch.fnmatch(key.rsplit("/", 1)[-1], pattern)
                      and Path(key).suffix.lower() in IMAGE_SUFFIXES)
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder {folder} does not exist")
    return sorted(str(p.resolve()) for p in folder.rglob(pattern)
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
