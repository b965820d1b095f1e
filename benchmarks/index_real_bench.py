"""Vector-index recall and speed on the detector's REAL feature vectors (not fdb.vector_index.synthetic's FC-like ones).

Two layers, as the demo's model writes them to the feature database: the box-head fc7 vectors (records.BOX_LAYER,
one per detection) and the image vectors (records.IMAGE_LAYER, one per image). Two sizes per layer: the demo
pool as `dataengine demo --quick` leaves it in its database, and a tiled set of >= 100k box vectors made by
running the same seed model over seeded augmented copies of the demo's pool images. Every backend indexes the
same vectors, centred on the pool mean with cosine distance as `mining.selection` does, and answers the same
queries, held out of the pool before building, two ways (--holdouts): "random" rows of the set, and "source" rows
from images the pool does not hold (the demo's val images; for the tiled set, every augmented copy of 10% of the
source images), which is what mining's error queries are. Recall@10 is measured against `fdb.vector_index.ExactIndex`
(the ground truth); faiss `IndexFlatIP` is a cross-check of it.

Backends (each built once in its own forked process, so its build time, size and peak-RSS delta are its own; the
query-time parameters are then swept over that one build):
  exact         fdb.vector_index.ExactIndex (numpy brute force)
  faiss-flat    faiss IndexFlatIP over L2-normalised vectors
  annoy         fdb.vector_index.AnnoyIndex, AnnoyConfig's defaults; then search_k/rerank 2000/100 and 500/30
  hnswlib       hnswlib.Index(space="cosine"), M=16, ef_construction=200, ef 10/20/50/100/200
  hnsw          the project's HnswIndex (fdb.vector_index.BACKENDS["hnsw"], if fdb/vector_index/hnsw_index.py exists), HnswConfig's
                defaults; then ef/rerank 50/50 and 20/20
  faiss-hnsw    faiss IndexHNSWFlat (inner product, M=32, efConstruction 40), efSearch 16/32/64/128
  faiss-ivf     faiss IndexIVFFlat (inner product, nlist = 4 sqrt(N), trained on the pool), nprobe 2/4/8/16/32

Reproduce (nothing is written into the repository except --out's "real_vectors" key):

    export DATAENGINE_HOME=/tmp/realvec/home PREFECT_HOME=/tmp/realvec/prefect DATAENGINE_DB=realvec
    dataengine demo --quick                                     # the demo's database and seed model (~4 min)
    python benchmarks/index_real_bench.py --generate            # demo vectors + tiled vectors -> /tmp/realvec/vectors
    python benchmarks/index_real_bench.py --run --out benchmarks/results/index.json

--generate reads the demo pool's vectors with the project's API (fdb.connect + read_vectors), then runs the seed
checkpoint (detectors.checkpoint.load_checkpoint, detectors.taps.detect_with_features, as jobs.detect does with
taps) over augmented copies of the pool images (flip, crop, rescale, colour jitter; seeded) with the box score
threshold at 0 and 100 detections per image, until --target box vectors or --max-minutes. Detections that share a
proposal share its fc7 vector; only one vector per (image, proposal) is kept. Masks are not computed (they do not
touch the vectors). --run deduplicates identical rows in every set (ties make id-based recall arbitrary).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fdb.vector_index import ExactIndex  # noqa: E402
from fdb.vector_index.kernels import normalize_rows  # noqa: E402
from records import BOX_LAYER, IMAGE_LAYER  # noqa: E402

K = 10
LAYERS = {"box": BOX_LAYER, "image": IMAGE_LAYER}


# ---------------------------------------------------------------------- small helpers (as index_bench.py)
def proc_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak measured next is this step's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def machine_info() -> dict:
    from importlib.metadata import version
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "memory_gb": round(mem, 1), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "load_average_at_start": os.getloadavg()}
    for pkg in ("annoy", "hnswlib", "faiss-cpu", "torch", "torchvision"):
        try:
            info[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            pass
    try:
        import faiss
        info["faiss_omp_threads"] = faiss.omp_get_max_threads()
    except Exception:  # noqa: BLE001
        pass
    return info


# ---------------------------------------------------------------------- --generate
def _store_config(args):
    os.environ["DATAENGINE_HOME"] = args.home
    os.environ["DATAENGINE_DB"] = args.db
    from dataengine.config import store_config
    return store_config()


def read_demo_pool(args, out_dir: Path) -> dict:
    """The demo pool's vectors of both layers, from the feature database, through the project's API."""
    from fdb import connect
    from fdb import models as model_store

    fdb = connect(_store_config(args))
    models = model_store.list_models(fdb)
    counts = {m["_id"]: fdb.features.count_documents({"model_version": m["_id"], "layer": BOX_LAYER})
              for m in models}
    version = max(counts, key=counts.get)  # the model that detected over the pool (the seed)
    doc = model_store.get_model(fdb, version)
    # Every pool image the model processed (exported or not): the pool the demo indexed and mined from.
    pool_ids = sorted(fdb.images.distinct("_id", {"split": "pool", "processed_by": version}))
    meta = {"model_version": version, "checkpoint": doc["checkpoint"], "pool_images": len(pool_ids),
            "models_in_db": list(counts), "box_vectors_per_model": counts}
    uris = [d["uri"] for d in fdb.images.find({"_id": {"$in": pool_ids}}, {"uri": 1}).sort("_id", 1)]
    meta["pool_uris"] = uris
    # The val images' vectors too: mining's queries are errors on them, so they are the "other images" queries.
    val_ids = sorted(fdb.images.distinct("_id", {"split": "val", "processed_by": version}))
    meta["val_images"] = len(val_ids)
    for short, layer in LAYERS.items():
        vs = fdb.read_vectors(version, layer, image_ids=pool_ids)
        np.save(out_dir / f"demo_{short}.npy", vs.vectors.astype(np.float32))
        meta[f"demo_{short}_n"], meta[f"demo_{short}_dim"] = vs.vectors.shape
        val = fdb.read_vectors(version, layer, image_ids=val_ids)
        np.save(out_dir / f"demo_{short}_queries.npy", val.vectors.astype(np.float32))
        meta[f"demo_val_{short}_n"] = len(val)
    return meta


def augment(img, rng: np.random.Generator, round_: int):
    """A seeded random view of a CHW [0, 1] image: flip, crop (60-100 % of each side), rescale (0.75-1.3x),
    brightness / contrast / saturation jitter (0.7-1.3). Round 0 is the image itself."""
    import torch
    import torch.nn.functional as F
    if round_ == 0:
        return img
    _, h, w = img.shape
    if rng.random() < 0.5:
        img = img.flip(-1)
    ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    img = img[:, y0:y0 + ch, x0:x0 + cw]
    s = rng.uniform(0.75, 1.3)
    img = F.interpolate(img[None], size=(max(16, int(ch * s)), max(16, int(cw * s))), mode="bilinear",
                        align_corners=False)[0]
    img = img * rng.uniform(0.7, 1.3)  # brightness
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.7, 1.3) + mean  # contrast
    gray = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    img = (img - gray) * rng.uniform(0.7, 1.3) + gray  # saturation
    return torch.clamp(img, 0.0, 1.0).contiguous()


def generate_tiled(args, meta: dict, out_dir: Path) -> dict:
    import torch

    from detectors.checkpoint import load_checkpoint
    from detectors.coco import load_image
    from detectors.taps import detect_with_features

    torch.set_num_threads(os.cpu_count() or 1)
    ckpt = load_checkpoint(meta["checkpoint"])
    model = ckpt.model.eval()
    heads = model.roi_heads
    heads.score_thresh = 0.0  # as many detections as the model allows (min_score 0.0)
    heads.detections_per_img = 100
    heads.mask_roi_pool = None  # masks do not touch the vectors; skipping them only saves time
    originals = [load_image(u) for u in meta["pool_uris"]]
    rng = np.random.default_rng(args.seed)
    box, image, per_image, source = [], [], [], []
    n_box, n_det, n_img, round_ = 0, 0, 0, 0
    t0 = time.perf_counter()
    deadline = t0 + args.max_minutes * 60
    stopped = "target"
    while n_box < args.target:
        order = rng.permutation(len(originals))
        for start in range(0, len(order), args.batch_size):
            batch_src = order[start:start + args.batch_size]
            batch = [augment(originals[i], rng, round_) for i in batch_src]
            for src, out in zip(batch_src, detect_with_features(model, batch)):
                n_det += len(out.scores)
                _, first = np.unique(out.proposal_index.numpy(), return_index=True)  # one vector per proposal
                vecs = out.box_features[np.sort(first)].numpy().astype(np.float32)
                box.append(vecs)
                image.append(out.image_feature.numpy().astype(np.float32))
                per_image.append(len(vecs))
                source.append(src)
                n_box += len(vecs)
                n_img += 1
            if n_box >= args.target:
                break
            if time.perf_counter() > deadline:
                stopped = f"time limit ({args.max_minutes} min)"
                break
        print(f"round {round_}: {n_img} images, {n_box} box vectors ({n_det} detections), "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        round_ += 1
        if stopped != "target":
            break
    seconds = time.perf_counter() - t0
    box_arr = np.concatenate(box)
    np.save(out_dir / "tiled_box.npy", box_arr)
    np.save(out_dir / "tiled_image.npy", np.stack(image))
    # Which pool image each row was made from, for the "source" hold-out (queries from images not in the pool).
    np.save(out_dir / "tiled_image_source.npy", np.array(source, dtype=np.int32))
    np.save(out_dir / "tiled_box_source.npy", np.repeat(np.array(source, dtype=np.int32), per_image))
    return {"tiled_images": n_img, "tiled_rounds": round_, "tiled_detections": n_det,
            "tiled_box_n": len(box_arr), "tiled_image_n": n_img, "tiled_box_dim": box_arr.shape[1],
            "tiled_image_dim": int(image[0].shape[0]), "generation_s": round(seconds, 1), "stopped_by": stopped,
            "box_vectors_per_image_mean": float(np.mean(per_image)),
            "ms_per_image": round(seconds / n_img * 1e3, 1), "torch_threads": torch.get_num_threads(),
            "augmentation": "round 0: the pool images as they are; later rounds: seeded random hflip (p=0.5), crop "
                            "60-100% of each side, rescale 0.75-1.3x, brightness/contrast/saturation x0.7-1.3",
            "model_settings": "roi_heads.score_thresh=0.0, detections_per_img=100, masks skipped; "
                              "one fc7 vector per (image, proposal)",
            "seed": args.seed}


def cmd_generate(args) -> None:
    out_dir = Path(args.vec_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = read_demo_pool(args, out_dir)
    print(f"demo pool ({meta['model_version']}): {meta['pool_images']} images, box {meta['demo_box_n']} x "
          f"{meta['demo_box_dim']}, image {meta['demo_image_n']} x {meta['demo_image_dim']}", flush=True)
    meta.update(generate_tiled(args, meta, out_dir))
    meta["generated_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps({k: v for k, v in meta.items() if k != "pool_uris"}, indent=2))


# ---------------------------------------------------------------------- --run: the backends
# Globals set in the parent before each fork: every backend's child sees the same arrays without a copy.
POOL: np.ndarray | None = None     # (n, d) float32, centred on the pool mean
QUERIES: np.ndarray | None = None  # (q, d) float32, centred on the same mean
IDS: np.ndarray | None = None      # (n,) S12
TRUTH: np.ndarray | None = None    # (q, K) S12, from ExactIndex
ARGS: argparse.Namespace | None = None
MEAN: np.ndarray | None = None     # (d,) the pool mean


def _unit_copy(x: np.ndarray) -> np.ndarray:
    return normalize_rows(np.ascontiguousarray(x, dtype=np.float32))


class ProjectIndex:
    """An fdb.vector_index backend: ids in, ids out. Query-time parameters (search_k, rerank, ef) are read from the
    index's params at every query, so one build serves the whole sweep."""

    def __init__(self, backend: str, params: dict):
        self.backend, self.build_params = backend, params

    def build(self, pool, ids):
        from fdb.vector_index import build_index
        self.index = build_index(pool, ids, "real", "bench", backend=self.backend, exact_threshold=0,
                                 **self.build_params)
        self.defaults = dict(self.index.params)

    def set_query(self, qp: dict) -> None:
        self.index.params.update({**self.defaults, **qp})

    def query(self, q):
        return self.index.query(q, K)[0]

    def size_bytes(self, tmp: Path) -> int:
        self.index.save(tmp / "index")
        return dir_size(tmp / "index")


class Hnswlib:
    def __init__(self, M: int, ef_construction: int):
        self.M, self.efc = M, ef_construction

    def build(self, pool, ids):
        import hnswlib
        self.ids = ids
        self.index = hnswlib.Index(space="cosine", dim=pool.shape[1])
        self.index.init_index(max_elements=len(pool), M=self.M, ef_construction=self.efc, random_seed=0)
        self.index.add_items(pool, np.arange(len(pool)))

    def set_query(self, qp: dict) -> None:
        self.index.set_ef(qp["ef"])

    def query(self, q):
        labels, _ = self.index.knn_query(q, k=K)
        return self.ids[labels]

    def size_bytes(self, tmp: Path) -> int:
        self.index.save_index(str(tmp / "hnsw.bin"))
        return (tmp / "hnsw.bin").stat().st_size


class Faiss:
    def __init__(self, kind: str, **params):
        self.kind, self.params = kind, params

    def build(self, pool, ids):
        import faiss
        self.ids = ids
        base = _unit_copy(pool)
        d = base.shape[1]
        if self.kind == "flat":
            self.index = faiss.IndexFlatIP(d)
        elif self.kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(d, self.params["M"], faiss.METRIC_INNER_PRODUCT)
        elif self.kind == "ivf":
            self.quantizer = faiss.IndexFlatIP(d)
            self.index = faiss.IndexIVFFlat(self.quantizer, d, self.params["nlist"], faiss.METRIC_INNER_PRODUCT)
            self.index.train(base)
        self.index.add(base)

    def set_query(self, qp: dict) -> None:
        if "efSearch" in qp:
            self.index.hnsw.efSearch = qp["efSearch"]
        if "nprobe" in qp:
            self.index.nprobe = qp["nprobe"]

    def query(self, q):
        _, labels = self.index.search(_unit_copy(q), K)
        return self.ids[np.maximum(labels, 0)]

    def size_bytes(self, tmp: Path) -> int:
        import faiss
        return int(faiss.serialize_index(self.index).nbytes)


def make(backend: str, params: dict):
    if backend in ("exact", "annoy", "hnsw"):
        return ProjectIndex(backend, params)
    if backend == "hnswlib":
        return Hnswlib(**params)
    return Faiss(backend.split("-", 1)[1], **params)


def bench_one(backend: str, build_params: dict, sweep: list[dict]) -> list[dict]:
    """Build one backend once, size it, then time and score each query-time setting of `sweep` (runs in its own
    forked process: build_s, size_mb and peak_rss_mb are the build's, shared by the sweep's rows)."""
    pool, queries, ids, truth, args = POOL, QUERIES, IDS, TRUTH, ARGS
    tmp = Path(tempfile.mkdtemp(prefix="index-real-", dir=args.workdir))
    try:
        reset_peak_rss()
        rss0 = proc_mb()
        index = make(backend, build_params)
        t0 = time.perf_counter()
        index.build(pool, ids)
        build_s = time.perf_counter() - t0
        size = index.size_bytes(tmp)
        rows = []
        for qp in sweep:
            if hasattr(index, "set_query"):
                index.set_query(qp)
            index.query(queries[:5])  # warm-up
            t0 = time.perf_counter()
            batch = index.query(queries)
            batch_ms = (time.perf_counter() - t0) / len(queries) * 1e3
            ns = min(len(queries), args.single_queries)
            single = []
            t0 = time.perf_counter()
            for q in queries[:ns]:
                single.append(index.query(q[None, :])[0])
            single_ms = (time.perf_counter() - t0) / ns * 1e3
            single = np.array(single)
            params = {**build_params, **qp}
            if backend in ("annoy", "hnsw") and not qp:
                params = {"defaults": True, **{k: v for k, v in index.defaults.items()
                                               if k not in ("seed", "n_jobs", "threads", "query_threads")}}
            rows.append({"backend": backend, "params": params, "recall_at_10": round(recall_at(batch, truth), 4),
                         "recall_at_10_single": round(recall_at(single, truth[:ns]), 4),
                         "ms_per_query_single": round(single_ms, 3), "ms_per_query_batched": round(batch_ms, 3),
                         "single_queries_timed": ns, "build_s": round(build_s, 2), "size_mb": round(size / 1e6, 1),
                         "load_average_1m": round(os.getloadavg()[0], 2)})  # other work on the machine skews timings
        peak = round(proc_mb("VmHWM") - rss0, 1)
        for r in rows:
            r["peak_rss_mb"] = peak
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def settings(n: int, args) -> list[tuple[str, dict, list[dict]]]:
    """(backend, build parameters, query-time settings swept over one build). The brief's settings plus cheaper
    ones, so the "recommended" pick can find the cheapest setting that still reaches recall@10 >= 0.95."""
    from fdb.vector_index import BACKENDS
    out = [("exact", {}, [{}]), ("faiss-flat", {}, [{}]),
           ("annoy", {}, [{}, {"search_k": 2000, "rerank": 100}, {"search_k": 500, "rerank": 30}])]
    out.append(("hnswlib", {"M": 16, "ef_construction": 200}, [{"ef": ef} for ef in (10, 20, 50, 100, 200)]))
    if (ROOT / "fdb" / "index" / "hnsw_index.py").exists() and "hnsw" in BACKENDS:
        out.append(("hnsw", {}, [{}, {"ef": 50, "rerank": 50}, {"ef": 20, "rerank": 20}]))
    out.append(("faiss-hnsw", {"M": 32}, [{"efSearch": ef} for ef in (16, 32, 64, 128)]))
    nlist = max(1, int(round(4 * np.sqrt(n))))
    out.append(("faiss-ivf", {"nlist": nlist}, [{"nprobe": p} for p in (2, 4, 8, 16, 32)]))
    return [s for s in out if not args.backends or s[0] in args.backends]


def dedupe(x: np.ndarray) -> np.ndarray:
    """Row numbers of the first copy of each distinct row."""
    seen, keep = set(), []
    for i, row in enumerate(x):
        h = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
        if h not in seen:
            seen.add(h)
            keep.append(i)
    return np.array(keep, dtype=np.int64)


HOLDOUTS = {
    "random": "queries: random rows of the set, removed from the pool before building",
    "source": "queries from images the pool does not hold: demo set -> the val images' vectors (what mining's "
              "error queries come from); tiled set -> every augmented copy of 10% of the source images is "
              "removed from the pool and the queries are drawn from those rows",
}


def split(name: str, short: str, holdout: str, vec_dir: Path, args) -> tuple[np.ndarray, np.ndarray, int]:
    """(pool, queries, duplicate rows removed) of one case, uncentred."""
    rng = np.random.default_rng(args.seed)
    vectors = np.load(vec_dir / f"{name}_{short}.npy").astype(np.float32)
    keep = dedupe(vectors)
    dups = len(vectors) - len(keep)
    if holdout == "random":
        vectors = vectors[keep]
        nq = min(args.queries, len(vectors) // 5)
        order = rng.permutation(len(vectors))
        return vectors[np.sort(order[nq:])], vectors[np.sort(order[:nq])], dups
    if name == "demo":
        queries = np.load(vec_dir / f"demo_{short}_queries.npy").astype(np.float32)
        pick = np.sort(rng.permutation(len(queries))[:args.queries])
        return vectors[keep], queries[pick], dups
    source = np.load(vec_dir / f"tiled_{short}_source.npy")[keep]
    vectors = vectors[keep]
    sources = np.unique(source)
    held_src = rng.choice(sources, size=max(1, round(0.1 * len(sources))), replace=False)
    held = np.isin(source, held_src)
    rows = np.flatnonzero(held)
    pick = np.sort(rng.permutation(rows)[:args.queries])
    return vectors[~held], vectors[pick], dups


def vector_stats() -> dict:
    """How hard the set is: PCA spectrum of the centred pool, ReLU zeros, and the relative contrast (mean cosine
    distance from a query to the pool / distance to its 10th neighbour; near 1 = neighbours hard to tell apart)."""
    rng = np.random.default_rng(0)
    sample = POOL[np.sort(rng.permutation(len(POOL))[:20_000])].astype(np.float64)
    ev = np.linalg.eigvalsh(np.cov(sample, rowvar=False))[::-1]
    ev = np.maximum(ev, 0) / ev.sum()
    cum = np.cumsum(ev)
    unit_q, unit_s = normalize_rows(QUERIES[:200]), normalize_rows(sample.astype(np.float32))
    d = 1.0 - unit_q @ unit_s.T
    d.sort(axis=1)
    kth = min(K, d.shape[1]) - 1
    return {"pca_variance_top10": round(float(cum[min(9, len(cum) - 1)]), 3),
            "pca_variance_top128": round(float(cum[min(127, len(cum) - 1)]), 3),
            "dims_for_90pct_variance": int(np.searchsorted(cum, 0.9) + 1),
            "zero_fraction_raw": round(float(np.mean(sample + MEAN == 0)), 3),
            "relative_contrast_at_10": round(float(np.mean(d.mean(axis=1) / np.maximum(d[:, kth], 1e-9))), 2),
            "sample": len(sample)}


def run_case(name: str, short: str, holdout: str, vec_dir: Path, args) -> dict:
    global POOL, QUERIES, IDS, TRUTH, ARGS, MEAN
    pool, queries, dups = split(name, short, holdout, vec_dir, args)
    mean = MEAN = pool.mean(axis=0)
    POOL = np.ascontiguousarray(pool - mean, dtype=np.float32)
    QUERIES = np.ascontiguousarray(queries - mean, dtype=np.float32)
    IDS = (np.arange(len(POOL), dtype=">u8") + 1).view("S8").astype("S12")  # distinct, none the pad id b""
    ARGS = args
    TRUTH = ExactIndex("real", "bench").build(POOL, IDS).query(QUERIES, K)[0]
    layer = LAYERS[short]
    case = {"set": name, "layer": layer, "holdout": holdout, "n": len(POOL), "dim": POOL.shape[1],
            "queries": len(QUERIES), "duplicates_removed": dups, "vector_stats": vector_stats(), "results": []}
    print(f"\n== {name} {layer} holdout={holdout}: N={len(POOL)} d={POOL.shape[1]} queries={len(QUERIES)} "
          f"(duplicate rows removed: {dups})", flush=True)
    for backend, build_params, sweep in settings(len(POOL), args):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
            rows = ex.submit(bench_one, backend, build_params, sweep).result()
        for r in rows:
            case["results"].append(r)
            shown = {k: v for k, v in r["params"].items() if k not in ("pca_samples", "base_dtype")}
            print(f"  {backend:<11} {json.dumps(shown)[:60]:<60} R@10 {r['recall_at_10']:.3f}  single "
                  f"{r['ms_per_query_single']:8.3f} ms  batch {r['ms_per_query_batched']:7.3f} ms  build "
                  f"{r['build_s']:7.1f} s  {r['size_mb']:7.1f} MB  peak +{r['peak_rss_mb']:.0f} MB", flush=True)
    return case


def recommend(cases: list[dict]) -> dict:
    """Per case and backend: the setting reaching recall@10 >= 0.95 at the lowest single-query latency."""
    out = {}
    for c in cases:
        per = {}
        for r in c["results"]:
            if r["recall_at_10"] < 0.95:
                continue
            best = per.get(r["backend"])
            if best is None or r["ms_per_query_single"] < best["ms_per_query_single"]:
                per[r["backend"]] = {"params": r["params"], "recall_at_10": r["recall_at_10"],
                                     "ms_per_query_single": r["ms_per_query_single"]}
        missed = sorted({r["backend"] for r in c["results"]} - set(per))
        out[f"{c['set']} {c['layer']} N={c['n']} holdout={c['holdout']}"] = {**per, "none_reached_0.95": missed}
    return out


def cmd_run(args) -> None:
    import annoy  # noqa: F401,E401 - loaded before the forks: a library's own pages are no backend's
    vec_dir = Path(args.vec_dir)
    meta = json.loads((vec_dir / "meta.json").read_text())
    cases = []
    started = time.perf_counter()
    for holdout in args.holdouts:
        for name in args.sets:
            for short in args.layers:
                cases.append(run_case(name, short, holdout, vec_dir, args))
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/index_real_bench.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "vectors": {
            "source": f"`dataengine demo --quick` (DATAENGINE_DB={args.db}); seed model {meta['model_version']}",
            "demo": f"the demo pool's vectors as the demo wrote them (min_score 0.25), read with fdb read_vectors "
                    f"over its {meta['pool_images']} processed pool images",
            "tiled": f"the seed checkpoint over {meta['tiled_images']} augmented copies of the "
                     f"{meta['pool_images']} pool images ({meta['tiled_rounds']} rounds); {meta['model_settings']}; "
                     f"{meta['augmentation']}; {meta['tiled_detections']} detections -> {meta['tiled_box_n']} "
                     f"box vectors; generation {meta['generation_s']} s on {meta['torch_threads']} torch threads "
                     f"({meta['ms_per_image']} ms/image), stopped by {meta['stopped_by']}",
            "generation_s": meta["generation_s"],
            "generation_note": meta.get("generation_note"),
            "n_dim": {f"{c['set']} {c['layer']} holdout={c['holdout']}": [c["n"], c["dim"]] for c in cases},
            "generated": {k: v for k, v in meta.items() if k != "pool_uris"},
        },
        "holdouts": {h: HOLDOUTS[h] for h in args.holdouts},
        "method": f"rows deduplicated; up to {args.queries} queries per case (random hold-out: at most N/5), see "
                  f"holdouts; n = pool size after the hold-out; pool and queries centred on the pool mean; cosine; "
                  f"recall@10 against fdb.vector_index.ExactIndex; single = one "
                  f"query per call (first --single-queries={args.single_queries} queries), batched = all queries in "
                  f"one call; size_mb = what serves queries (saved directory / serialised index, original vectors "
                  f"included); peak_rss_mb = VmHWM delta over the build and queries, each backend in its own process",
        "cases": cases,
        "recommended_defaults": recommend(cases),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result["recommended_defaults"], indent=2))
    if args.out:
        out = Path(args.out)
        doc = json.loads(out.read_text()) if out.exists() else {}
        if args.note:
            result["growing_pool_pick"] = args.note
        elif isinstance(doc.get("real_vectors"), dict) and "growing_pool_pick" in doc["real_vectors"]:
            result["growing_pool_pick"] = doc["real_vectors"]["growing_pool_pick"]
        doc["real_vectors"] = result
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out} (key real_vectors)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generate", action="store_true", help="read the demo pool's vectors and make the tiled ones")
    ap.add_argument("--run", action="store_true", help="benchmark every backend on the generated vectors")
    ap.add_argument("--vec-dir", default="/tmp/realvec/vectors", help="where vectors and meta.json go")
    ap.add_argument("--home", default=os.environ.get("DATAENGINE_HOME", "/tmp/realvec/home"),
                    help="the demo's data home (DATAENGINE_HOME)")
    ap.add_argument("--db", default=os.environ.get("DATAENGINE_DB", "realvec"), help="the demo's database name")
    ap.add_argument("--target", type=int, default=100_000, help="box vectors to generate")
    ap.add_argument("--max-minutes", type=float, default=25.0, help="generation time limit")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--sets", nargs="+", default=["demo", "tiled"], choices=["demo", "tiled"])
    ap.add_argument("--layers", nargs="+", default=["box", "image"], choices=list(LAYERS))
    ap.add_argument("--holdouts", nargs="+", default=["random", "source"], choices=list(HOLDOUTS),
                    help="how queries are chosen (see the docstring); every case runs once per hold-out")
    ap.add_argument("--backends", nargs="*", default=None, help="only these backends (default: all)")
    ap.add_argument("--queries", type=int, default=500, help="rows held out as queries (at most N/5)")
    ap.add_argument("--single-queries", type=int, default=500, help="queries timed one per call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where indexes are saved to be sized (default: a temp dir)")
    ap.add_argument("--note", default=None, help="the growing_pool_pick text stored with the results")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "index.json"),
                    help="JSON file whose 'real_vectors' key is replaced ('' to write nothing)")
    args = ap.parse_args()
    if not (args.generate or args.run):
        ap.error("give --generate and/or --run")
    if args.generate:
        cmd_generate(args)
    if args.run:
        cmd_run(args)


if __name__ == "__main__":
    main()
