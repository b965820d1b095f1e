"""The `models` collection: every model version the engine has used, where its checkpoint lies, its classes.

The store knows a model only as such a record; loading one is the detectors' business."""

from __future__ import annotations

from pymongo import DESCENDING

from fdb.store import FeatureDB, utcnow


def register_model(fdb: FeatureDB, version: str, checkpoint: str, classes: list[str], config: dict,
                   metrics: dict | None = None, parent: str | None = None) -> None:
    fdb.models.update_one(
        {"_id": version},
        {"$set": {"checkpoint": checkpoint, "classes": classes, "config": config, "metrics": metrics or {},
                  "parent": parent},
         "$setOnInsert": {"created_at": utcnow()}},
        upsert=True)


def get_model(fdb: FeatureDB, version: str) -> dict | None:
    return fdb.models.find_one({"_id": version})


def latest_model(fdb: FeatureDB) -> dict | None:
    return fdb.models.find_one(sort=[("created_at", DESCENDING)])


def known_versions(fdb: FeatureDB) -> list[str]:
    return [d["_id"] for d in fdb.models.find({}, {"_id": 1}).sort("created_at", 1)]


def categories(fdb: FeatureDB, version: str) -> list[dict] | None:
    """The model's categories [{id, name}] in label order, from its classes and category ids; None when the
    model has no record. Raises ValueError when the two lists disagree."""
    doc = get_model(fdb, version)
    if not doc or not doc.get("classes"):
        return None
    ids = (doc.get("config") or {}).get("category_ids") or list(range(1, len(doc["classes"]) + 1))
    if len(ids) != len(doc["classes"]):
        raise ValueError(f"model {version}: {len(doc['classes'])} classes but {len(ids)} category ids")
    return [{"id": int(i), "name": n} for i, n in zip(ids, doc["classes"])]
