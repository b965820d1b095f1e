"""Exact (brute-force) search in numpy: the reference every approximate backend is measured against.

The base is stored as float32, unit rows for cosine, so a query is blocked matrix products plus `argpartition`.
Cost is O(N d) per query and memory-bandwidth bound (a 1M x 1024 float32 base is 4 GB read per query batch), which
is fine for small pools and for batches of queries; for single queries against a large pool use `AnnoyIndex`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdb.vector_index.base import VECTORS_FILE, VectorIndex
from fdb.vector_index.kernels import prepare_base

SQNORMS_FILE = "sqnorms.npy"
# Rows of the base matrix multiplied against a block of queries at once: bounds the (queries x rows) float32
# score matrix to about SCORE_BUDGET bytes whatever N is.
SCORE_BUDGET = 64 * 2**20


@dataclass(frozen=True)
class ExactConfig:
    """The exact backend's parameters."""

    score_budget_mb: int = 64  # size of one block's (queries x rows) score matrix


class ExactIndex(VectorIndex):
    backend = "exact"
    config_class = ExactConfig

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> "ExactIndex":
        vectors = self._start_build(vectors, ids)
        self._base = prepare_base(vectors, self._spec.metric)
        self._half_sqnorms = None
        if self._spec.metric == "euclidean":
            self._half_sqnorms = 0.5 * squared_norms(self._base)
        return self

    supports_add = True

    def _append(self, base: np.ndarray) -> None:
        self._base = np.concatenate([np.asarray(self._base), base])
        if self._half_sqnorms is not None:
            self._half_sqnorms = np.concatenate([self._half_sqnorms, 0.5 * squared_norms(base)])

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_topk(queries, self._base, k, self._spec.metric, self._half_sqnorms,
                          score_budget=int(self.params["score_budget_mb"] * 2**20))

    def _save_arrays(self, directory: Path) -> None:
        np.save(directory / VECTORS_FILE, self._base)
        if self._half_sqnorms is not None:
            np.save(directory / SQNORMS_FILE, 2.0 * self._half_sqnorms)

    @classmethod
    def _load_arrays(cls, index: "ExactIndex", directory: Path) -> None:
        index._base = np.load(directory / VECTORS_FILE, mmap_mode="r")
        index._half_sqnorms = None
        if index._spec.metric == "euclidean":
            index._half_sqnorms = 0.5 * np.load(directory / SQNORMS_FILE)


def squared_norms(x: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk]
        out[start:start + chunk] = np.einsum("ij,ij->i", block, block)
    return out



def scores_to_distances(scores: np.ndarray, metric: str, query_sqnorms: np.ndarray | None = None) -> np.ndarray:
    """Turn "larger is nearer" scores into distances (in place on `scores`).

    cosine: scores are dot products of unit vectors -> 1 - s, clipped at 0 (rounding can push a self-match
    below 0). euclidean: scores are `q.x - |x|^2 / 2` (see `exact_topk`) -> sqrt(|q|^2 - 2 s)."""
    if metric == "cosine":
        np.subtract(1.0, scores, out=scores)
    else:
        np.multiply(scores, -2.0, out=scores)
        scores += query_sqnorms[:, None]
    np.maximum(scores, 0.0, out=scores)
    if metric == "euclidean":
        np.sqrt(scores, out=scores)
    return scores



def exact_topk(queries: np.ndarray, base: np.ndarray, k: int, metric: str,
               base_half_sqnorms: np.ndarray | None = None, score_budget: int = SCORE_BUDGET
               ) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest rows of `base` for each query: (rows int64 (q, k), distances float32 (q, k)).

    Scores are "larger is nearer" (dot product for unit cosine vectors; `q.x - |x|^2/2` for euclidean, which
    orders like -|q - x|^2). The base is walked in blocks of rows so the (queries x rows) score matrix stays near
    `score_budget` bytes; each block keeps its own top k by `argpartition`, and the running best k are merged.
    """
    n = len(base)
    q = len(queries)
    k = min(k, n)
    best_scores = np.full((q, k), -np.inf, dtype=np.float32)
    best_rows = np.full((q, k), -1, dtype=np.int64)
    block = int(max(1024, score_budget // (4 * max(q, 1))))
    for start in range(0, n, block):
        stop = min(n, start + block)
        scores = queries @ np.asarray(base[start:stop]).T  # (q, b)
        if metric == "euclidean":
            scores -= base_half_sqnorms[start:stop][None, :]
        kb = min(k, stop - start)
        if kb < stop - start:
            part = np.argpartition(scores, -kb, axis=1)[:, -kb:]
        else:
            part = np.broadcast_to(np.arange(stop - start), (q, kb))
        part_scores = np.take_along_axis(scores, part, axis=1)
        # Merge this block's candidates with the running best and keep the top k.
        cand_scores = np.concatenate([best_scores, part_scores], axis=1)
        cand_rows = np.concatenate([best_rows, part + start], axis=1)
        keep = np.argpartition(cand_scores, -k, axis=1)[:, -k:] if cand_scores.shape[1] > k else \
            np.broadcast_to(np.arange(cand_scores.shape[1]), (q, cand_scores.shape[1]))
        best_scores = np.take_along_axis(cand_scores, keep, axis=1)
        best_rows = np.take_along_axis(cand_rows, keep, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    best_scores = np.take_along_axis(best_scores, order, axis=1)
    best_rows = np.take_along_axis(best_rows, order, axis=1)
    qn = np.einsum("ij,ij->i", queries, queries) if metric == "euclidean" else None
    return best_rows, scores_to_distances(best_scores, metric, qn)
