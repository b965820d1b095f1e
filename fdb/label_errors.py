"""The `label_errors` collection: suspected label errors on a labelled set, each with its evidence.

A suspect is keyed by the model that judged, the judging parameters, the labelled set's bytes (its version), the
image and what it accuses, so judging again adds nothing and a corrected labelled set gets suspects of its own."""

from __future__ import annotations

from dataclasses import asdict

from fdb.store import FeatureDB
from fdb.writes import bulk_insert, find_page, stable_id, utcnow
from records import LabelSuspect


def suspect_id(model_version: str, params_key: str, labels_sha256: str, image_id, kind: str, subject) -> object:
    return stable_id("label-error", model_version, params_key, labels_sha256, image_id, kind, subject)


def record_suspects(fdb: FeatureDB, suspects: list[LabelSuspect], threshold: float) -> None:
    """Store suspects whose `id` is set; `is_label_error` says whether each reached the run's threshold."""
    now = utcnow()
    docs = [{"_id": s.id, **{k: v for k, v in asdict(s).items() if k != "id"},
             "is_label_error": s.suspicion >= threshold, "created_at": now} for s in suspects]
    bulk_insert(fdb.label_errors, docs)


def read_suspects(fdb: FeatureDB, model_version: str | list[str] | None = None, labels_sha256: str | None = None,
                  only_errors: bool = True, params_key: str | None = None) -> list[dict]:
    """Stored suspects (judged by `model_version`, or by any of a list of fold models), by suspicion (highest
    first)."""
    query: dict = {}
    if model_version:
        query["model_version"] = {"$in": [model_version] if isinstance(model_version, str) else list(model_version)}
    if labels_sha256:
        query["labels_sha256"] = labels_sha256
    if params_key:
        query["params_key"] = params_key
    if only_errors:
        query["is_label_error"] = True
    return list(fdb.label_errors.find(query).sort([("suspicion", -1), ("_id", 1)]))


def get(fdb: FeatureDB, suspect_id) -> dict | None:
    return fdb.label_errors.find_one({"_id": suspect_id})


def suspects_page(fdb: FeatureDB, model_version: str | None = None, types: list[str] | None = None,
                  only_errors: bool = True, skip: int = 0, limit: int = 60) -> tuple[list[dict], int]:
    """A page of suspects (of one judging model, or all), most suspicious first, and how many match."""
    query: dict = {}
    if model_version:
        query["model_version"] = model_version
    if types:
        query["type"] = {"$in": list(types)}
    if only_errors:
        query["is_label_error"] = True
    return find_page(fdb.label_errors, query, [("suspicion", -1), ("_id", 1)], skip, limit)
