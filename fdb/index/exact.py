"""Exact (brute-force) search in numpy: the reference every approximate backend is measured against.

The base is stored as float32, unit rows for cosine, so a query is blocked matrix products plus `argpartition`.
Cost is O(N d) per query and memory-bandwidth bound (a 1M x 1024 float32 base is 4 GB read per query batch), which
is fine for small pools and for batches of queries; for single queries against a large pool use `AnnoyIndex`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fdb.index.base import (SQNORMS_FILE, VECTORS_FILE, VectorIndex, exact_topk, prepare_base, squared_norms)


class ExactIndex(VectorIndex):
    backend = "exact"
    default_params = {"score_budget_mb": 64}  # size of one block's (queries x rows) score matrix

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> "ExactIndex":
        vectors = self._start_build(vectors, ids)
        self._base = prepare_base(vectors, self._spec.metric)
        self._half_sqnorms = None
        if self._spec.metric == "euclidean":
            self._half_sqnorms = 0.5 * squared_norms(self._base)
        return self

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
