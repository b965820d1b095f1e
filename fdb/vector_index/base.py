"""The interface every vector-index backend implements: no numeric kernels (each backend keeps its own).

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

from fdb.vector_index.kernels import normalize_rows, prepare_base

METRICS = ("cosine", "euclidean")
SPEC_FILE = "spec.json"
IDS_FILE = "ids.npy"
VECTORS_FILE = "vectors.npy"
ID_DTYPE = np.dtype("S12")
PAD_ID = b""


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
    config_class: type = type(None)  # each backend's frozen dataclass of parameters (AnnoyConfig, ExactConfig)

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return asdict(cls.config_class())

    def __init__(self, model_version: str, layer: str, metric: str = "cosine", name: str | None = None,
                 **params: Any):
        unknown = set(params) - set(self.default_params())
        if unknown:
            raise TypeError(f"unknown {self.backend} index parameters: {sorted(unknown)}; "
                            f"known: {sorted(self.default_params())}")
        self._spec = IndexSpec(model_version=model_version, layer=layer, metric=metric, name=name,
                               backend=self.backend, params=asdict(self.config_class(**params)))
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

    supports_add: bool = False

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> "VectorIndex":
        """Index more vectors without a rebuild (backends with `supports_add`), row i known as `ids[i]`. The index
        then has new content, so it gets a new version: `save_index` keeps the old one beside it. Returns self."""
        if not self.supports_add:
            raise NotImplementedError(f"the {self.backend!r} backend cannot take new vectors after its build: "
                                      f"rebuild it over all of them, or use a backend that can ('exact', 'hnsw')")
        self._require_built()
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self._spec.dim:
            raise IndexShapeError(f"vectors to add have shape {vectors.shape}; index {self._spec.label!r} holds "
                                  f"{self._spec.dim}-d vectors")
        ids = self._as_ids(ids, len(vectors))
        if len(vectors) == 0:
            return self
        self._append(prepare_base(vectors, self._spec.metric))
        self._ids = np.concatenate([np.asarray(self._ids), ids])
        self._spec.n += len(vectors)
        self._spec.version = new_version()
        return self

    def _append(self, base: np.ndarray) -> None:
        """Backends with `supports_add`: take these prepared rows (`kernels.prepare_base`) after the others."""
        raise NotImplementedError

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
        """Write the index into `directory` (created; must be empty or absent). Use `fdb.vector_index.save_index` for a
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

    def _moved(self, old: Path, new: Path) -> None:
        """The directory this index was saved into was renamed (`save_index`): backends that remember where their
        files are follow it."""

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

    @staticmethod
    def _as_ids(ids, n: int) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype != ID_DTYPE:
            if ids.dtype.kind == "O":  # e.g. a list of bson.ObjectId
                ids = np.array([getattr(i, "binary", i) for i in ids], dtype=ID_DTYPE)
            else:
                ids = ids.astype(ID_DTYPE)
        if ids.shape != (n,):
            raise ValueError(f"{len(ids)} ids for {n} vectors")
        return ids

    def _require_built(self) -> None:
        if self._ids is None:
            raise RuntimeError(f"{type(self).__name__} has not been built or loaded")

    def _start_build(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Check the inputs, fill dim/n/dtype in the spec, keep the ids; returns the vectors as given."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise IndexShapeError(f"vectors must be a 2-D array (n, dim), got shape {vectors.shape}")
        ids = self._as_ids(ids, len(vectors))
        self._spec.n, self._spec.dim = vectors.shape
        self._spec.dtype = "float32"
        self._ids = ids
        return vectors


def read_spec(directory: str | os.PathLike) -> IndexSpec:
    return IndexSpec.from_json((Path(directory) / SPEC_FILE).read_text())
