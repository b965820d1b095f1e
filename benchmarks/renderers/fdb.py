"""The feature database's write and bulk-read rates (`benchmarks/fdb_bench.py` -> `results/fdb.json`)."""

from __future__ import annotations

from renderers import table


def fdb_rates(r: dict) -> str:
    """Write and bulk-read rates of N vectors through fdb, against the bench's targets."""
    targets = r.get("targets", {})

    def target(key: str) -> str:
        return f"≥ {targets[key]:,}" if key in targets else "–"

    rows = [
        ["write (median of trials)", f"{r['write_vectors_per_s']:,}", f"{r['write_mb_per_s']:.1f}",
         target("write_vectors_per_s"), ", ".join(f"{v:,}" for v in r["write_vectors_per_s_trials"])],
        ["bulk read (best of trials)", f"{r['read_vectors_per_s']:,}", f"{r['read_mb_per_s']:.1f}",
         target("read_vectors_per_s"), ", ".join(f"{v:,}" for v in r["read_vectors_per_s_trials"])],
        ["bulk read (first, cold)", f"{r['read_vectors_per_s_first']:,}", "–", "–", "–"],
    ]
    head = (f"{r['n']:,} vectors of {r['dim']}-d {r['dtype']} ({r['payload_mb']:.1f} MB of payload); "
            f"mongod {r['mongod']}, pymongo {r['pymongo']}, {r['machine']}, {r['date']}.\n\n")
    return head + table(["pass", "vectors / s", "MB / s", "target (vectors / s)", "every trial (vectors / s)"],
                        rows, "lrrrr")


def fdb_summary(r: dict) -> str:
    """One sentence: the two rates and whether they meet the targets."""
    t = r.get("targets", {})
    met = [r["write_vectors_per_s"] >= t.get("write_vectors_per_s", 0),
           r["read_vectors_per_s"] >= t.get("read_vectors_per_s", 0)]
    return (f"{r['n']:,} feature vectors of {r['dim']}-d {r['dtype']} are written at {r['write_vectors_per_s']:,} "
            f"vectors/s and bulk-read at {r['read_vectors_per_s']:,} vectors/s (best read; the first, cold one "
            f"{r['read_vectors_per_s_first']:,}) on {r['machine']}: "
            + ("both targets met" if all(met) else "a target missed") + ".\n")


BLOCKS = {"fdb-rates": ("fdb.json", fdb_rates), "fdb-summary": ("fdb.json", fdb_summary)}
