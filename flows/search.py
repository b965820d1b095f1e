"""`dataengine search`: query the pool by example, an image or a box in it. A plain function, no Prefect run."""

from __future__ import annotations

from pathlib import Path

from fdb import StoreConfig
from jobs.context import checkpoint_of, connection, production_or
from jobs.pool_index import index_root
from jobs.search import BadQuery, SearchResult, search_by_example

# What a search refuses to ask: a file that is not an image or a box outside it (BadQuery); no production model,
# no such version, no pool vectors of the model (LookupError).
SEARCH_REFUSALS = (BadQuery, LookupError)


def search_pool(store: StoreConfig, image: str, box: tuple[float, float, float, float] | None = None, k: int = 20,
                model_version: str | None = None, out_dir: str | None = None) -> SearchResult:
    """The `k` pool images nearest to `image` (or, with `box`, the pool detections nearest to that box of it),
    as the model (default: production) sees them, with a montage PNG in `out_dir` (default: search/ in the data
    home). The query image is not recorded in the store."""
    checkpoint = checkpoint_of(store, production_or(connection(store), model_version))
    return search_by_example(connection(store), checkpoint, image, box, k, index_root=index_root(store),
                             out_dir=out_dir or Path(store.home) / "search")
