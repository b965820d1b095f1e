"""Index: the pool index mining searches (`fdb.pool_index`), brought up to date before mining, rebuilt afresh, or
its recent side merged in. Indexes live under `indexes/` in the data home, where mining looks for them."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from fdb import StoreConfig
from fdb.pool_index import merge_recent_indexes, rebuild_pool_indexes
from jobs.context import connection, registered_model
from mining.config import MiningConfig
from mining.selection import pool_index_upkeep
from records import BOX_LAYER, IMAGE_LAYER
from tasks.retries import IO_RETRIES


@task(name="bring the pool index up to date", **IO_RETRIES)
def update_pool_index(store: StoreConfig, model_version: str, mining: MiningConfig = MiningConfig()) -> dict:
    """The step before mining (`mining.selection.pool_index_upkeep`): the pool index the run's strategy searches
    takes in the pool vectors written since its last upkeep (built the first time); ranking only reads it."""
    return _per_layer(pool_index_upkeep(connection(store), model_version, mining, _index_root(store)))


@task(name="rebuild the pool index", **IO_RETRIES)
def reindex_pool(store: StoreConfig, model_version: str, backend: str = "auto") -> dict:
    """The pool indexes mining uses (fdb.pool_index), built afresh from every pool vector: a new centre and
    projection for a pool that grew far from the vectors its index was first built on. Nights add to it again."""
    return _per_layer(rebuild_pool_indexes(connection(store), model_version, (BOX_LAYER, IMAGE_LAYER),
                                           _index_root(store), backend))


@task(name="merge the recent pool vectors", **IO_RETRIES)
def merge_recent_pool_index(store: StoreConfig, model_version: str | None = None, backend: str = "auto") -> dict:
    """Each layer's recent side index merged into its main pool index (fdb.pool_index.merge_recent_index): the
    weekly job that keeps nights from saving the graph. No weights are loaded: the index holds stored vectors."""
    fdb = connection(store)
    version = registered_model(fdb, model_version)["_id"]
    return _per_layer(merge_recent_indexes(fdb, version, (BOX_LAYER, IMAGE_LAYER), _index_root(store), backend))


def _index_root(store: StoreConfig) -> Path:
    return Path(store.home) / "indexes"  # as mining's (`tasks.mine.mine` mines with out_dir = the data home)


def _per_layer(done: dict) -> dict:
    return {layer: None if pool is None else {**pool.summary(), "seconds": seconds}
            for layer, (pool, seconds) in done.items()}
