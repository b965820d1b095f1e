"""The `indexes` collection: which vector index was built over which vectors, and where it lies on disk.

One record per saved version of a pool index (fdb.pool_index), `_id` = the index version: its spec, its
directory, the mean its vectors were centred on, and the watermark up to which the pool's vectors are in it.
A recent side index (pool key `<main's>-recent`) has records of its own, with `base_version` (the main version it
sits beside) and `opened_at` (when its first vectors went in).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from fdb.store import FeatureDB
from fdb.writes import utcnow


def latest_pool_index(fdb: FeatureDB, pool_key: str) -> dict | None:
    """The newest saved version of a pool index, with `centre` as a float32 array."""
    record = fdb.indexes.find_one({"pool_key": pool_key}, sort=[("created_at", -1)])
    if record is not None:
        record["centre"] = np.frombuffer(record["centre"], dtype=np.float32)
    return record


def record_pool_index(fdb: FeatureDB, spec: dict, pool_key: str, path: str, centre: np.ndarray,
                      watermark: dt.datetime, **facts) -> None:
    fdb.indexes.update_one({"_id": spec["version"]},
                           {"$set": {**spec, "pool_key": pool_key, "path": path,
                                     "centre": np.asarray(centre, dtype=np.float32).tobytes(),
                                     "watermark": watermark, **facts, "created_at": utcnow()}}, upsert=True)


def advance_watermark(fdb: FeatureDB, version: str, watermark: dt.datetime) -> None:
    fdb.indexes.update_one({"_id": version, "watermark": {"$lt": watermark}}, {"$set": {"watermark": watermark}})


def forget(fdb: FeatureDB, pool_key: str, versions: list[str]) -> None:
    """Versions whose directories were pruned."""
    if versions:
        fdb.indexes.delete_many({"_id": {"$in": versions}, "pool_key": pool_key})


def forget_pool(fdb: FeatureDB, pool_key: str) -> list[str]:
    """Every version of a pool key (a recent side index merged or outdated); returns their directories."""
    paths = [r["path"] for r in fdb.indexes.find({"pool_key": pool_key}, {"path": 1})]
    fdb.indexes.delete_many({"pool_key": pool_key})
    return paths
