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
    """`model_version` becomes the production model, only if `serving` still is (`fdb.models.hand_over`)."""
    return model_registry.hand_over(connection(store), model_version, serving, why, numbers)
