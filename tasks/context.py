"""What a task needs and must not reopen on every call: one store connection and one loaded model per process.

Tasks take plain values (a `StoreConfig`, a model version), never an open connection or a loaded model, so they
can run in another process or on another machine (a Dask worker); these caches make that cheap.
"""

from __future__ import annotations

import functools
from pathlib import Path

from detectors.checkpoint import Checkpoint, load_checkpoint
from fdb import FeatureDB, StoreConfig
from fdb import connect as _open
from fdb import models as model_store


@functools.lru_cache(maxsize=8)
def connection(store: StoreConfig) -> FeatureDB:
    """This process's connection to the feature database `store` names (one client per process)."""
    return _open(store)


def register_checkpoint(fdb: FeatureDB, checkpoint: Checkpoint) -> None:
    """Make a checkpoint known to the store as a model version (idempotent)."""
    model_store.register_model(fdb, checkpoint.version, str(checkpoint.path.resolve()), checkpoint.class_names,
                               checkpoint.config.to_dict(), metrics=checkpoint.metrics, parent=checkpoint.parent)


def resolve_checkpoint(fdb: FeatureDB, model_version: str | None = None, checkpoint: str | None = None) -> Checkpoint:
    """A checkpoint file (registered on the way), or the model version registered in fdb (default: the
    newest)."""
    if checkpoint:
        loaded = load_checkpoint(checkpoint)
        register_checkpoint(fdb, loaded)
        return loaded
    doc = model_store.get_model(fdb, model_version) if model_version else model_store.latest_model(fdb)
    if doc is None:
        raise LookupError(f"no model {model_version!r} registered in fdb; known: {model_store.known_versions(fdb)}"
                          if model_version else
                          "no model registered in fdb yet: train one with `dataengine train` first")
    return load_checkpoint(doc["checkpoint"])


@functools.lru_cache(maxsize=2)
def checkpoint_of(store: StoreConfig, model_version: str) -> Checkpoint:
    """The registered model `model_version`, loaded once per process (a Dask worker loads it on first use)."""
    return resolve_checkpoint(connection(store), model_version)


def models_dir(store: StoreConfig) -> Path:
    path = Path(store.home) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
