"""The `indexes` collection: which vector index was built over which vectors, and where it lies on disk."""

from __future__ import annotations

from pathlib import Path

from fdb.store import FeatureDB, utcnow


def find_by_content(fdb: FeatureDB, content_key: str) -> str | None:
    """The directory of an index built over exactly this content, if it is still on disk."""
    record = fdb.indexes.find_one({"content_key": content_key})
    return record["path"] if record and Path(record["path"]).is_dir() else None


def record_index(fdb: FeatureDB, spec: dict, content_key: str, path: str, **facts) -> None:
    fdb.indexes.update_one({"_id": spec["version"]},
                           {"$set": {**spec, "content_key": content_key, "path": path, **facts,
                                     "created_at": utcnow()}}, upsert=True)
