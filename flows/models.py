"""The model registry as `dataengine models` reads and switches it: plain functions, no Prefect run."""

from __future__ import annotations

from dataclasses import dataclass

from fdb import StoreConfig
from fdb import models as registry
from jobs.context import connection, registered_model

# What a switch of production refuses with: an unknown version or nothing to roll back to, and production
# changed by someone else while the switch was decided.
SWITCH_REFUSALS = (LookupError, registry.PromotionConflict)


@dataclass(frozen=True)
class ModelLine:
    """One registered model as the list shows it."""

    stage: str
    version: str
    parent: str | None
    role: str
    bbox_map: float | None  # as the review app shows it (`fdb.models.bbox_map`)
    test: dict[str, float]  # the test split's bbox mAP by subset (superset, tail), where there is one


@dataclass(frozen=True)
class ModelCard:
    record: dict  # the registry's record, without the model's config
    switches: list[dict]  # the switches of production from or to it, oldest first


@dataclass(frozen=True)
class ProductionSwitch:
    from_version: str | None
    to_version: str
    switched: bool  # False: it already was in production


def list_models(store: StoreConfig) -> list[ModelLine]:
    """Every registered model version, as the registry orders them."""
    lines = []
    for doc in registry.list_models(connection(store)):
        test = registry.test_numbers(doc) or {}
        lines.append(ModelLine(doc["stage"], doc["_id"], doc.get("parent"), doc.get("role", "model"),
                               registry.bbox_map(doc), {subset: test[subset] for subset in ("superset", "tail")
                                                        if test.get(subset) is not None}))
    return lines


def model_card(store: StoreConfig, version: str | None = None) -> ModelCard:
    """The record of `version` (default: production) and its switches; LookupError naming the known versions."""
    fdb = connection(store)
    doc = registered_model(fdb, version)
    doc.pop("config", None)
    return ModelCard(doc, [p for p in registry.promotions(fdb) if doc["_id"] in (p["from"], p["to"])])


def promote(store: StoreConfig, version: str, why: str) -> ProductionSwitch:
    """`version` becomes the production model, the switch recorded with `why`."""
    return _switch(registry.promote(connection(store), version, why=why))


def rollback(store: StoreConfig, why: str) -> ProductionSwitch:
    """Production goes back to the model the last switch replaced."""
    return _switch(registry.rollback(connection(store), why=why))


def _switch(record: dict) -> ProductionSwitch:
    return ProductionSwitch(record["from"], record["to"], record["switched"])
