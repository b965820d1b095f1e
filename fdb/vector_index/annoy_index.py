"""Approximate search: PCA projection + Annoy for candidates, then exact re-ranking in the original space.

Why three stages (measured, see ../shared/README.md "Vector search"): Annoy on raw 1024-d FC vectors reaches a
recall@10 of only ~0.26 at a useful speed, because random-hyperplane trees split poorly in 1024 dims where most of
the variance lives in a few dozen directions. So:

1. a PCA projection learned on (a seeded sample of) the pool, to `proj_dim` dims; optionally whitened (every kept
   direction scaled to unit variance), which measured worse on FC-like vectors, so off by default;
2. Annoy (`angular` for cosine, `euclidean` for euclidean) over the projected vectors, asked for `rerank`
   candidates with `search_k` nodes inspected;
3. those candidates re-ranked *exactly* against the stored original vectors (a memory-mapped .npy), so the
   distances returned are true original-space distances, comparable with `ExactIndex`'s.

Neighbours in the projected space alone are mediocre; re-ranking a few hundred candidates lifts recall above 0.95
because the true neighbours are almost always *among* the projected-space candidates. Re-ranking reads `rerank`
random rows of the original vectors per query: cheap from the page cache, ~`rerank` disk reads when cold.

Determinism: the sample for the PCA comes from `numpy.random.default_rng(seed)` and Annoy gets `set_seed(seed)`;
Annoy builds its trees on `n_jobs` threads each seeded from that seed, so the same data, parameters and `n_jobs`
give the same index (n_jobs=-1 means "all cores", so pin it when builds must match across machines).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import annoy
import numpy as np

from fdb.vector_index.base import VECTORS_FILE, VectorIndex
from fdb.vector_index.kernels import normalize_rows, prepare_base

ANNOY_FILE = "annoy.ann"
PROJECTION_FILE = "projection.npz"


class Projection:
    """x -> ((x - mean) @ components.T) * scales, then unit rows if `normalize` (for Annoy's angular metric)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, scales: np.ndarray, normalize: bool):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.components = np.ascontiguousarray(components, dtype=np.float32)  # (p, d)
        self.scales = np.asarray(scales, dtype=np.float32)  # (p,)
        self.normalize = normalize
        # Fold the whitening scales into the matrix: one matmul per block.
        self._matrix = np.ascontiguousarray((self.components * self.scales[:, None]).T)  # (d, p)
        self._offset = self.mean @ self._matrix  # (p,)

    @property
    def dim(self) -> int:
        return len(self.scales)

    @classmethod
    def fit(cls, base: np.ndarray, dim: int, whiten: bool, samples: int, seed: int, normalize: bool,
            chunk: int = 8192) -> tuple["Projection", float]:
        """PCA on at most `samples` rows of `base` drawn with a seeded RNG. Returns the projection and the
        fraction of the sample's variance the kept directions explain."""
        n, d = base.shape
        dim = min(dim, d)
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=min(n, samples), replace=False))
        # Mean and covariance accumulated chunk by chunk: no (samples x d) copy. Each chunk's product runs in
        # float32 (twice as fast as float64, and only `chunk` rows are summed at that precision); the running
        # totals are float64 so 100k rows do not lose the small eigenvalues.
        mean = np.zeros(d)
        for start in range(0, len(rows), chunk):
            mean += np.asarray(base[rows[start:start + chunk]], dtype=np.float64).sum(axis=0)
        mean /= len(rows)
        mean32 = mean.astype(np.float32)
        cov = np.zeros((d, d))
        for start in range(0, len(rows), chunk):
            block = np.asarray(base[rows[start:start + chunk]], dtype=np.float32) - mean32
            cov += block.T @ block
        cov /= max(len(rows) - 1, 1)
        eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
        order = np.argsort(eigvals)[::-1][:dim]
        top = np.clip(eigvals[order], 0.0, None)
        components = eigvecs[:, order].T
        if whiten:
            # The floor keeps a (near-)zero-variance direction from being blown up into pure noise.
            scales = 1.0 / np.sqrt(np.maximum(top, top[0] * 1e-6 if top[0] > 0 else 1.0))
        else:
            scales = np.ones(dim)
        explained = float(top.sum() / max(np.clip(eigvals, 0, None).sum(), 1e-30))
        return cls(mean, components, scales, normalize), explained

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float32) @ self._matrix
        y -= self._offset
        return normalize_rows(y, out=y) if self.normalize else y

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components, scales=self.scales,
                 normalize=np.array(self.normalize))

    @classmethod
    def load(cls, path: Path) -> "Projection":
        with np.load(path) as z:
            return cls(z["mean"], z["components"], z["scales"], bool(z["normalize"]))


@dataclass(frozen=True)
class AnnoyConfig:
    """The Annoy backend's parameters, each default defined once.

    Tuned on 1M FC-like 1024-d vectors (benchmarks/index_bench.py): 128 dims, search_k 16000 and 400 re-ranked
    candidates gave recall@10 0.99 at ~2 ms/query against 500 ms for exact search; 64 dims, 2000 and 100 (the
    values measured on earlier data) gave only 0.76 there."""

    proj_dim: int = 128  # dims of the PCA projection Annoy indexes
    # Scale each PCA direction to unit variance. Off by default: on FC-like vectors it amplifies the low-variance,
    # noise-dominated directions, and the projected-space candidates then miss more of the original-space
    # neighbours (at N=100k, 64 dims: the exact top 100 in projected space hold 75% of the true top 10 whitened,
    # 97% not).
    whiten: bool = False
    pca_samples: int = 100_000  # rows the PCA is fitted on (seeded sample)
    n_trees: int = 50
    search_k: int = 16000  # Annoy nodes inspected per query (more: better recall, slower)
    rerank: int = 400  # candidates re-ranked exactly in the original space
    seed: int = 0
    n_jobs: int = -1  # threads for Annoy's build
    query_threads: int = 0  # threads for a batch of queries; 0 = one per core (max 8)


class AnnoyIndex(VectorIndex):
    backend = "annoy"
    config_class = AnnoyConfig

    @property
    def annoy_metric(self) -> str:
        return "angular" if self._spec.metric == "cosine" else "euclidean"

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> "AnnoyIndex":
        p = self.params
        vectors = self._start_build(vectors, ids)
        self._base = prepare_base(vectors, self._spec.metric)
        n = len(self._base)

        t0 = time.perf_counter()
        self._projection, explained = Projection.fit(self._base, p["proj_dim"], p["whiten"], p["pca_samples"],
                                                     p["seed"], normalize=self.annoy_metric == "angular")
        t1 = time.perf_counter()

        self._annoy = annoy.AnnoyIndex(self._projection.dim, self.annoy_metric)
        self._annoy.set_seed(p["seed"])
        chunk = 16384
        for start in range(0, n, chunk):
            # Annoy's add_item reads a Python sequence; tolist() of a block is far faster than numpy rows.
            for i, row in enumerate(self._projection(self._base[start:start + chunk]).tolist(), start):
                self._annoy.add_item(i, row)
        t2 = time.perf_counter()
        self._annoy.build(p["n_trees"], n_jobs=p["n_jobs"])
        t3 = time.perf_counter()

        self._spec.projection = {"kind": "pca", "dim": self._projection.dim, "whiten": bool(p["whiten"]),
                                 "samples": int(min(n, p["pca_samples"])), "explained_variance": explained}
        self._spec.build_seconds = {"projection": t1 - t0, "annoy_add": t2 - t1, "annoy_build": t3 - t2}
        return self

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        n_cand = max(int(p["rerank"]), k)
        projected = self._projection(queries)
        threads = int(p["query_threads"]) or min(os.cpu_count() or 1, 8)

        def search(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
            cand = np.full((hi - lo, n_cand), -1, dtype=np.int64)
            for j, row in enumerate(projected[lo:hi].tolist()):
                found = self._annoy.get_nns_by_vector(row, n_cand, search_k=int(p["search_k"]))
                cand[j, :len(found)] = found
            return rerank(queries[lo:hi], cand, self._base, k, self._spec.metric)

        q = len(queries)
        if threads <= 1 or q < 32:
            return search(0, q)
        # Annoy's search and numpy's products release the GIL, so a batch splits across cores.
        bounds = np.linspace(0, q, min(threads, q) + 1).astype(int)
        with ThreadPoolExecutor(len(bounds) - 1) as pool:
            parts = list(pool.map(search, bounds[:-1], bounds[1:]))
        return np.concatenate([r for r, _ in parts]), np.concatenate([d for _, d in parts])

    def _save_arrays(self, directory: Path) -> None:
        # Annoy's save writes the file, then re-opens the index memory-mapped from it.
        self._annoy.save(str(directory / ANNOY_FILE))
        self._projection.save(directory / PROJECTION_FILE)
        np.save(directory / VECTORS_FILE, self._base)

    @classmethod
    def _load_arrays(cls, index: "AnnoyIndex", directory: Path) -> None:
        index._projection = Projection.load(directory / PROJECTION_FILE)
        index._annoy = annoy.AnnoyIndex(index._projection.dim, index.annoy_metric)
        index._annoy.load(str(directory / ANNOY_FILE))  # mmap: pages are read on demand and shared
        index._base = np.load(directory / VECTORS_FILE, mmap_mode="r")


def rerank(queries: np.ndarray, candidates: np.ndarray, base: np.ndarray, k: int, metric: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """Exact re-ranking: for each query, the k nearest of its candidate rows (q, c) int64 (-1 = none) by the true
    original-space distance. Returns (rows (q, k), distances (q, k)), -1 / inf where fewer candidates."""
    q, c = candidates.shape
    rows_out = np.full((q, k), -1, dtype=np.int64)
    dist_out = np.full((q, k), np.inf, dtype=np.float32)
    for i in range(q):
        cand = candidates[i]
        cand = cand[cand >= 0]
        if len(cand) == 0:
            continue
        # Sorted row order reads a memory-mapped base front to back; the order does not change the answer.
        cand = np.sort(cand)
        vecs = np.asarray(base[cand])
        if metric == "cosine":
            d = 1.0 - vecs @ queries[i]
            np.maximum(d, 0.0, out=d)
        else:
            diff = vecs - queries[i]
            d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        kk = min(k, len(cand))
        top = np.argpartition(d, kk - 1)[:kk] if kk < len(cand) else np.arange(len(cand))
        top = top[np.argsort(d[top], kind="stable")]
        rows_out[i, :kk] = cand[top]
        dist_out[i, :kk] = d[top]
    return rows_out, dist_out
