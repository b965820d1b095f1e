"""The interface every vector-index backend implements, and the helpers they share.

An index maps 12-byte ids (detection or image ObjectIds, dtype S12, as `FeatureDB.read_vectors` returns them) to
the vectors of one (model version, layer). Whatever the backend, distances are computed *exactly in the original
space* before they are returned: `1 - cosine similarity` for metric "cosine", the L2 distance for "euclidean". So
the neighbours and distances of an approximate backend can be compared with the exact one's, and thresholds mean
the same thing whichever backend served the query.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("cosine", "euclidean")
SPEC_FILE = "spec.json"
IDS_FILE = "ids.npy"
VECTORS_FILE = "vectors.npy"
SQNORMS_FILE = "sqnorms.npy"
ID_DTYPE = np.dtype("S12")
PAD_ID = b""

# Rows of the base matrix multiplied against a block of queries at once: bounds the (queries x rows) float32
# score matrix to about SCORE_BUDGET bytes whatever N is.
SCORE_BUDGET = 64 * 2**20


class IndexShapeError(ValueError):
    """A query whose dimension or model version does not match the index it is sent to."""


def new_version() -> str:
    """A version string that sorts by creation time: UTC timestamp to the microsecond, plus a random suffix so
    two indexes built in the same microsecond (or on two machines) still get different versions."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def _utcnow() -> dt.datetime:
    # Milliseconds only: what MongoDB stores, so a spec written there and read back compares equal.
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class IndexSpec:
    """What an index holds and how it was built. `as_dict()` is BSON-friendly (str, int, float, bool, dict,
    list, None and a tz-aware datetime), `to_json`/`from_json` round-trip it through `spec.json`."""

    model_version: str
    layer: str
    dim: int = 0
    n: int = 0
    metric: str = "cosine"
    backend: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    version: str = field(default_factory=new_version)
    created_at: dt.datetime = field(default_factory=_utcnow)
    name: str | None = None
    dtype: str = "float32"  # of the stored original-space vectors
    projection: dict[str, Any] | None = None  # e.g. {"kind": "pca", "dim": 64, "whiten": True, ...}
    build_seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")

    @property
    def label(self) -> str:
        return self.name or self.version

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = _plain(d["params"])
        d["projection"] = _plain(d["projection"])
        return d

    def to_json(self) -> str:
        d = self.as_dict()
        d["created_at"] = self.created_at.isoformat()
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "IndexSpec":
        d = json.loads(text)
        d["created_at"] = dt.datetime.fromisoformat(d["created_at"])
        return cls(**d)


def _plain(value: Any) -> Any:
    """numpy scalars and tuples -> plain Python types BSON and JSON accept."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class VectorIndex(abc.ABC):
    """One small interface, one module per backend (as FiftyOne's similarity backends).

    Construct with the spec fields and the backend's parameters, then `build(vectors, ids)`; or `load(directory)`
    a saved one. `query` returns `(ids (q, k) S12, distances (q, k) float32)`, nearest first, padded with id b""
    and distance inf where the index holds fewer than k vectors.
    """

    backend: str = ""
    default_params: dict[str, Any] = {}

    def __init__(self, model_version: str, layer: str, metric: str = "cosine", name: str | None = None,
                 **params: Any):
        unknown = set(params) - set(self.default_params)
        if unknown:
            raise TypeError(f"unknown {self.backend} index parameters: {sorted(unknown)}; "
                            f"known: {sorted(self.default_params)}")
        self._spec = IndexSpec(model_version=model_version, layer=layer, metric=metric, name=name,
                               backend=self.backend, params={**self.default_params, **params})
        self._ids: np.ndarray | None = None

    @property
    def spec(self) -> IndexSpec:
        return self._spec

    @property
    def params(self) -> dict[str, Any]:
        return self._spec.params

    @property
    def ids(self) -> np.ndarray:
        self._require_built()
        return self._ids

    def __len__(self) -> int:
        return self._spec.n

    def __repr__(self) -> str:
        s = self._spec
        return (f"{type(self).__name__}({s.label!r}: {s.n} x {s.dim}-d {s.metric}, model {s.model_version!r} "
                f"layer {s.layer!r})")

    # ------------------------------------------------------------------ the interface
    @abc.abstractmethod
    def build(self, vectors: np.ndarray, ids: np.ndarray) -> "VectorIndex":
        """Index `vectors` (n, d), row i known as `ids[i]`. Returns self."""

    @abc.abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (q, k') int64 and original-space distances (q, k') float32 of the k' = min(k, n) nearest
        stored vectors of each prepared query, nearest first; -1 / inf where a backend found fewer."""

    @abc.abstractmethod
    def _save_arrays(self, directory: Path) -> None:
        """Write the backend's files (everything but spec.json and ids.npy) into `directory`."""

    @classmethod
    @abc.abstractmethod
    def _load_arrays(cls, index: "VectorIndex", directory: Path) -> None:
        """Fill a bare instance of the class from `directory`, memory-mapping what can be."""

    # ------------------------------------------------------------------ shared behaviour
    def check_query(self, vectors: np.ndarray, model_version: str | None = None) -> np.ndarray:
        """The queries as a float32 (q, d) array, or IndexShapeError naming what the index holds."""
        s = self._spec
        if model_version is not None and model_version != s.model_version:
            raise IndexShapeError(f"query model {model_version!r} does not match index model "
                                  f"{s.model_version!r} (index {s.label!r}, layer {s.layer!r})")
        vectors = np.asarray(vectors)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        if vectors.ndim != 2:
            raise IndexShapeError(f"queries must be a 2-D array (q, dim), got shape {vectors.shape}; index "
                                  f"{s.label!r} holds {s.dim}-d vectors of model {s.model_version!r} "
                                  f"layer {s.layer!r}")
        if vectors.shape[1] != s.dim:
            raise IndexShapeError(f"query vectors are {vectors.shape[1]}-d; index {s.label!r} holds {s.dim}-d "
                                  f"vectors of model {s.model_version!r} layer {s.layer!r}")
        if not np.issubdtype(vectors.dtype, np.floating) and not np.issubdtype(vectors.dtype, np.integer):
            raise IndexShapeError(f"query vectors must be numeric, got dtype {vectors.dtype}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise ValueError("query vectors hold NaN or infinity")
        return vectors

    def query(self, vectors: np.ndarray, k: int, model_version: str | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored vectors of each query: ids (q, k) S12 and distances (q, k) float32."""
        self._require_built()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = self.check_query(vectors, model_version)
        if self._spec.metric == "cosine":
            queries = normalize_rows(queries)
        q = len(queries)
        out_ids = np.full((q, k), PAD_ID, dtype=ID_DTYPE)
        out_dist = np.full((q, k), np.inf, dtype=np.float32)
        if q == 0 or self._spec.n == 0:
            return out_ids, out_dist
        rows, dist = self._search(queries, min(k, self._spec.n))
        found = rows >= 0
        kk = rows.shape[1]
        out_ids[:, :kk][found] = self._ids[rows[found]]
        out_dist[:, :kk][found] = dist[found]
        return out_ids, out_dist

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index into `directory` (created; must be empty or absent). Use `fdb.index.save_index` for a
        versioned directory with an atomic switch-over."""
        self._require_built()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise FileExistsError(f"{directory} is not empty")
        np.save(directory / IDS_FILE, np.asarray(self._ids, dtype=ID_DTYPE))
        self._save_arrays(directory)
        # The spec last: a directory with a spec.json is a complete index.
        (directory / SPEC_FILE).write_text(self._spec.to_json())
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "VectorIndex":
        directory = Path(directory)
        spec = read_spec(directory)
        if spec.backend != cls.backend:
            raise ValueError(f"{directory} holds a {spec.backend!r} index, not {cls.backend!r}")
        index = cls.__new__(cls)
        index._spec = spec
        index._ids = np.load(directory / IDS_FILE, mmap_mode="r")
        cls._load_arrays(index, directory)
        return index

    def _require_built(self) -> None:
        if self._ids is None:
            raise RuntimeError(f"{type(self).__name__} has not been built or loaded")

    def _start_build(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Check the inputs, fill dim/n/dtype in the spec, keep the ids; returns the vectors as given."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise IndexShapeError(f"vectors must be a 2-D array (n, dim), got shape {vectors.shape}")
        ids = np.asarray(ids)
        if ids.dtype != ID_DTYPE:
            if ids.dtype.kind == "O":  # e.g. a list of bson.ObjectId
                ids = np.array([getattr(i, "binary", i) for i in ids], dtype=ID_DTYPE)
            else:
                ids = ids.astype(ID_DTYPE)
        if ids.shape != (len(vectors),):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        self._spec.n, self._spec.dim = vectors.shape
        self._spec.dtype = "float32"
        self._ids = ids
        return vectors


def read_spec(directory: str | os.PathLike) -> IndexSpec:
    return IndexSpec.from_json((Path(directory) / SPEC_FILE).read_text())


# ---------------------------------------------------------------------- numeric helpers
def normalize_rows(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1.0
    if out is None:
        return x / norms[:, None]
    np.divide(x, norms[:, None], out=out)
    return out


def prepare_base(vectors: np.ndarray, metric: str, chunk: int = 65536) -> np.ndarray:
    """The stored form of the base vectors: C-contiguous float32, unit rows for cosine.

    An input that is already in that form is used as is, without a copy: at 1M x 1024 a copy is 4 GB. Otherwise
    the conversion runs in chunks so the only extra memory is the output itself.
    """
    vectors = np.asarray(vectors)
    if vectors.dtype == np.float32 and vectors.flags.c_contiguous:
        if metric == "euclidean" or _rows_are_unit(vectors, chunk):
            return vectors
    out = np.empty(vectors.shape, dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        block = np.asarray(vectors[start:start + chunk], dtype=np.float32)
        if metric == "cosine":
            normalize_rows(block, out=out[start:start + chunk])
        else:
            out[start:start + chunk] = block
    return out


def _rows_are_unit(x: np.ndarray, chunk: int, tol: float = 1e-4) -> bool:
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk]
        norms = np.einsum("ij,ij->i", block, block)
        if not np.all(np.abs(norms - 1.0) <= tol):
            return False
    return True


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
