"""Vector-index recall, speed and size (`results/index.json`): the synthetic FC-like vectors at 100k and 1M
(`benchmarks/index_bench.py`, top-level `results`) and the detector's own vectors (`benchmarks/index_real_bench.py`,
key `real_vectors`)."""

from __future__ import annotations

from renderers import table

# The setting shown for each backend in the summary table (the rows that match every item).
SUMMARY_ROWS = (("exact", {}), ("faiss-flat", {}), ("annoy", {"defaults": True}), ("hnswlib", {"ef": 50}),
                ("hnsw", {"defaults": True}), ("faiss-hnsw", {"efSearch": 32}), ("faiss-ivf", {"nprobe": 16}))
NAMES = {"exact": "exact (numpy `ExactIndex`)", "faiss-flat": "faiss `IndexFlatIP`", "annoy": "Annoy, PCA + re-rank",
         "hnswlib": "hnswlib, full dimension", "hnsw": "**HNSW here**, PCA graph + re-rank",
         "faiss-hnsw": "faiss `IndexHNSWFlat`", "faiss-ivf": "faiss `IndexIVFFlat`"}
# The case the defaults were chosen on: the tiled box-head vectors, queries held out at random.
MAIN = ("tiled", "roi_heads.box_head.fc7", "random")
HIDDEN_PARAMS = {"defaults", "pca_samples", "whiten"}


def _params(params: dict) -> str:
    shown = [f"{k} {v}" for k, v in params.items() if k not in HIDDEN_PARAMS]
    return ", ".join(shown)


def _case(real: dict, key: tuple = MAIN) -> dict:
    return next(c for c in real["cases"] if (c["set"], c["layer"], c["holdout"]) == key)


def _row(case: dict, backend: str, match: dict) -> dict:
    return next(r for r in case["results"]
                if r["backend"] == backend and all(r["params"].get(k) == v for k, v in match.items()))


def _label(r: dict) -> str:
    params = _params(r["params"])
    defaults = "defaults: " if r["params"].get("defaults") else ""
    return NAMES.get(r["backend"], r["backend"]) + (f" ({defaults}{params})" if params else "")


def _cells(r: dict) -> list:
    return [f"{r['recall_at_10']:.3f}", f"{r['ms_per_query_single']:.2f} / {r['ms_per_query_batched']:.2f}",
            f"{r['build_s']:.1f}", f"{r['size_mb']:.0f}"]


HEADER = ["backend", "`recall@10`", "ms / query, single / batched", "build s", "MB"]


def index_real_summary(index: dict) -> str:
    """One setting per backend on the tiled box-head vectors (the case the defaults were chosen on)."""
    real = index["real_vectors"]
    case = _case(real)
    rows = [[_label(r)] + _cells(r) for r in (_row(case, b, m) for b, m in SUMMARY_ROWS)]
    return (f"{case['n']:,} box-head vectors ({case['dim']}-d) of the demo's seed model, {case['queries']} held-out "
            f"queries, `recall@10` against exact search:\n\n" + table(HEADER, rows))


def index_real_sweep(index: dict) -> str:
    """Every backend and setting on the tiled box-head vectors, with peak RSS."""
    case = _case(index["real_vectors"])
    rows = [[_label(r)] + _cells(r) + [f"{r['peak_rss_mb']:.0f}"] for r in case["results"]]
    return table(HEADER + ["peak RSS MB"], rows)


def index_real_cases(index: dict) -> str:
    """Every case (set, layer, hold-out): its vectors, exact search, HNSW at its defaults, and the fastest setting
    of any backend reaching 0.95."""
    real = index["real_vectors"]
    rows = []
    for c in real["cases"]:
        exact = _row(c, "exact", {})
        hnsw = _row(c, "hnsw", {"defaults": True})
        good = [r for r in c["results"] if r["recall_at_10"] >= 0.95]
        best = min(good, key=lambda r: r["ms_per_query_single"])
        rows.append([c["set"], f"`{c['layer']}`", c["holdout"], f"{c['n']:,}", f"{c['dim']}", c["queries"],
                     c["vector_stats"]["dims_for_90pct_variance"], f"{exact['ms_per_query_single']:.3f}",
                     f"{hnsw['recall_at_10']:.3f}, {hnsw['ms_per_query_single']:.3f}",
                     f"{best['backend']} ({_params(best['params']) or 'exact'}): {best['recall_at_10']:.3f}, "
                     f"{best['ms_per_query_single']:.3f}"])
    return table(["set", "layer", "hold-out", "N", "dim", "queries", "PCA dims for 90 % of variance",
                  "exact ms / query", "HNSW defaults: `recall@10`, ms", "fastest reaching 0.95: `recall@10`, ms"],
                 rows, "llllrrrrrl")


def index_hnsw_settings(index: dict) -> str:
    """Why `HnswConfig` keeps its search settings: the cheaper setting's recall on these easy vectors."""
    real = index["real_vectors"]
    case = _case(real)
    default = _row(case, "hnsw", {"defaults": True})
    cheaper = _row(case, "hnsw", {"ef": 50, "rerank": 50})
    box = [c["vector_stats"]["dims_for_90pct_variance"] for c in real["cases"] if c["layer"] == MAIN[1]]
    p = default["params"]
    return (f"At its defaults (ef {p['ef']}, rerank {p['rerank']}, {p['base_dtype']} re-rank base) the project's "
            f"HNSW reaches `recall@10` {default['recall_at_10']:.4f} at {default['ms_per_query_single']:.2f} ms per "
            f"single query; at ef {cheaper['params']['ef']} / rerank {cheaper['params']['rerank']} it reaches "
            f"{cheaper['recall_at_10']:.4f} at {cheaper['ms_per_query_single']:.2f} ms. The box-head vectors hold "
            f"90 % of their variance in {min(box)}-{max(box)} PCA dimensions.\n")


def index_real_vectors(index: dict) -> str:
    """Where the real vectors came from and the machine they were measured on."""
    real = index["real_vectors"]
    gen = real["vectors"]["generated"]
    m = real["machine"]
    return (f"The seed model `{gen['model_version']}` of `dataengine demo --quick` over its {gen['pool_images']} pool "
            f"images (the demo set: {gen['demo_box_n']:,} box vectors, {gen['demo_image_n']} image vectors) and "
            f"over {gen['tiled_images']:,} augmented copies of them in {gen['tiled_rounds']} rounds (the tiled set: "
            f"{gen['tiled_box_n']:,} box vectors, {gen['tiled_image_n']:,} image vectors; {gen['model_settings']}). "
            f"Each set is deduplicated and its queries held out before the indexes are built. Measured {real['date'][:10]} on {m['cpu']}, "
            f"{m['cpu_count']} cores (annoy {m['annoy']}, hnswlib {m['hnswlib']}, faiss-cpu {m['faiss-cpu']}); "
            f"the run took {real['wall_s']:.0f} s.\n")


def index_synthetic(index: dict) -> str:
    """Annoy against exact search on FC-like synthetic vectors at each size."""
    p = index["parameters"]
    rows = []
    for r in index["results"]:
        rows.append([f"{r['n']:,}", f"{r['recall_at_10']:.4f}", f"{r['recall_at_1']:.3f}",
                     f"{r['annoy_ms_per_query']:.2f} / {r['annoy_batch_ms_per_query']:.2f}",
                     f"{r['exact_ms_per_query']:.1f} / {r['exact_batch_ms_per_query']:.2f}",
                     f"{r['speedup_single_vs_exact']:.1f}x", f"{r['annoy_build_s']['total']:.1f}",
                     f"{r['index_disk_bytes']['total'] / 1e9:.2f}", f"{r['peak_rss_gb']:.2f}"])
    m = index["machine"]
    head = (f"{p['dim']}-d vectors, {p['queries']:,} queries; Annoy over a {p['proj_dim']}-d PCA projection, "
            f"{p['n_trees']} trees, search_k {p['search_k']:,}, {p['rerank']} candidates re-ranked exactly. "
            f"Measured {index['date'][:10]} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB.\n\n")
    return head + table(["N", "`recall@10`", "`recall@1`", "Annoy ms / query, single / batched",
                         "exact ms / query, single / batched", "single-query speed-up", "Annoy build s",
                         "on disk GB", "peak RSS GB"], rows)


BLOCKS = {"index-real-summary": ("index.json", index_real_summary),
          "index-real-sweep": ("index.json", index_real_sweep),
          "index-real-cases": ("index.json", index_real_cases),
          "index-hnsw-settings": ("index.json", index_hnsw_settings),
          "index-real-vectors": ("index.json", index_real_vectors),
          "index-synthetic": ("index.json", index_synthetic)}
