"""The model registry: the `models` collection (every version the engine has used, with its stage, parent, the
training data it saw, its recipe and its metrics), the production pointer and the history of its switches.

The store knows a model only as such a record; loading one is the detectors' business.

Stages: `candidate` (registered, not serving), `production` (the one model nightly, mining and export use unless
told otherwise), `archived` (served once, replaced). Exactly one production model at a time: which one is held by
a single pointer document (`registry`, `_id: "production"`), switched by one atomic compare-and-swap, so a
concurrent switch or a crash can never leave two or none. The stage on each model record follows the pointer
(it is repaired on every switch); each switch is recorded in `promotions` with when, from, to, why and the numbers
that justified it.
"""

from __future__ import annotations

from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from fdb.store import FeatureDB
from fdb.writes import utcnow

STAGES = ("candidate", "production", "archived")
POINTER = "production"


class PromotionConflict(RuntimeError):
    """The production model changed while a switch was being decided: nothing was switched."""


def register_model(fdb: FeatureDB, version: str, checkpoint: str, classes: list[str], config: dict,
                   metrics: dict | None = None, parent: str | None = None, training_data: dict | None = None,
                   recipe: dict | None = None, role: str = "model") -> None:
    """Record a model version (idempotent). A new version is a `candidate`; registering again never changes its
    stage. `role` says what it is for: "model" (may be promoted) or "arm" (an experiment's arm: shown, compared,
    never promoted without being named)."""
    fdb.models.update_one(
        {"_id": version},
        {"$set": {"checkpoint": checkpoint, "classes": classes, "config": config, "metrics": metrics or {},
                  "parent": parent, "training_data": training_data or {}, "recipe": recipe or {}, "role": role},
         "$setOnInsert": {"created_at": utcnow(), "stage": "candidate"}},
        upsert=True)


def set_metrics(fdb: FeatureDB, version: str, evaluation: dict) -> None:
    """The model's numbers on the fixed evaluation set (`evaluation`: what set, mAP, errors by type, ...)."""
    fdb.models.update_one({"_id": version}, {"$set": {"evaluation": evaluation}})


def get_model(fdb: FeatureDB, version: str) -> dict | None:
    doc = fdb.models.find_one({"_id": version})
    if doc is not None:
        doc["stage"] = _stage(doc, production_version(fdb))
    return doc


def list_models(fdb: FeatureDB) -> list[dict]:
    """Every registered version, newest first, with its stage as the pointer has it."""
    production = production_version(fdb)
    docs = list(fdb.models.find({}, {"config": 0}).sort([("created_at", DESCENDING), ("_id", DESCENDING)]))
    for doc in docs:
        doc["stage"] = _stage(doc, production)
    return docs


def known_versions(fdb: FeatureDB) -> list[str]:
    return [d["_id"] for d in fdb.models.find({}, {"_id": 1}).sort("created_at", 1)]


def bbox_map(doc: dict) -> float | None:
    """A model's bbox mAP: on the fixed evaluation set (`evaluation`, written by a retrain), else on the superset
    its experiment scored it on (an arm's `metrics`), else on the val split at training time. The one reading of a
    model's mAP: the commands and the review app show the same number."""
    for numbers in ((doc.get("evaluation") or {}).get("mAP") or {}, doc.get("metrics") or {}):
        superset = numbers.get("superset")
        if isinstance(superset, dict) and isinstance(superset.get("bbox"), (int, float)):
            return superset["bbox"]
    val = (doc.get("metrics") or {}).get("val")
    if isinstance(val, dict) and isinstance(val.get("bbox"), dict):
        return val["bbox"].get("mAP")
    return None


def test_numbers(doc: dict) -> dict | None:
    """A model's numbers on a test split that fed nothing (`mining.evaluation`): bbox mAP on the superset, the
    tail and the rest, and false positives per image at the serving threshold. A retrain keeps them under
    `evaluation.test`, an experiment's arm under `metrics.test`; None when the model was never reported on one."""
    test = (doc.get("evaluation") or {}).get("test") or (doc.get("metrics") or {}).get("test")
    if not isinstance(test, dict) or not isinstance(test.get("mAP"), dict):
        return None
    maps, points = test["mAP"], test.get("operating_point") or {}

    def fp(subset: str) -> float | None:
        return ((points.get(subset) or {}).get("all") or {}).get("fp_per_image")

    return {"superset": (maps.get("superset") or {}).get("bbox"), "tail": (maps.get("tail") or {}).get("bbox"),
            "rest": (maps.get("rest") or {}).get("bbox"), "fp_per_image": fp("superset"),
            "tail_fp_per_image": fp("tail")}


def _stage(doc: dict, production: str | None) -> str:
    if doc["_id"] == production:
        return "production"
    stage = doc.get("stage") or "candidate"
    return "archived" if stage == "production" else stage  # a record a crashed switch had not yet repaired


def categories(fdb: FeatureDB, version: str) -> list[dict] | None:
    """The model's categories [{id, name}] in label order, from its classes and category ids; None when the
    model has no record. Raises ValueError when the two lists disagree."""
    doc = fdb.models.find_one({"_id": version})
    if not doc or not doc.get("classes"):
        return None
    ids = (doc.get("config") or {}).get("category_ids") or list(range(1, len(doc["classes"]) + 1))
    if len(ids) != len(doc["classes"]):
        raise ValueError(f"model {version}: {len(doc['classes'])} classes but {len(ids)} category ids")
    return [{"id": int(i), "name": n} for i, n in zip(ids, doc["classes"])]


# ---------------------------------------------------------------------------------------------------- production
def production_version(fdb: FeatureDB) -> str | None:
    """The version in production, or None before the first promotion."""
    doc = fdb.registry.find_one({"_id": POINTER})
    return doc["version"] if doc else None


def promote(fdb: FeatureDB, version: str, why: str, numbers: dict | None = None,
            expected: str | None | bool = False) -> dict:
    """Make `version` the production model, atomically, and record the switch. `expected` (when given) is the
    version the decision was made against: if production has changed since, nothing is switched
    (`PromotionConflict`). Returns the switch record."""
    doc = fdb.models.find_one({"_id": version})
    if doc is None:
        raise LookupError(f"no model {version!r} registered; known: {known_versions(fdb)}")
    current = production_version(fdb)
    if expected is not False and expected != current:
        raise PromotionConflict(f"production is {current!r}, not {expected!r} as when {version} was judged")
    if current == version:
        return {"from": current, "to": version, "why": why, "switched": False}
    now = utcnow()
    # The compare-and-swap: only the pointer that still names `current` is switched.
    try:
        if current is None:
            fdb.registry.insert_one({"_id": POINTER, "version": version, "switched_at": now})
        else:
            swapped = fdb.registry.find_one_and_update({"_id": POINTER, "version": current},
                                                       {"$set": {"version": version, "switched_at": now}},
                                                       return_document=ReturnDocument.AFTER)
            if swapped is None:
                raise PromotionConflict(f"production changed from {current!r} while {version} was promoted")
    except DuplicateKeyError:
        raise PromotionConflict(f"another model was promoted first while {version} was promoted") from None
    record = {"at": now, "from": current, "to": version, "why": why, "numbers": numbers or {}}
    fdb.promotions.insert_one(dict(record))
    # The stages on the records follow the pointer (list_models derives them from it even if this is cut short).
    if current is not None:
        fdb.models.update_one({"_id": current}, {"$set": {"stage": "archived"}})
    fdb.models.update_one({"_id": version}, {"$set": {"stage": "production", "promoted_at": now}})
    return {**record, "switched": True}


def hand_over(fdb: FeatureDB, version: str, serving: str | None, why: str, numbers: dict) -> dict:
    """Production handed from `serving`, the model a decision was made against, to `version`: the one way a
    decided promotion happens (a retrain whose gate passed, a rollout that re-detected the archive). If production
    changed since the decision, nothing is switched (`PromotionConflict`); a retry that finds this very switch made
    (its answer lost) is done, not a conflict. Returns the switch record, without its time."""
    if production_version(fdb) == version:
        return {"from": serving, "to": version, "why": why, "switched": False}
    switch = promote(fdb, version, why, numbers, expected=serving)
    return {k: v for k, v in switch.items() if k != "at"}


def rollback(fdb: FeatureDB, why: str = "rollback") -> dict:
    """Production goes back to the model the last switch replaced."""
    last = fdb.promotions.find_one({"to": production_version(fdb)}, sort=[("at", DESCENDING), ("_id", DESCENDING)])
    if last is None or last.get("from") is None:
        raise LookupError("nothing to roll back to: production has not replaced another model")
    return promote(fdb, last["from"], why=why, numbers={"rolled_back": last["to"]}, expected=last["to"])


def promotions(fdb: FeatureDB) -> list[dict]:
    """Every switch of production, oldest first."""
    return list(fdb.promotions.find({}, {"_id": 0}).sort([("at", 1), ("_id", 1)]))
