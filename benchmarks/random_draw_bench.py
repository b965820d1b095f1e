"""The random arm's draw at the archive's scale: the indexed random key against reading every eligible pool id.

    python benchmarks/random_draw_bench.py [--sizes 10000 100000 1000000] [--budget 40] [--out results/random_draw.json]

A throwaway mongod holds N pool image records (as a night leaves them: processed by the model, with their random
key) and a few hundred exported ones. For each size, the draw of --budget images is timed (the median of --repeats,
each with another seed) two ways:

- `random_draw`: `fdb.images.random_draw`, the product's draw since the scale issue: two range scans of the index
  (`processed_by`, `split`, `labelled`, `status`, `random_key`) from a start the seed draws, and the eligible count;
- `every_id`: the draw it replaced: every eligible id read (`fdb.images.eligible_pool_ids`, raw batches, sorted),
  taken images removed, `budget` positions drawn, the drawn records read.

The target (the nightly benchmark's): the 1M night's time outside detection at most 2x the 10k night's; the
random arm was 4.4 s of the 1M night's MongoDB wait (with the night's counts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fdb import images as image_store  # noqa: E402
from fdb.server import EmbeddedMongo  # noqa: E402
from fdb.store import FeatureDB  # noqa: E402
from fdb.vectors import to_object_ids  # noqa: E402

MODEL = "bench-model"


def grow(fdb: FeatureDB, start: int, stop: int) -> None:
    """Pool records start..stop-1, as ingest and a night's detection leave them."""
    for lo in range(start, stop, 50_000):
        hi = min(stop, lo + 50_000)
        fdb.images.insert_many([{"uri": f"/archive/{i:08d}.png", "sha256": f"{i:064x}",
                                 "random_key": image_store.random_key(f"{i:064x}"), "split": "pool",
                                 "labelled": False, "status": "ok", "processed_by": [MODEL]}
                                for i in range(lo, hi)], ordered=False)


def every_id(fdb: FeatureDB, budget: int, seed: int) -> list:
    pool = image_store.eligible_pool_ids(fdb, MODEL)
    picked = sorted(np.random.default_rng(seed).choice(len(pool), size=min(budget, len(pool)), replace=False))
    drawn = to_object_ids(pool[picked])
    return list(image_store.by_id(fdb, drawn))


def timed(draw, repeats: int) -> tuple[float, list[float]]:
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        draw(seed)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "random_draw.json"))
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="random-draw-bench-")
    server = EmbeddedMongo(Path(tmp.name) / "db").start()
    client = pymongo.MongoClient(server.uri)
    results = []
    try:
        fdb = FeatureDB(client["bench"])
        have = 0
        for size in sorted(args.sizes):
            grow(fdb, have, size)
            have = size
            # A few hundred exported images, spread over the key range: the draw must step over them.
            taken = [d["_id"] for d in fdb.images.aggregate([{"$sample": {"size": 300}}, {"$project": {"_id": 1}}])]
            fdb.selections.delete_many({})
            fdb.selections.insert_many([{"selection_id": "old", "image_id": i, "export_id": "batch-1"} for i in taken])
            keyed, keyed_runs = timed(lambda s: image_store.random_draw(fdb, MODEL, args.budget, s), args.repeats)
            full, full_runs = timed(lambda s: every_id(fdb, args.budget, s), args.repeats)
            results.append({"pool": size, "random_draw_s": round(keyed, 4), "every_id_s": round(full, 4),
                            "random_draw_runs": [round(t, 4) for t in keyed_runs],
                            "every_id_runs": [round(t, 4) for t in full_runs]})
            print(json.dumps(results[-1]))
    finally:
        client.close()
        server.stop()
        tmp.cleanup()
    out = {"benchmark": "random_draw", "date": time.strftime("%Y-%m-%d"), "budget": args.budget,
           "repeats": args.repeats, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "results": results}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
