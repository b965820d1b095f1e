"""Vector-index benchmark: Annoy (PCA + Annoy + exact re-ranking) against exact search, on FC-like vectors.

    python benchmarks/index_bench.py [--sizes 100000 1000000] [--queries 1000] [--n-trees 50] [--search-k 2000]
                                     [--rerank 100] [--proj-dim 64] [--whiten] [--out benchmarks/results/index.json]

For each N: generate N x --dim FC-like vectors (fdb.vector_index.synthetic: low-dimensional latent clusters mixed through
a random matrix, ReLU, noise; seeded), build the Annoy index (projection and Annoy timed separately), save it
through `save_index` (versioned directory + CURRENT) and load it back memory-mapped, as a server would, then time

  * Annoy: a single-query loop over --queries queries, and the same queries as one batch;
  * exact (ExactIndex, brute force in numpy): the batch of --exact-queries queries, which is also the ground
    truth, and a single-query loop over --exact-single of them;

and report recall@10 of Annoy against exact search in the original space, index size on disk and peak RSS. Each N
runs in its own forked process so its peak RSS is its own. Queries come from the same generator (another stream),
not from the pool, like the error vectors mining sends. Target at N = 1M: recall@10 >= 0.95 at <= 1/10 of exact
search's single-query latency, build <= 10 min, peak RSS below ~12 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fdb.vector_index import AnnoyConfig, AnnoyIndex, ExactIndex, load_current, save_index  # noqa: E402
from fdb.vector_index.kernels import normalize_rows  # noqa: E402
from fdb.vector_index.synthetic import FCLikeGenerator  # noqa: E402


def rss_gb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def single_loop(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Ids found and mean ms per query, one query per call."""
    ids = []
    t0 = time.perf_counter()
    for q in queries:
        ids.append(index.query(q[None, :], k)[0][0])
    return np.array(ids), (time.perf_counter() - t0) / len(queries) * 1e3


def run_size(n: int, args: argparse.Namespace) -> dict:
    k = 10
    annoy_params = dict(proj_dim=args.proj_dim, whiten=args.whiten, pca_samples=args.pca_samples,
                        n_trees=args.n_trees, search_k=args.search_k, rerank=args.rerank, seed=args.seed,
                        n_jobs=args.n_jobs)
    res: dict = {"n": n, "dim": args.dim, "k": k}
    gen = FCLikeGenerator(dim=args.dim, seed=args.seed)

    # The pool is generated straight into one array and normalised in place, chunk by chunk: both indexes then
    # take it as is (unit float32 rows need no copy), so a 1M x 1024 pool costs 4 GB once.
    t0 = time.perf_counter()
    base = gen.generate(n)
    for start in range(0, n, 65536):
        normalize_rows(base[start:start + 65536], out=base[start:start + 65536])
    queries = normalize_rows(gen.generate(args.queries, stream=1))
    ids = np.arange(n, dtype=">u8").view("S8").astype("S12")  # any distinct 12-byte ids
    res["generate_s"] = time.perf_counter() - t0
    res["rss_after_generate_gb"] = rss_gb()

    # ------------------------------------------------------------------ annoy: build, save, load memory-mapped
    built = AnnoyIndex("bench", "fc7", name=f"bench-{n}", **annoy_params).build(base, ids)
    bs = built.spec.build_seconds
    res["annoy_build_s"] = {"projection": bs["projection"], "annoy": bs["annoy_add"] + bs["annoy_build"],
                            "annoy_add": bs["annoy_add"], "annoy_trees": bs["annoy_build"],
                            "total": sum(bs.values())}
    res["projection"] = built.spec.projection
    res["rss_after_annoy_build_gb"] = rss_gb()
    root = Path(args.workdir)
    t0 = time.perf_counter()
    version_dir = save_index(built, root, f"bench-{n}")
    res["annoy_save_s"] = time.perf_counter() - t0
    del built
    annoy_index = load_current(root, f"bench-{n}")
    files = {p.name: p.stat().st_size for p in version_dir.iterdir()}
    res["index_disk_bytes"] = {"total": dir_size(version_dir), **files}

    annoy_index.query(queries[:20], k)  # warm-up: first touches of the mmapped files
    annoy_ids, res["annoy_ms_per_query"] = single_loop(annoy_index, queries, k)
    t0 = time.perf_counter()
    batch_ids, _ = annoy_index.query(queries, k)
    res["annoy_batch_ms_per_query"] = (time.perf_counter() - t0) / len(queries) * 1e3
    assert np.array_equal(batch_ids, annoy_ids), "batched and single-query annoy results differ"

    # ------------------------------------------------------------------ exact: ground truth and latency
    exact = ExactIndex("bench", "fc7").build(base, ids)
    assert exact._base is base  # no copy was made
    nq = min(args.exact_queries, len(queries))
    t0 = time.perf_counter()
    truth, truth_d = exact.query(queries[:nq], k)
    res["exact_batch_ms_per_query"] = (time.perf_counter() - t0) / nq * 1e3
    ns = min(args.exact_single, nq)
    exact.query(queries[:1], k)  # warm-up
    single_truth, res["exact_ms_per_query"] = single_loop(exact, queries[:ns], k)
    assert np.array_equal(single_truth, truth[:ns])

    res["recall_at_10"] = recall_at(annoy_ids[:nq], truth)
    res["recall_at_1"] = float(np.mean(annoy_ids[:nq, 0] == truth[:, 0]))
    res["exact_queries"], res["exact_single_queries"], res["queries"] = nq, ns, len(queries)
    res["speedup_single_vs_exact"] = res["exact_ms_per_query"] / res["annoy_ms_per_query"]
    res["peak_rss_gb"] = rss_gb("VmHWM")
    if not args.keep_index:
        shutil.rmtree(root / f"bench-{n}", ignore_errors=True)
    return res


def machine_info() -> dict:
    import annoy  # noqa: F401 (version via metadata)
    from importlib.metadata import version
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem, 1), "python": platform.python_version(),
            "numpy": np.__version__, "annoy": version("annoy"), "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()}


def print_table(results: list[dict]) -> None:
    head = (f"{'N':>9} {'build s (pca+annoy)':>20} {'annoy ms/q':>10} {'batch':>7} {'exact ms/q':>10} "
            f"{'batch':>7} {'speedup':>7} {'recall@10':>9} {'disk MB (annoy/total)':>22} {'peak GB':>7}")
    print(head)
    print("-" * len(head))
    for r in results:
        b = r["annoy_build_s"]
        disk = r["index_disk_bytes"]
        print(f"{r['n']:>9} {b['projection']:>8.1f}+{b['annoy']:<6.1f}={b['total']:<4.0f} "
              f"{r['annoy_ms_per_query']:>10.3f} {r['annoy_batch_ms_per_query']:>7.3f} "
              f"{r['exact_ms_per_query']:>10.2f} {r['exact_batch_ms_per_query']:>7.2f} "
              f"{r['speedup_single_vs_exact']:>6.0f}x {r['recall_at_10']:>9.3f} "
              f"{disk.get('annoy.ann', 0) / 1e6:>10.0f}/{disk['total'] / 1e6:<11.0f} {r['peak_rss_gb']:>7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=1000, help="annoy queries timed (single loop and batch)")
    ap.add_argument("--exact-queries", type=int, default=1000, help="queries with exact ground truth")
    ap.add_argument("--exact-single", type=int, default=30, help="exact queries timed one by one")
    ap.add_argument("--proj-dim", type=int, default=AnnoyConfig.proj_dim)
    ap.add_argument("--whiten", action=argparse.BooleanOptionalAction,
                    default=AnnoyConfig.whiten)
    ap.add_argument("--pca-samples", type=int, default=AnnoyConfig.pca_samples)
    ap.add_argument("--n-trees", type=int, default=AnnoyConfig.n_trees)
    ap.add_argument("--search-k", type=int, default=AnnoyConfig.search_k)
    ap.add_argument("--rerank", type=int, default=AnnoyConfig.rerank)
    ap.add_argument("--n-jobs", type=int, default=AnnoyConfig.n_jobs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where indexes are saved (default: a temp dir)")
    ap.add_argument("--keep-index", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "index.json"))
    args = ap.parse_args()

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="index-bench-")
        args.workdir = tmp.name
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB; load average {info['load_average_at_start']}")
    results = []
    started = time.perf_counter()
    try:
        for n in args.sizes:
            # One fresh process per size: its peak RSS is its own, and its memory is all returned afterwards.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
                t0 = time.perf_counter()
                r = pool.submit(run_size, n, args).result()
                r["wall_s"] = time.perf_counter() - t0
            results.append(r)
            print(f"N={n}: done in {r['wall_s']:.0f} s", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print_table(results)

    params = {k: v for k, v in vars(args).items() if k not in ("out", "workdir", "keep_index")}
    out = {"benchmark": "index", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": info, "parameters": params, "generator": vars_of(FCLikeGenerator(dim=args.dim)),
           "total_wall_s": time.perf_counter() - started, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"saved {args.out}")


def vars_of(gen: FCLikeGenerator) -> dict:
    return {k: getattr(gen, k) for k in ("latent", "clusters", "local_dims", "local_scale", "jitter", "noise")}


if __name__ == "__main__":
    main()
