"""The `errors` collection: every typed error of a model on the labelled set, under its matching parameters."""

from __future__ import annotations

from dataclasses import asdict

from fdb.store import FeatureDB, bulk_insert, stable_id, utcnow
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
