"""Index: the pool index mining searches (`fdb.pool_index`), brought up to date before mining, rebuilt afresh, or
its recent side merged in, as steps of the flows (`jobs.pool_index` does it; `dataengine reindex` calls that too)."""

from __future__ import annotations

from prefect import task

from fdb import StoreConfig
from jobs.pool_index import reindex_pool as rebuild_or_merge
from jobs.pool_index import update_pool_indexes
from mining.config import MiningConfig
from tasks.retries import IO_RETRIES


@task(name="bring the pool index up to date", **IO_RETRIES)
def update_pool_index(store: StoreConfig, model_version: str, mining: MiningConfig = MiningConfig()) -> dict:
    """The step before mining (`mining.selection.pool_index_upkeep`): the pool index the run's strategy searches
    takes in the pool vectors written since its last upkeep (built the first time); ranking only reads it."""
    return update_pool_indexes(store, model_version, mining)


@task(name="rebuild the pool index", **IO_RETRIES)
def reindex_pool(store: StoreConfig, model_version: str, backend: str = "auto") -> dict:
    """The pool indexes mining uses (fdb.pool_index), built afresh from every pool vector: a new centre and
    projection for a pool that grew far from the vectors its index was first built on. Nights add to it again."""
    return rebuild_or_merge(store, model_version, backend).layers


@task(name="merge the recent pool vectors", **IO_RETRIES)
def merge_recent_pool_index(store: StoreConfig, model_version: str | None = None, backend: str = "auto") -> dict:
    """Each layer's recent side index merged into its main pool index (fdb.pool_index.merge_recent_index): the
    weekly job that keeps nights from saving the graph. No weights are loaded: the index holds stored vectors."""
    return rebuild_or_merge(store, model_version, backend, merge_recent=True).layers
