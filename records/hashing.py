"""Content hashes, made here only. Two kinds:

- what names content (a file's bytes, a blob, a set of parameters: version digests, cache keys): SHA-256 hex, so a
  hash computed by one stage is the same string in another (`sha256_hex`, `file_sha256`, `json_key`);
- what makes a record's id from its parts (an ObjectId, a feature's `_id`, a batch id, a random key): a short
  BLAKE2b digest of the parts joined by the unit separator (`part_digest`), cheap enough for every feature written.
"""

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


def part_digest(*parts: str | bytes, size: int) -> bytes:
    """A `size`-byte BLAKE2b digest of `parts` (a str as its UTF-8 bytes) joined by the unit separator 0x1f: the
    same parts always give the same bytes."""
    return hashlib.blake2b(b"\x1f".join(p.encode() if isinstance(p, str) else p for p in parts),
                           digest_size=size).digest()
