"""`dataengine reindex`."""

from __future__ import annotations

from dataengine.cli.options import store_config


def add_parser(sub) -> None:
    reindex = sub.add_parser(
        "reindex", help="rebuild the pool's vector indexes from every pool vector (nights only add to them)",
        description="Each night adds its vectors to the pool indexes mining asks (an HNSW index once the pool holds "
                    "20,000 vectors, exact search below), centred on the pool mean and projected as when they were "
                    "built. When the pool has grown far beyond that (several times its size), rebuild them: a new "
                    "mean and projection, over every pool vector. Takes minutes at a million vectors.")
    reindex.add_argument("--model", default=None, help="model version (default: the production model)")
    reindex.add_argument("--backend", default="auto", choices=["auto", "exact", "hnsw", "annoy"],
                         help="index backend, as mining's --backend (default auto)")
    reindex.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from fdb.pool_index import rebuild_pool_indexes
    from records import BOX_LAYER, IMAGE_LAYER
    from jobs.context import connection, registered_model

    store = store_config()
    fdb = connection(store)
    version = registered_model(fdb, args.model)["_id"]  # no weights to load: the index holds stored vectors
    rebuilt = rebuild_pool_indexes(fdb, version, (BOX_LAYER, IMAGE_LAYER), Path(store.home) / "indexes", args.backend)
    for layer, (built, seconds) in rebuilt.items():
        if built is None:
            print(f"{layer}: no pool vectors of model {version}")
        else:
            print(f"{layer}: {len(built.index):,} pool vectors of model {version} in a {built.index.spec.backend} "
                  f"index (version {built.index.spec.version}, {seconds} s)")
    return 0
