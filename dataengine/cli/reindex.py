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
    from flows.reindex import reindex

    done = reindex(store_config(), args.model, args.backend, merge_recent=args.merge_recent)
    version = done.model_version
    for layer, pool in done.layers.items():
        if pool is None:
            print(f"{layer}: no pool {'index' if args.merge_recent else 'vectors'} of model {version}")
            continue
        what = _merge_done(pool) + "; " if args.merge_recent else ""
        print(f"{layer}: {what}{pool['vectors']:,} pool vectors of model {version} in a {pool['backend']} "
              f"index (version {pool['version']}, {pool['seconds']} s)")
    return 0


def _merge_done(pool: dict) -> str:
    if pool["rebuilt"]:  # an Annoy main cannot take vectors
        return f"rebuilt ({pool['merged']:,} recent vectors merged)"
    if pool["added"] == 0:
        return "nothing recent to merge"
    return f"merged {pool['merged']:,} recent vectors ({pool['added']:,} added to the main index)"
