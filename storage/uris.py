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


def the_files_fault(uri: str, exc: BaseException) -> bool:
    """Whether a failed `read_uri` is the file's own problem (quarantine it) rather than the network's (retry the
    read): any OS error on a local file, only a missing object on S3 (`read_s3_uri` raises FileNotFoundError)."""
    return isinstance(exc, FileNotFoundError if uri.startswith("s3://") else OSError)


def list_images(folder: str | Path, pattern: str = "*", allow_links_out: bool = False,
                refused: list[tuple[str, str]] | None = None) -> list[str]:
    """Files under `folder` (a local folder or an `s3://bucket/prefix`) whose names match `pattern` and look like
    images, sorted. Files that only pretend are caught on read.

    Only what lies under the root is listed: a symbolic link (to a file or a folder) that leads out of a local
    root is refused unless `allow_links_out`, and an S3 prefix is a folder (`s3://b/night1` lists
    `night1/...`, never `night10/...`). Refused paths are appended to `refused` as (path, reason)."""
    if str(folder).startswith("s3://"):
        from storage.s3 import list_keys, parse_s3_uri  # noqa: PLC0415 - boto3 only when S3 is used

        bucket, prefix = parse_s3_uri(str(folder))
        root = f"s3://{bucket}/{prefix.rstrip('/') + '/' if prefix.strip('/') else ''}"
        return sorted(f"s3://{bucket}/{key}" for key in list_keys(root)
                      if fnmatch.fnmatch(key.rsplit("/", 1)[-1], pattern)
                      and Path(key).suffix.lower() in IMAGE_SUFFIXES)
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder {folder} does not exist")
    root = folder.resolve()
    found = []
    for path in folder.rglob(pattern):
        if not (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
            continue
        target = path.resolve()
        if not allow_links_out and not target.is_relative_to(root):
            if refused is not None:
                refused.append((str(path), f"a link out of the image root {root} (to {target})"))
            continue
        found.append(str(target))
    return sorted(set(found))
