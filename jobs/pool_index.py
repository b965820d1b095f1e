"""The pool indexes mining searches (`fdb.pool_index`), one per layer under `indexes/` in the data home, where
mining looks for them: brought up to date before mining, rebuilt afresh, or their recent side merged in. What the
index tasks and `dataengine reindex` both call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fdb import StoreConfig
from fdb.pool_index import merge_recent_indexes, rebuild_pool_indexes
from jobs.context import connection, registered_model
from mining.config import MiningConfig
from mining.selection import pool_index_upkeep
from records import BOX_LAYER, IMAGE_LAYER


@dataclass(frozen=True)
class PoolIndexes:
    model_version: str
    # layer -> its pool index's summary (`fdb.pool_index.PoolIndex.summary`: backend, vectors, version, added,
    # rebuilt, merged, ...) and the `seconds` it took; None: the layer had nothing to index or merge
    layers: dict[str, dict | None]


def index_root(store: StoreConfig) -> Path:
    return Path(store.home) / "indexes"  # as mining's (`tasks.mine.mine` mines with out_dir = the data home)


def update_pool_indexes(store: StoreConfig, model_version: str, mining: MiningConfig = MiningConfig()) -> dict:
    """The pool index the run's strategy searches takes in the pool vectors written since its last upkeep (built
    the first time): `mining.selection.pool_index_upkeep`. Per layer, as `PoolIndexes.layers`."""
    return _per_layer(pool_index_upkeep(connection(store), model_version, mining, index_root(store)))


def reindex_pool(store: StoreConfig, model_version: str | None = None, backend: str = "auto",
                 merge_recent: bool = False) -> PoolIndexes:
    """Both layers' pool indexes of `model_version` (default: production) built afresh from every pool vector (a
    new centre and projection for a pool that grew far from the vectors its index was first built on), or with
    `merge_recent` their recent side indexes merged into the main ones (the weekly job that keeps nights from
    saving the graph). No weights are loaded: the index holds stored vectors."""
    fdb = connection(store)
    version = registered_model(fdb, model_version)["_id"]
    act = merge_recent_indexes if merge_recent else rebuild_pool_indexes
    return PoolIndexes(version, _per_layer(act(fdb, version, (BOX_LAYER, IMAGE_LAYER), index_root(store), backend)))


def _per_layer(done: dict) -> dict:
    return {layer: None if pool is None else {**pool.summary(), "seconds": seconds}
            for layer, (pool, seconds) in done.items()}
