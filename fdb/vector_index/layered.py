"""A main index and the small exact index of the vectors written since, queried as one (fdb.pool_index).

A graph index (HNSW, Annoy) is costly to save: a grown HNSW graph is written whole as a new version, and an Annoy
forest cannot grow at all. So a night puts its vectors into a small exact "recent" index beside the main one,
and the two are merged weekly. Mining asks `LayeredIndex` what it asks any `VectorIndex` (`len`, `spec.version`,
`check_query`, `query`): both parts are searched, and since every backend returns exact original-space distances
(fdb.vector_index.base), each query's rows are merged by distance.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fdb.vector_index.base import IndexShapeError, IndexSpec, VectorIndex


class LayeredIndex:
    """`main` and `recent` (vectors of the same model, layer, dimension and metric, centred alike) as one index."""

    def __init__(self, main: VectorIndex, recent: VectorIndex):
        shape = lambda s: (s.model_version, s.layer, s.dim, s.metric)  # noqa: E731
        if shape(main.spec) != shape(recent.spec):
            raise IndexShapeError(f"a recent index of {shape(recent.spec)} cannot sit beside a main index of "
                                  f"{shape(main.spec)}")
        self.main, self.recent = main, recent

    @property
    def spec(self) -> IndexSpec:
        # The version names both parts: a selection records what it searched, and either part changing is another
        # index. Built when asked, as a part grown in place (`add`) changes its own spec.
        return replace(self.main.spec, version=f"{self.main.spec.version}+{self.recent.spec.version}",
                       backend=f"{self.main.spec.backend}+{self.recent.spec.backend}", n=len(self))

    @property
    def ids(self) -> np.ndarray:
        return np.concatenate([np.asarray(self.main.ids), np.asarray(self.recent.ids)])

    def __len__(self) -> int:
        return len(self.main) + len(self.recent)

    def __repr__(self) -> str:
        return f"LayeredIndex({self.main!r} + {self.recent!r})"

    def check_query(self, vectors: np.ndarray, model_version: str | None = None) -> np.ndarray:
        return self.main.check_query(vectors, model_version)

    def query(self, vectors: np.ndarray, k: int, model_version: str | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest of both parts for each query: ids (q, k) S12 and distances (q, k) float32, nearest first
        (on a tie, the main index's first), padded with id b"" and distance inf as `VectorIndex.query`."""
        main_ids, main_dist = self.main.query(vectors, k, model_version)
        recent_ids, recent_dist = self.recent.query(vectors, k, model_version)
        ids = np.concatenate([main_ids, recent_ids], axis=1)
        dist = np.concatenate([main_dist, recent_dist], axis=1)
        # Stable: equal distances keep the main's rows first, and padding (inf) stays last.
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(ids, order, axis=1), np.take_along_axis(dist, order, axis=1)
