"""The weekly merge of the pool indexes: each night's vectors wait in a small exact "recent" index beside the graph
mining searches (fdb.pool_index); this flow adds them to the graph once and deletes the recent index."""

from __future__ import annotations

from prefect import flow, get_run_logger

from dataengine.config import store_config
from tasks.index import merge_recent_pool_index


@flow(name="merge_recent_pool_index")
def merge_recent(model_version: str | None = None, backend: str = "auto") -> dict:
    """Both layers' recent indexes merged (default: the production model's, backend as mining's). Returns what each
    layer's pool index holds afterwards."""
    merged = merge_recent_pool_index(store_config(), model_version, backend)
    get_run_logger().info("pool indexes after the merge: %s", merged)
    return merged
