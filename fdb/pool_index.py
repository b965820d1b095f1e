"""The pool's vector index for one (model version, layer): built once, then grown with each night's vectors.

Mining asks one question of the pool every night: the nearest pool vectors to the model's errors. Rebuilding the
index for it every night costs what the archive holds (every pool vector read and indexed again); this module keeps
one index per (model, layer, backend) and, each time it is asked for, adds only the vectors written since it was
last grown:

- **What is new** is found by a range scan of `features` on (model, layer, `created_at`) from the index's
  watermark (less `WATERMARK_SLACK`, for writers whose clocks differ; rows already indexed are dropped by id), then
  kept if their image is a pool image. Cost: the night's vectors.
- **Centring**: pool vectors are indexed centred on the pool mean. FC and pooled FPN vectors share a large common
  component (every street image has road and sky), so raw cosine distances crowd together; centring spreads them
  (a probe here: 83 % -> 88-90 % of mined images holding the queried error). The mean is fixed when the index is
  built and stored with it, and queries are centred on that same mean, so vectors added later are comparable
  with the first ones.
- **Eligibility is not the index's business**: it holds every pool image the model processed, and mining drops
  neighbours that were exported, labelled or quarantined since (`fdb.images.eligible_among`). So an export never
  forces a rebuild.
- **Backends**: a small pool is served by exact search; once it reaches `exact_threshold` vectors it is rebuilt
  once as an HNSW index (`fdb.index.hnsw_index`), which takes new vectors from then on. Annoy cannot take new
  vectors, so an Annoy pool index is rebuilt whenever the pool grew. `rebuild=True` (`dataengine reindex`) builds
  afresh: a new mean and projection for a pool that drifted.

Every version is saved through `fdb.index.save_index` (atomic CURRENT switch; HNSW chunks hard-linked, not
copied) and recorded in `indexes` with its watermark and centre; the two newest versions are kept on disk.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdb import images as image_store
from fdb import indexes as index_store
from fdb.index import EXACT_THRESHOLD, VectorIndex, build_index, load_index, prune, save_index
from fdb.store import FeatureDB
from fdb.writes import utcnow

WATERMARK_SLACK = dt.timedelta(minutes=10)
KEEP_VERSIONS = 2


@dataclass
class PoolIndex:
    index: VectorIndex
    centre: np.ndarray  # queries are centred on it, as the indexed vectors were
    added: int = 0  # vectors this call added
    rebuilt: bool = False  # built from every pool vector by this call


def pool_key(model_version: str, layer: str, backend: str) -> str:
    return f"pool-{model_version}-{layer}-{backend}".replace("/", "_")


def pool_index(fdb: FeatureDB, model_version: str, layer: str, root: str | Path, backend: str = "auto",
               exact_threshold: int = EXACT_THRESHOLD, rebuild: bool = False) -> PoolIndex | None:
    """The pool index of (model, layer), grown by what was written since it was last asked for; None when the
    pool holds no vector of that layer."""
    if fdb.layer_shape(model_version, layer) is None:
        return None
    key = pool_key(model_version, layer, backend)
    record = None if rebuild else index_store.latest_pool_index(fdb, key)
    if record is not None and Path(record["path"]).is_dir():
        current = _load(record["path"])
        centre = record["centre"]
        since = record["watermark"] - WATERMARK_SLACK
        newest = fdb.newest_feature_time(model_version, layer, since)  # before the read, as in _build
        new = fdb.read_vectors(model_version, layer, filter={"created_at": {"$gte": since}})
        watermark = max(record["watermark"], newest or record["watermark"])
        fresh = _in_pool(fdb, new.image_ids) & ~_indexed(current, new.owner_ids)
        added = int(fresh.sum())
        if added == 0:
            # Nothing for the pool (the labelled set's vectors, say): the range read next time starts later.
            index_store.advance_watermark(fdb, current.spec.version, watermark)
            return PoolIndex(current, centre)
        too_big_for_exact = backend == "auto" and current.spec.backend == "exact" \
            and len(current) + added >= exact_threshold
        if current.supports_add and not too_big_for_exact:
            _LOADED.pop(record["path"], None)  # about to change: no longer that version's content
            vectors = new.vectors[fresh].astype(np.float32) - centre
            current.add(vectors, new.owner_ids[fresh])
            _save(fdb, current, root, key, centre, watermark, added=added)
            return PoolIndex(current, centre, added=added)
    return _build(fdb, model_version, layer, root, backend, key, exact_threshold)


def rebuild_pool_indexes(fdb: FeatureDB, model_version: str, layers: tuple[str, ...], root: str | Path,
                         backend: str = "auto") -> dict[str, tuple[PoolIndex | None, float]]:
    """Each layer's pool index built afresh from every pool vector (a new centre and projection, for a pool that
    grew far from the vectors it was first built on), with the seconds it took; nights add to it again."""
    rebuilt = {}
    for layer in layers:
        t0 = time.perf_counter()
        built = pool_index(fdb, model_version, layer, root, backend=backend, rebuild=True)
        rebuilt[layer] = (built, round(time.perf_counter() - t0, 1))
    return rebuilt


def _build(fdb, model_version, layer, root, backend, key, exact_threshold) -> PoolIndex | None:
    # Taken before the read: whatever is written while it reads is newer, and the next call reads it (by id, once).
    watermark = fdb.newest_feature_time(model_version, layer) or utcnow()
    vs = fdb.read_vectors(model_version, layer, by_image=True)
    keep = np.isin(vs.image_ids, image_store.pool_image_ids(fdb, model_version))
    if not keep.any():
        return None
    vs_owner_ids = vs.owner_ids[keep]
    vectors = vs.vectors[keep].astype(np.float32)
    del vs
    centre = vectors.mean(axis=0)
    vectors -= centre  # in place: at a million 1024-d vectors each copy is 4 GB
    index = build_index(vectors, vs_owner_ids, model_version=model_version, layer=layer,
                        backend=backend, exact_threshold=exact_threshold)
    _save(fdb, index, root, key, centre, watermark, added=int(keep.sum()), rebuilt=True)
    return PoolIndex(index, centre, added=int(keep.sum()), rebuilt=True)


# The versions this process loaded or saved last, by directory: a graph of a million vectors takes a second to read,
# and a night asks for the same index more than once (growing it, then mining with it). A version directory never
# changes once written, so a cached one is always right; a new version has another directory.
_LOADED: dict[str, VectorIndex] = {}
_KEEP_LOADED = 4


def _load(path: str) -> VectorIndex:
    index = _LOADED.get(path)
    if index is None:
        index = load_index(path)
        _remember(path, index)
    return index


def _remember(path: str, index: VectorIndex) -> None:
    _LOADED[path] = index
    while len(_LOADED) > _KEEP_LOADED:
        _LOADED.pop(next(iter(_LOADED)))


def _indexed(index: VectorIndex, owner_ids: np.ndarray) -> np.ndarray:
    """Which of `owner_ids` the index holds (the rows the safety overlap reads twice). Sorted search over the
    index's ids: `np.isin` would hash all of them, a second at a million."""
    if len(owner_ids) == 0:
        return np.zeros(0, dtype=bool)
    held = np.sort(np.asarray(index.ids))
    at = np.minimum(np.searchsorted(held, owner_ids), len(held) - 1)
    return held[at] == owner_ids


def _in_pool(fdb: FeatureDB, image_ids: np.ndarray) -> np.ndarray:
    """Which rows' images are pool images (the labelled set's vectors share the layer, not the pool)."""
    if len(image_ids) == 0:
        return np.zeros(0, dtype=bool)
    unique = np.unique(image_ids)
    pool = image_store.pool_images_among(fdb, unique)
    return np.isin(image_ids, pool)


def _save(fdb, index, root, key, centre, watermark, added: int, rebuilt: bool = False) -> None:
    path = save_index(index, Path(root), key)
    _remember(str(path), index)
    index_store.record_pool_index(fdb, index.spec.as_dict(), key, str(path), centre, watermark, added=added,
                                  rebuilt=rebuilt, centred_on_pool_mean=True)
    index_store.forget(fdb, key, prune(Path(root), key, keep=KEEP_VERSIONS))
