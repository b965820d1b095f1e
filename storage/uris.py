"""Image uris: read the bytes behind one, list the images under a folder or an S3 prefix."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
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
    return list_images_since(folder, pattern, None, allow_links_out, refused).uris


@dataclass
class Listing:
    """What a listing found: the image uris (sorted), and the mark to list from next time (`list_images_since`):
    the newest change time (ns) seen under a local folder, the greatest key seen under an S3 prefix."""

    uris: list[str]
    mark: int | str | None
    scanned: int = 0  # entries looked at (local: files stat'ed; S3: keys received)


def list_images_since(folder: str | Path, pattern: str = "*", since: int | str | None = None,
                      allow_links_out: bool = False, refused: list[tuple[str, str]] | None = None) -> Listing:
    """The images under `folder` that arrived after the mark `since` an earlier listing returned (all when None).

    - A local folder is walked and each image's change time (`st_ctime_ns`) compared with `since`. The change time
      is set by the kernel when a file is created, renamed in or rewritten; `cp -p` or `rsync -a` keep the
      modification time of a copied file, but cannot set its change time. Folders that nothing arrived in since
      the mark (their own change time is older) are searched for subfolders only, so the walk stats the night's
      folders' files, reads none, and asks the database nothing. A file rewritten in place in an old folder is
      found by a full listing (`since=None`, the weekly reconciliation).
    - An S3 prefix is listed from the key after `since` (`StartAfter`): the keys before it are never sent, so
      a night's listing costs the night's keys. That holds for keys that sort by arrival (`2026/12/01/...`,
      `cam7/20261201T...`); an object written under a key before the mark is found by a full listing
      (`since=None`), which the weekly reconciliation deployment runs.
    """
    if str(folder).startswith("s3://"):
        from storage.s3 import list_keys, parse_s3_uri  # noqa: PLC0415 - boto3 only when S3 is used

        bucket, prefix = parse_s3_uri(str(folder))
        root = f"s3://{bucket}/{prefix.rstrip('/') + '/' if prefix.strip('/') else ''}"
        keys = list(list_keys(root, start_after=since if isinstance(since, str) else None))
        uris = sorted(f"s3://{bucket}/{key}" for key in keys if fnmatch.fnmatch(key.rsplit("/", 1)[-1], pattern)
                      and Path(key).suffix.lower() in IMAGE_SUFFIXES)
        return Listing(uris, max(keys, default=since), scanned=len(keys))
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder {folder} does not exist")
    root = folder.resolve()
    since_ns = since if isinstance(since, int) else None
    found, newest, scanned = [], since_ns, 0
    for path, changed in _walk_files(folder, since_ns):
        if not (fnmatch.fnmatch(path.name, pattern) and path.suffix.lower() in IMAGE_SUFFIXES):
            continue
        scanned += 1
        newest = changed if newest is None else max(newest, changed)
        if since_ns is not None and changed <= since_ns:
            continue
        target = path.resolve()
        if not allow_links_out and not target.is_relative_to(root):
            if refused is not None:
                refused.append((str(path), f"a link out of the image root {root} (to {target})"))
            continue
        found.append(str(target))
    return Listing(sorted(set(found)), newest, scanned=scanned)


def _walk_files(folder: Path, since_ns: int | None = None):
    """(path, change time in ns) of the files under `folder`, links to files included, links to folders not
    followed (as `Path.rglob`). With `since_ns`, a folder whose own change time is not after it is only searched
    for subfolders: nothing was created, renamed or linked into it since, so none of its files is stat'ed.
    Unreadable folders and files that vanish mid-walk are skipped."""
    stack = [folder]
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
            unchanged = since_ns is not None and max(st.st_ctime_ns, st.st_mtime_ns) <= since_ns
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif not unchanged and entry.is_file():  # follows a link to its file
                    # A link's own change time counts too: linking an old file in is an arrival.
                    changed = max(entry.stat().st_ctime_ns, entry.stat(follow_symlinks=False).st_ctime_ns)
                    yield Path(entry.path), changed
            except OSError:
                continue
