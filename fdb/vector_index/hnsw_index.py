"""Approximate search that grows: PCA projection + an HNSW graph (hnswlib) for candidates, exact re-ranking.

The same three stages as `AnnoyIndex` (see its docstring for why a projection and a re-rank), with one difference
that matters to a pool that grows every night: an HNSW graph takes new items after it is built (`add`), where an
Annoy forest must be rebuilt from all vectors. The projection is fitted once, on the vectors of the first build,
and new vectors are projected with it; a pool that drifts far from those first vectors is better served by a
rebuild (`dataengine reindex`), which also refits the projection.

Storage grows by appending, never by rewriting: the original-space vectors kept for re-ranking live in chunk
files (`base-00000.npy`, `base-00001.npy`, ...; one per build or `add`), stored as `base_dtype` (float16 by
default: half the disk and page cache of float32; recall measured in benchmarks/results/index.json). Saving a
grown index as a new version hard-links the chunks it already had from the version it was loaded from, so a
night's save writes the night's vectors, the ids and the graph (about `M` links + the projected vector per item),
not the whole base again.

The graph itself is held by faiss (`IndexHNSWFlat`) by default, or by hnswlib (`graph="hnswlib"`; indexes saved
before faiss was the default hold an hnswlib graph and keep it). The difference is the load: hnswlib reads its
whole graph into memory, about 2 s for the 0.65 GB graph of a million images, every night, while a faiss graph is
memory-mapped where it lies (`IO_FLAG_MMAP_IFC`), so a night reads only the pages its queries visit. A mapped graph
is read-only: the first `add` reads it into memory (the weekly merge, not a night).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdb.vector_index.annoy_index import Projection, rerank
from fdb.vector_index.base import VectorIndex
from fdb.vector_index.kernels import prepare_base

GRAPH_LIBRARIES = ("faiss", "hnswlib")
PROJECTION_FILE = "projection.npz"
CHUNK_PATTERN = "base-{:05d}.npy"


@dataclass(frozen=True)
class HnswConfig:
    """The HNSW backend's parameters, each default defined once (chosen in benchmarks/index_real_bench.py)."""

    proj_dim: int = 128  # dims of the PCA projection the graph is built over
    pca_samples: int = 100_000  # rows the PCA is fitted on (seeded sample)
    M: int = 16  # links per node: more = better recall, bigger graph
    ef_construction: int = 200  # candidate list while inserting
    ef: int = 400  # candidate list while searching (at least `rerank`)
    rerank: int = 200  # candidates re-ranked exactly in the original space
    base_dtype: str = "float16"  # of the stored original-space vectors used to re-rank
    seed: int = 0
    threads: int = 0  # threads for inserts and batched queries; 0 = one per core
    graph: str = "faiss"  # the library that holds the graph: "faiss" (memory-mapped on load) or "hnswlib"

    def __post_init__(self) -> None:
        if self.graph not in GRAPH_LIBRARIES:
            raise ValueError(f"graph must be one of {GRAPH_LIBRARIES}, got {self.graph!r}")


class HnswlibGraph:
    """An HNSW graph held by hnswlib: read whole into memory on load."""

    file = "hnsw.bin"

    def __init__(self, graph):
        self._graph = graph

    @classmethod
    def new(cls, space: str, dim: int, capacity: int, M: int, ef_construction: int, seed: int) -> "HnswlibGraph":
        import hnswlib  # noqa: PLC0415 - only for graphs this library holds

        graph = hnswlib.Index(space=space, dim=dim)
        graph.init_index(max_elements=max(capacity, 1), M=M, ef_construction=ef_construction, random_seed=seed)
        return cls(graph)

    def add(self, rows: np.ndarray, start: int, threads: int) -> None:
        needed = start + len(rows)
        if needed > self._graph.get_max_elements():
            self._graph.resize_index(max(needed, int(self._graph.get_max_elements() * 1.25)))
        self._graph.add_items(rows, np.arange(start, needed), num_threads=threads)

    def search(self, queries: np.ndarray, k: int, ef: int, threads: int) -> np.ndarray:
        self._graph.set_ef(ef)
        labels, _ = self._graph.knn_query(queries, k=k, num_threads=threads)
        return labels.astype(np.int64)

    def save(self, directory: Path) -> None:
        self._graph.save_index(str(directory / self.file))

    @classmethod
    def load(cls, directory: Path, space: str, dim: int, n: int) -> "HnswlibGraph":
        import hnswlib  # noqa: PLC0415

        graph = hnswlib.Index(space=space, dim=dim)
        graph.load_index(str(directory / cls.file), max_elements=max(n, 1))
        return cls(graph)


class FaissGraph:
    """An HNSW graph held by faiss (`IndexHNSWFlat`, row i labelled i): memory-mapped on load, in memory once it
    takes rows."""

    file = "hnsw.faiss"

    def __init__(self, graph, path: Path | None = None):
        self._graph, self._mapped_from = graph, path

    @classmethod
    def new(cls, space: str, dim: int, capacity: int, M: int, ef_construction: int, seed: int) -> "FaissGraph":
        import faiss  # noqa: PLC0415 - only for graphs this library holds

        # faiss draws node levels from a fixed seed of its own: `seed` cannot change it.
        metric = faiss.METRIC_INNER_PRODUCT if space == "ip" else faiss.METRIC_L2
        graph = faiss.IndexHNSWFlat(dim, M, metric)
        graph.hnsw.efConstruction = ef_construction
        return cls(graph)

    def add(self, rows: np.ndarray, start: int, threads: int) -> None:
        import faiss  # noqa: PLC0415

        if self._mapped_from is not None:  # a mapped graph is read-only: read it into memory to grow it
            self._graph, self._mapped_from = faiss.read_index(str(self._mapped_from)), None
        if start != self._graph.ntotal:
            raise ValueError(f"rows must follow the graph's {self._graph.ntotal} rows, not start at {start}")
        faiss.omp_set_num_threads(threads)
        self._graph.add(np.ascontiguousarray(rows, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int, ef: int, threads: int) -> np.ndarray:
        import faiss  # noqa: PLC0415

        faiss.omp_set_num_threads(threads)
        params = faiss.SearchParametersHNSW(efSearch=ef)
        _, labels = self._graph.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        return labels.astype(np.int64)

    def save(self, directory: Path) -> None:
        import faiss  # noqa: PLC0415

        faiss.write_index(self._graph, str(directory / self.file))

    @classmethod
    def load(cls, directory: Path, space: str, dim: int, n: int) -> "FaissGraph":
        import faiss  # noqa: PLC0415

        path = directory / cls.file
        return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC), path)


GRAPHS = {"faiss": FaissGraph, "hnswlib": HnswlibGraph}


class ChunkedRows:
    """Rows of several (memory-mapped) 2-D arrays seen as one: `rows[sorted int array]` -> float32 (m, d)."""

    def __init__(self, chunks: list[np.ndarray]):
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(c) for c in chunks])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), self.chunks[0].shape[1]), dtype=np.float32)
        for c in np.unique(which):
            sel = which == c
            out[sel] = self.chunks[c][rows[sel] - self.starts[c]]
        return out


class HnswIndex(VectorIndex):
    backend = "hnsw"
    config_class = HnswConfig
    supports_add = True

    @property
    def _space(self) -> str:
        return "ip" if self._spec.metric == "cosine" else "l2"  # projected rows are unit rows for cosine

    def _threads(self) -> int:
        return int(self.params["threads"]) or (os.cpu_count() or 1)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> "HnswIndex":
        p = self.params
        vectors = self._start_build(vectors, ids)
        base = prepare_base(vectors, self._spec.metric)
        t0 = time.perf_counter()
        self._projection, explained = Projection.fit(base, p["proj_dim"], False, p["pca_samples"], p["seed"],
                                                     normalize=self._spec.metric == "cosine")
        t1 = time.perf_counter()
        self._graph = GRAPHS[p["graph"]].new(self._space, self._projection.dim, len(base), int(p["M"]),
                                             int(p["ef_construction"]), int(p["seed"]))
        self._chunks, self._chunk_sources = [], []
        self._insert(base, 0)
        t2 = time.perf_counter()
        self._spec.projection = {"kind": "pca", "dim": self._projection.dim, "whiten": False,
                                 "samples": int(min(len(base), p["pca_samples"])), "explained_variance": explained}
        self._spec.build_seconds = {"projection": t1 - t0, "hnsw_add": t2 - t1}
        self._spec.dtype = p["base_dtype"]
        return self

    def _append(self, base: np.ndarray) -> None:
        # New vectors are projected with the projection fitted at build, and searchable at once.
        self._insert(base, self._spec.n)

    def _insert(self, base: np.ndarray, start: int) -> None:
        chunk = 65536
        for lo in range(0, len(base), chunk):
            block = base[lo:lo + chunk]
            self._graph.add(self._projection(block), start + lo, self._threads())
        self._chunks.append(np.ascontiguousarray(base, dtype=self.params["base_dtype"]))
        self._chunk_sources.append(None)  # not on disk yet
        self._base = ChunkedRows(self._chunks)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        n_cand = min(max(int(p["rerank"]), k), self._spec.n)
        labels = self._graph.search(self._projection(queries), n_cand, max(int(p["ef"]), n_cand), self._threads())
        return rerank(queries, labels, self._base, k, self._spec.metric)

    def _save_arrays(self, directory: Path) -> None:
        self._graph.save(directory)
        self._projection.save(directory / PROJECTION_FILE)
        for i, (chunk, source) in enumerate(zip(self._chunks, self._chunk_sources)):
            target = directory / CHUNK_PATTERN.format(i)
            if source is not None:
                os.link(source, target)  # the same bytes as the version it came from: no copy
            else:
                np.save(target, chunk)
                self._chunks[i] = np.load(target, mmap_mode="r")
            self._chunk_sources[i] = target
        self._base = ChunkedRows(self._chunks)

    def _moved(self, old: Path, new: Path) -> None:
        self._chunk_sources = [new / Path(p).name if p is not None and Path(p).parent == old else p
                               for p in self._chunk_sources]

    @classmethod
    def _load_arrays(cls, index: "HnswIndex", directory: Path) -> None:
        index._projection = Projection.load(directory / PROJECTION_FILE)
        # An index saved before faiss held the graphs names no library: its graph is hnswlib's.
        graph = GRAPHS[index.params.setdefault("graph", "hnswlib")]
        index._graph = graph.load(directory, index._space, index._projection.dim, index._spec.n)
        paths = sorted(directory.glob("base-*.npy"))
        index._chunks = [np.load(path, mmap_mode="r") for path in paths]
        index._chunk_sources = list(paths)
        index._base = ChunkedRows(index._chunks)
