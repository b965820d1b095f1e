"""Content hashes, made one way: what names a file's bytes, a blob, or a set of parameters (ids, cache keys,
version digests). SHA-256 hex throughout, so a hash computed by one stage is the same string in another."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256_hex(data: bytes | str) -> str:
    """The SHA-256 of bytes (a str is hashed as its UTF-8 bytes)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read a megabyte at a time (a checkpoint need not fit in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_key(value, length: int | None = None) -> str:
    """The SHA-256 of a JSON-able value, keys sorted (anything else as its str), cut to `length` characters: the
    same parameters always give the same key."""
    return sha256_hex(json.dumps(value, sort_keys=True, default=str))[:length]
