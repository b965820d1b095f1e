"""Vector indexes over the feature vectors of one (model version, layer), and their versioned home on disk.

    index = build_index(vs.vectors, vs.owner_ids, model_version="m1", layer="fc7")   # exact or annoy, by size
    ids, distances = index.query(error_vectors, k=10, model_version="m1")
    save_index(index, root, "m1-fc7")         # root/m1-fc7/<version>/, then CURRENT -> <version>
    index = load_current(root, "m1-fc7")      # what CURRENT points at, memory-mapped
    prune(root, "m1-fc7", keep=2)

On-disk layout of one name:

    root/<name>/CURRENT                 the version being served (one line), replaced atomically
    root/<name>/<version>/spec.json     IndexSpec; ids.npy; vectors.npy; backend files (annoy.ann, ...)
    root/<name>/<version>.tmp-<rand>/   a save in progress (or one that crashed: prune removes stale ones)

A reader following CURRENT always finds a complete directory: a version directory only gets its final name by a
rename once everything in it is written and synced, and CURRENT only changes (by `os.replace` of a temp file)
after that rename. A crash at any point leaves CURRENT at the previous version.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from fdb.vector_index.annoy_index import AnnoyConfig, AnnoyIndex
from fdb.vector_index.base import IndexShapeError, IndexSpec, VectorIndex, new_version, read_spec
from fdb.vector_index.exact import ExactConfig, ExactIndex
from fdb.vector_index.hnsw_index import HnswConfig, HnswIndex
from fdb.vector_index.layered import LayeredIndex

BACKENDS: dict[str, type[VectorIndex]] = {"exact": ExactIndex, "annoy": AnnoyIndex, "hnsw": HnswIndex}
EXACT_THRESHOLD = 20_000
CURRENT_FILE = "CURRENT"
TMP_MARK = ".tmp-"

__all__ = ["AnnoyConfig", "AnnoyIndex", "BACKENDS", "ExactConfig", "ExactIndex", "HnswConfig", "HnswIndex",
           "IndexShapeError", "IndexSpec", "LayeredIndex", "VectorIndex",
           "build_index", "list_versions", "load_current", "load_index", "new_version", "prune",
           "read_current", "save_index"]


def build_index(vectors: np.ndarray, ids: np.ndarray, model_version: str, layer: str, metric: str = "cosine",
                name: str | None = None, backend: str = "auto", exact_threshold: int = EXACT_THRESHOLD,
                **params: Any) -> VectorIndex:
    """Build an index of `vectors` (n, d) whose row i is known as `ids[i]` (S12).

    backend "auto" picks exact search below `exact_threshold` vectors (it is both exact and fast enough there)
    and HNSW with exact re-ranking from there on: it takes new vectors without a rebuild, so a pool index grows
    with the night (benchmarks/results/index.json compares it with Annoy). `params` go to the backend (its config
    class: `ExactConfig`, `HnswConfig`, `AnnoyConfig`)."""
    chosen = backend == "auto"
    if chosen:
        backend = "exact" if len(vectors) < exact_threshold else "hnsw"
    if backend not in BACKENDS:
        raise ValueError(f"unknown index backend {backend!r}; known: {sorted(BACKENDS)} or 'auto'")
    cls = BACKENDS[backend]
    if chosen or backend == "exact":
        # "auto" may be given parameters of any backend (whichever size it ends up seeing): each takes its own.
        # Exact search needs none of an approximate backend's.
        params = {k: v for k, v in params.items() if k in cls.default_params()}
    return cls(model_version, layer, metric=metric, name=name, **params).build(vectors, ids)


def load_index(directory: str | os.PathLike) -> VectorIndex:
    """Load a saved index, choosing its class from the `backend` in its spec.json."""
    spec = read_spec(directory)
    if spec.backend not in BACKENDS:
        raise ValueError(f"{directory} holds an index of unknown backend {spec.backend!r}")
    return BACKENDS[spec.backend].load(directory)


# ---------------------------------------------------------------------- versioned directories
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def save_index(index: VectorIndex, root_dir: str | os.PathLike, name: str) -> Path:
    """Save `index` as version `index.spec.version` of `name` under `root_dir` and make it the current one.

    Writes into `<version>.tmp-<random>/`, syncs, renames it to `<version>/`, then replaces CURRENT atomically.
    Returns the version directory. On failure the temp directory is removed and CURRENT is untouched."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad index name {name!r}")
    home = Path(root_dir) / name
    home.mkdir(parents=True, exist_ok=True)
    version = index.spec.version
    final = home / version
    if final.exists():
        raise FileExistsError(f"version {version} of index {name!r} already exists at {final}")
    tmp = home / f"{version}{TMP_MARK}{secrets.token_hex(4)}"
    try:
        index.save(tmp)
        _fsync_tree(tmp)
        os.rename(tmp, final)
        index._moved(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(home)
    _write_current(home, version)
    return final


def _write_current(home: Path, version: str) -> None:
    tmp = home / f"{CURRENT_FILE}{TMP_MARK}{secrets.token_hex(4)}"
    try:
        with open(tmp, "w") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, home / CURRENT_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(home)


def read_current(root_dir: str | os.PathLike, name: str) -> str:
    """The version CURRENT points at; FileNotFoundError if `name` has none."""
    path = Path(root_dir) / name / CURRENT_FILE
    version = path.read_text().strip()
    if not version or "/" in version or TMP_MARK in version:
        raise ValueError(f"{path} holds no valid version: {version!r}")
    return version


def load_current(root_dir: str | os.PathLike, name: str) -> VectorIndex:
    """The index CURRENT points at, memory-mapped where the backend allows."""
    return load_index(Path(root_dir) / name / read_current(root_dir, name))


def list_versions(root_dir: str | os.PathLike, name: str) -> list[str]:
    """Complete versions of `name`, oldest first (versions sort by creation time)."""
    home = Path(root_dir) / name
    if not home.is_dir():
        return []
    return sorted(p.name for p in home.iterdir()
                  if p.is_dir() and TMP_MARK not in p.name and (p / "spec.json").is_file())


def prune(root_dir: str | os.PathLike, name: str, keep: int = 2, stale_tmp_seconds: float = 3600) -> list[str]:
    """Delete all but the newest `keep` versions of `name`, never the current one, and temp directories older
    than `stale_tmp_seconds` (left by crashed saves; younger ones may be saves in progress). Returns what was
    removed. Readers holding a removed version memory-mapped keep working: Linux frees the files on close."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    home = Path(root_dir) / name
    if not home.is_dir():
        return []
    try:
        current = read_current(root_dir, name)
    except (FileNotFoundError, ValueError):
        current = None
    versions = list_versions(root_dir, name)
    keep_set = set(versions[-keep:]) | ({current} if current else set())
    removed = []
    for v in versions:
        if v not in keep_set:
            shutil.rmtree(home / v)
            removed.append(v)
    now = time.time()
    for p in home.iterdir():
        if TMP_MARK in p.name and now - p.stat().st_mtime > stale_tmp_seconds:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed
