"""Models: which model a run uses, and production handed over to another."""

from __future__ import annotations

from prefect import task

from fdb import StoreConfig
from fdb import models as model_registry
from jobs.context import connection, resolve_version
from tasks.retries import IO_RETRIES


@task(name="resolve the model", **IO_RETRIES)
def resolve_model(store: StoreConfig, model_version: str | None = None, checkpoint: str | None = None) -> str:
    """The model version to use: a checkpoint file (registered on the way), the given version, or the production
    model (`jobs.context.resolve_version`)."""
    return resolve_version(store, model_version, checkpoint)


@task(name="hand production over", **IO_RETRIES)
def take_over(store: StoreConfig, model_version: str, serving: str | None, why: str, numbers: dict) -> dict:
    """`model_version` becomes the production model, only if `serving` still is (`fdb.models.promote`). A retry
    that finds the switch made (its answer lost) is done, not a conflict."""
    fdb = connection(store)
    if model_registry.production_version(fdb) == model_version:
        return {"from": serving, "to": model_version, "why": why, "switched": False}
    switch = model_registry.promote(fdb, model_version, why, numbers, expected=serving)
    return {k: v for k, v in switch.items() if k != "at"}
