"""Write and bulk-read N x 1024-d float32 vectors through fdb; prints and saves vectors/s and MB/s.

    python benchmarks/fdb_bench.py [--n 100000] [--dim 1024] [--out benchmarks/results/fdb.json]

Uses a throwaway mongod on a free loopback port (or DATAENGINE_MONGODB_URI with --uri), and a fresh database
that is dropped afterwards. Writes report the median of --write-repeats trials; bulk reads the best of
--repeats (the first, cold read is reported too). Targets on the 2-core dev machine: write >= 30k vectors/s, bulk read >= 60k vectors/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pymongo
from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fdb.server import EmbeddedMongo  # noqa: E402
from fdb.store import FeatureDB  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5, help="bulk reads to time (best is reported)")
    ap.add_argument("--write-repeats", type=int, default=3, help="write trials (the median is reported)")
    ap.add_argument("--uri", default=None, help="an existing MongoDB instead of a throwaway embedded one")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "fdb.json"))
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="fdb-bench-")
    server = None
    uri = args.uri
    if uri is None:
        server = EmbeddedMongo(Path(tmp.name) / "db").start()
        uri = server.uri
    client = pymongo.MongoClient(uri)
    db_name = f"bench_{ObjectId()}"
    try:
        fdb = FeatureDB(client[db_name])
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((args.n, args.dim), dtype=np.float32)
        owners = [ObjectId() for _ in range(args.n)]
        images = [ObjectId() for _ in range(args.n)]
        mb = vectors.nbytes / 1e6

        # Each write trial starts from an empty database and a quiet server, so the trials measure the same thing.
        write_times = []
        for trial in range(args.write_repeats):
            client.drop_database(db_name)
            client.admin.command("fsync")  # checkpoint: the previous trial's dirty pages do not tax this one
            fdb = FeatureDB(client[db_name])
            t0 = time.perf_counter()
            report = fdb.write_features("bench", "box_head.fc7", owners, vectors, image_ids=images)
            write_times.append(time.perf_counter() - t0)
            assert report.inserted == args.n, report
            print(f"write {trial + 1}: {args.n / write_times[-1]:,.0f} vectors/s", flush=True)
        write_s = float(np.median(write_times))

        read_s = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            got = fdb.read_vectors("bench", "box_head.fc7")
            read_s.append(time.perf_counter() - t0)
            print(f"bulk read {len(read_s)}: {args.n / read_s[-1]:,.0f} vectors/s", flush=True)
        assert got.vectors.shape == vectors.shape
        order = np.argsort(np.array([o.binary for o in owners], "S12"), kind="stable")
        assert got.vectors.tobytes() == vectors[order].tobytes(), "read back differs from what was written"

        result = {
            "n": args.n, "dim": args.dim, "dtype": "float32", "payload_mb": round(mb, 1),
            "write_s": round(write_s, 2), "write_vectors_per_s": round(args.n / write_s),
            "write_mb_per_s": round(mb / write_s, 1),
            "write_vectors_per_s_trials": [round(args.n / t) for t in write_times],
            "read_s_first": round(read_s[0], 2), "read_vectors_per_s_first": round(args.n / read_s[0]),
            "read_s_best": round(min(read_s), 2), "read_vectors_per_s": round(args.n / min(read_s)),
            "read_vectors_per_s_trials": [round(args.n / t) for t in read_s],
            "read_mb_per_s": round(mb / min(read_s), 1),
            "targets": {"write_vectors_per_s": 30_000, "read_vectors_per_s": 60_000},
            "mongod": client.server_info()["version"], "pymongo": pymongo.version,
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"),
        }
    finally:
        client.drop_database(db_name)
        client.close()
        if server:
            server.stop()
        tmp.cleanup()
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
