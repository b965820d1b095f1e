"""The `errors` collection: every typed error of a model on the labelled set, under its matching parameters."""

from __future__ import annotations

from dataclasses import asdict

from fdb.store import FeatureDB
from fdb.writes import bulk_insert, find_page, stable_id, utcnow
from records import ModelError


def error_id(model_version: str, params_key: str, image_id, error_type: str, subject) -> object:
    """The same error of the same model under the same parameters always gets the same id."""
    return stable_id("err", model_version, params_key, image_id, error_type, subject)


def record_errors(fdb: FeatureDB, errors: list[ModelError]) -> None:
    """Store errors whose `id` is set (`error_id`); recording them again adds nothing."""
    now = utcnow()
    docs = []
    for e in errors:
        doc = {k: v for k, v in asdict(e).items() if k != "id"}
        docs.append({"_id": e.id, **doc, "created_at": now})
    bulk_insert(fdb.errors, docs)


# ---------------------------------------------------------------------------------------------------- reads
def get(fdb: FeatureDB, error_id) -> dict | None:
    return fdb.errors.find_one({"_id": error_id})


def models_with_errors(fdb: FeatureDB) -> list[str]:
    return sorted(fdb.errors.distinct("model_version"))


def newest_params_key(fdb: FeatureDB, model_version: str) -> str | None:
    """The matching parameters the model's errors were last typed under."""
    doc = fdb.errors.find_one({"model_version": model_version}, {"params_key": 1}, sort=[("created_at", -1)])
    return doc["params_key"] if doc else None


def find(fdb: FeatureDB, model_version: str, params_key: str | None = None, types: list[str] | None = None,
         category: str | None = None, image_id=None, skip: int = 0, limit: int = 60) -> tuple[list[dict], int]:
    """A page of the model's errors (under `params_key`, default the newest), filtered by type, class and image,
    in type then id order, and how many match."""
    query: dict = {"model_version": model_version, "params_key": params_key or newest_params_key(fdb, model_version)}
    if image_id is not None:
        query["image_id"] = image_id
    if types:
        query["type"] = {"$in": list(types)}
    if category:
        query["category_name"] = category
    return find_page(fdb.errors, query, [("type", 1), ("_id", 1)], skip, limit)


def facets(fdb: FeatureDB, model_version: str, params_key: str | None = None) -> dict[str, dict[str, int]]:
    """How many of the model's errors there are of each type and of each class."""
    match = {"model_version": model_version, "params_key": params_key or newest_params_key(fdb, model_version)}
    out: dict[str, dict[str, int]] = {}
    for field in ("type", "category_name"):
        rows = fdb.errors.aggregate([{"$match": match}, {"$group": {"_id": f"${field}", "n": {"$sum": 1}}},
                                     {"$sort": {"_id": 1}}])
        out[field] = {str(r["_id"]): r["n"] for r in rows}
    return out
