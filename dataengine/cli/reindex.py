"""`dataengine reindex`."""

from __future__ import annotations

from dataengine.cli.options import store_config


def add_parser(sub) -> None:
    reindex = sub.add_parser(
        "reindex", help="rebuild the pool's vector indexes from every pool vector, or merge the nights' recent "
                        "vectors into them (--merge-recent, weekly)",
        description="Mining asks a pool index per layer: exact search below 20,000 vectors (each night adds to it), "
                    "an HNSW graph from there on. A night leaves the graph as saved and puts its vectors in a small "
                    "exact 'recent' index beside it, searched with it. --merge-recent (weekly; a night does it "
                    "itself only once the recent index is 4 times its merge limit) adds those vectors to the graph "
                    "and deletes the recent index. Without it, the indexes are rebuilt from every pool vector: a "
                    "new mean and projection, for a pool that has grown far beyond (several times) the vectors "
                    "they were built on. A rebuild takes minutes at a million vectors.")
    reindex.add_argument("--model", default=None, help="model version (default: the production model)")
    reindex.add_argument("--backend", default="auto", choices=["auto", "exact", "hnsw", "annoy"],
                         help="index backend, as mining's --backend (default auto)")
    reindex.add_argument("--merge-recent", action="store_true",
                         help="merge each layer's recent index into its main index instead of rebuilding")
    reindex.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from fdb.pool_index import merge_recent_indexes, rebuild_pool_indexes
    from records import BOX_LAYER, IMAGE_LAYER
    from jobs.context import connection, registered_model

    store = store_config()
    fdb = connection(store)
    version = registered_model(fdb, args.model)["_id"]  # no weights to load: the index holds stored vectors
    act = merge_recent_indexes if args.merge_recent else rebuild_pool_indexes
    done = act(fdb, version, (BOX_LAYER, IMAGE_LAYER), Path(store.home) / "indexes", args.backend)
    for layer, (pool, seconds) in done.items():
        if pool is None:
            print(f"{layer}: no pool {'index' if args.merge_recent else 'vectors'} of model {version}")
            continue
        what = _merge_done(pool) + "; " if args.merge_recent else ""
        print(f"{layer}: {what}{len(pool.index):,} pool vectors of model {version} in a {pool.index.spec.backend} "
              f"index (version {pool.index.spec.version}, {seconds} s)")
    return 0


def _merge_done(pool) -> str:
    if pool.rebuilt:  # an Annoy main cannot take vectors
        return f"rebuilt ({pool.merged:,} recent vectors merged)"
    if pool.added == 0:
        return "nothing recent to merge"
    return f"merged {pool.merged:,} recent vectors ({pool.added:,} added to the main index)"
