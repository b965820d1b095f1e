"""What a task needs and must not reopen on every call: one store connection and one loaded model per process.

Tasks take plain values (a `StoreConfig`, a model version), never an open connection or a loaded model, so they
can run in another process or on another machine (a Dask worker); these caches make that cheap.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from fdb import FeatureDB, StoreConfig, labelled_sets
from fdb import connect as _open
from fdb import models as model_store

if TYPE_CHECKING:  # torch is imported where a model is loaded: the registry's commands start in a second, not eight
    from detectors.checkpoint import Checkpoint


@functools.lru_cache(maxsize=8)
def connection(store: StoreConfig) -> FeatureDB:
    """This process's connection to the feature database `store` names (one client per process)."""
    return _open(store)


def register_checkpoint(fdb: FeatureDB, checkpoint: Checkpoint, training_data: dict | None = None,
                        recipe: dict | None = None, role: str = "model", first_is_production: bool = False) -> None:
    """Make a checkpoint known to the store as a model version (idempotent; a new one is a candidate). With
    `first_is_production`, it becomes production when there is none yet (the first model a user trains)."""
    model_store.register_model(fdb, checkpoint.version, str(checkpoint.path.resolve()), checkpoint.class_names,
                               checkpoint.config.to_dict(), metrics=checkpoint.metrics, parent=checkpoint.parent,
                               training_data=training_data, recipe=recipe, role=role)
    if first_is_production and model_store.production_version(fdb) is None:
        model_store.promote(fdb, checkpoint.version, why="the first model: nothing was in production",
                            numbers=checkpoint.metrics, expected=None)


def production_or(fdb: FeatureDB, model_version: str | None) -> str:
    """`model_version` when given, else the production model's version."""
    if model_version:
        return model_version
    version = model_store.production_version(fdb)
    if version is None:
        known = model_store.known_versions(fdb)
        raise LookupError("no production model yet: " + (
            f"promote one with `dataengine models promote VERSION` (registered: {known})" if known else
            "train one with `dataengine train` (the first model becomes production)"))
    return version


def resolve_checkpoint(fdb: FeatureDB, model_version: str | None = None, checkpoint: str | None = None) -> Checkpoint:
    """A checkpoint file (registered on the way, as a candidate), or a model version registered in fdb
    (default: the production model)."""
    from detectors.checkpoint import load_checkpoint

    if checkpoint:
        loaded = load_checkpoint(checkpoint)
        register_checkpoint(fdb, loaded)
        return loaded
    return load_checkpoint(registered_model(fdb, model_version)["checkpoint"])


def registered_model(fdb: FeatureDB, model_version: str | None = None) -> dict:
    """The registry's record of `model_version` (default: the production model); LookupError naming the known
    versions when there is none."""
    version = production_or(fdb, model_version)
    doc = model_store.get_model(fdb, version)
    if doc is None:
        raise LookupError(f"no model {version!r} registered in fdb; known: {model_store.known_versions(fdb)}")
    return doc


def resolve_version(store: StoreConfig, model_version: str | None = None, checkpoint: str | None = None) -> str:
    """The model version to use: a checkpoint file (registered on the way), the given version, or the production
    model. The weights are loaded into this process's cache, so what runs here next reuses them."""
    if checkpoint:
        return resolve_checkpoint(connection(store), model_version, checkpoint).version
    return checkpoint_of(store, production_or(connection(store), model_version)).version


@functools.lru_cache(maxsize=2)
def checkpoint_of(store: StoreConfig, model_version: str) -> Checkpoint:
    """The registered model `model_version`, loaded once per process (a Dask worker loads it on first use)."""
    return resolve_checkpoint(connection(store), model_version)


def models_dir(store: StoreConfig) -> Path:
    path = Path(store.home) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def newest_labels(store: StoreConfig, path: str) -> str:
    """The file to read for a labelled set: its newest version once a review corrected it (`fdb.labelled_sets`),
    beside the original, so its images resolve the same way."""
    return labelled_sets.newest_path(connection(store), path)
