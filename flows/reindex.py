"""`dataengine reindex`: the pool's vector indexes rebuilt, or the nights' recent vectors merged into them, by
hand. A plain function, no Prefect run: the weekly merge runs the same job as a flow (`flows.merge_recent`)."""

from __future__ import annotations

from fdb import StoreConfig
from jobs.pool_index import PoolIndexes
from jobs.pool_index import reindex_pool as rebuild_or_merge


def reindex(store: StoreConfig, model_version: str | None = None, backend: str = "auto",
            merge_recent: bool = False) -> PoolIndexes:
    """Both layers' pool indexes of `model_version` (default: production) rebuilt from every pool vector, or with
    `merge_recent` each layer's recent index merged into its main one (`jobs.pool_index.reindex_pool`)."""
    return rebuild_or_merge(store, model_version, backend, merge_recent)
