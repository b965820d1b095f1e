"""The `labelled_sets` collection: versions of a labelled set (a COCO file), newest wins.

A labelled set is named by the file it started as (its resolved path). Version 1 is that file; a review of its
suspected label errors whose corrections come back writes version 2 as a new file, and so on: an old version is
never changed, so what an earlier evaluation or training run read stays readable (its sha256 is recorded).
Evaluation, mining and retraining ask `newest_path` for the file to read."""

from __future__ import annotations

from pathlib import Path

from fdb.store import FeatureDB
from fdb.writes import durable, utcnow
from records.hashing import file_sha256


def set_name(path: str | Path) -> str:
    return str(Path(path).resolve())


def versions(fdb: FeatureDB, path: str | Path) -> list[dict]:
    """Every recorded version of the labelled set `path` belongs to (as its first file or a later one), oldest
    first; empty when it was never corrected."""
    resolved = str(Path(path).resolve())
    doc = fdb.labelled_sets.find_one({"path": resolved}, {"set": 1})
    name = doc["set"] if doc else resolved
    return list(fdb.labelled_sets.find({"set": name}).sort("version", 1))


def newest_path(fdb: FeatureDB, path: str | Path) -> str:
    """The file to read for the labelled set `path` belongs to: its newest version, or `path` itself."""
    found = versions(fdb, path)
    return found[-1]["path"] if found else str(path)


def next_path(fdb: FeatureDB, path: str | Path) -> str:
    """Where the next version of the labelled set `path` belongs to is written: `<first stem>.v<N>.json` beside
    its first file, N the version `add_version` will give it."""
    found = versions(fdb, path)
    first = Path(found[0]["path"] if found else set_name(path))
    number = (found[-1]["version"] if found else 1) + 1
    return str(first.with_name(f"{first.stem}.v{number}.json"))


def add_version(fdb: FeatureDB, base: str | Path, new_file: str | Path, source: str, changes: dict) -> dict:
    """Record `new_file` as the next version of the labelled set `base` belongs to (recording `base` as version 1
    when it is the first correction). Recording the same file again returns the existing version."""
    found = versions(fdb, base)
    name = found[0]["set"] if found else set_name(base)
    now = utcnow()
    if not found:
        first = {"_id": f"{name}#1", "set": name, "version": 1, "path": set_name(base), "sha256": file_sha256(base),
                 "source": "original", "changes": {}, "created_at": now}
        durable(fdb.labelled_sets).update_one({"_id": first["_id"]}, {"$setOnInsert": first}, upsert=True)
        found = [first]
    new_path, new_sha = set_name(new_file), file_sha256(new_file)
    for doc in found:
        if doc["sha256"] == new_sha and doc["path"] == new_path:
            return doc
    version = found[-1]["version"] + 1
    doc = {"_id": f"{name}#{version}", "set": name, "version": version, "path": new_path, "sha256": new_sha,
           "parent": found[-1]["version"], "source": source, "changes": changes, "created_at": now}
    durable(fdb.labelled_sets).insert_one(doc)
    return doc
