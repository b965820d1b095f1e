"""The pool's vector index for one (model version, layer): built once, then kept up to date with each night.

Mining asks one question of the pool every night: the nearest pool vectors to the model's errors. Rebuilding the
index for it every night costs what the archive holds (every pool vector read and indexed again); this module keeps
one index per (model, layer, backend) and, at each upkeep (`update_pool_index`, the step the flows and
`dataengine mine` take before mining), takes in only the vectors written since the last one. Ranking only reads it
(`open_pool_index`), and refuses an index that is behind the pool (`PoolIndexBehind`), naming the upkeep:

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
- **Backends**: a small pool is served by exact search, which the night grows in place (a new version of a small
  index); once it reaches `exact_threshold` vectors it is rebuilt once as an HNSW index (`fdb.vector_index.hnsw_index`).
  `rebuild=True` (`dataengine reindex`) builds afresh: a new mean and projection for a pool that drifted.
- **A night beside a graph** (an HNSW or Annoy main): saving a grown HNSW graph writes the whole graph again
  (~0.6 GB per layer at a million vectors) and an Annoy forest cannot grow at all, so the night leaves the main's
  directory alone. Its vectors go into a small exact **recent side index** (pool key `<main's>-recent`), centred
  on the main's centre, recorded with its own watermark and `base_version`, the main version it sits beside; a
  side beside another version (merged, or its main rebuilt) is ignored. `PoolIndex.index` is then a
  `LayeredIndex`: both parts searched, each query's rows merged by their exact distances.
- **The merge** (`merge_recent_index`, `dataengine reindex --merge-recent`, weekly): an HNSW main takes the pool
  vectors newer than its watermark (the side's, through the same growth path as an exact main) and is saved as a
  new version once; an Annoy main is rebuilt. Then the side is deleted. The side is due (`merge_due`, logged) once
  it holds more than `max(RECENT_MIN, RECENT_SHARE x main)` vectors or was opened more than `RECENT_MAX_AGE`
  ago; a night never merges for that. Past `RECENT_HARD_FACTOR` times the size limit the night merges itself, so
  the side's exact search stays bounded even if the weekly merge never runs.

Every version is saved through `fdb.vector_index.save_index` (atomic CURRENT switch; HNSW chunks hard-linked, not
copied) and recorded in `indexes` with its watermark and centre; the two newest versions of a key are kept on disk.
The side is rewritten whole each night it grows (it is exact search: one array), a cost bounded by its limit.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fdb import images as image_store
from fdb import index_versions as index_store
from fdb.vector_index import EXACT_THRESHOLD, LayeredIndex, VectorIndex, build_index, load_index, prune, save_index
from fdb.store import FeatureDB
from fdb.writes import utcnow

WATERMARK_SLACK = dt.timedelta(minutes=10)
KEEP_VERSIONS = 2
RECENT_SUFFIX = "-recent"
# The recent side index is due for the weekly merge (`merge_due`) once it holds more than RECENT_MIN vectors or
# RECENT_SHARE of the main's, whichever is more, or was opened more than RECENT_MAX_AGE ago. At RECENT_MIN 1024-d
# vectors the side is 200 MB (float32), read whole by every query batch and rewritten whole each night it grows.
RECENT_MIN = 50_000
RECENT_SHARE = 0.05
RECENT_MAX_AGE = dt.timedelta(days=7)
# Past RECENT_HARD_FACTOR times that size a night merges by itself: exact search costs O(side) per query, and it
# must stay bounded even when no one runs the weekly merge.
RECENT_HARD_FACTOR = 4
# What a refusal to rank with an index behind the pool tells the caller to do.
_UPKEEP = ("bring it up to date before mining (`fdb.pool_index.update_pool_indexes`: the flows' step \"bring the "
           "pool index up to date\", which `dataengine mine` takes too)")

log = logging.getLogger(__name__)


class PoolIndexBehind(LookupError):
    """The pool holds vectors its index does not (or it has no index yet): bring it up to date first."""


@dataclass
class PoolIndex:
    index: VectorIndex | LayeredIndex  # the main index, or the main and its recent side index as one
    centre: np.ndarray  # queries are centred on it, as the indexed vectors were
    added: int = 0  # vectors this call added
    rebuilt: bool = False  # built from every pool vector by this call
    recent: int = 0  # vectors in the recent side index (0: there is none, and `index` is the main)
    merge_due: bool = False  # the side outgrew its soft limit (size or age): the weekly merge should run
    merged: int = 0  # side vectors this call merged into the main

    def summary(self) -> dict:
        return {"backend": self.index.spec.backend, "vectors": len(self.index), "version": self.index.spec.version,
                "added": self.added, "rebuilt": self.rebuilt, "recent": self.recent, "merge_due": self.merge_due,
                "merged": self.merged}


def pool_key(model_version: str, layer: str, backend: str) -> str:
    return f"pool-{model_version}-{layer}-{backend}".replace("/", "_")


@dataclass(frozen=True)
class _PoolRef:
    """Which pool index a call is about (model, layer, backend), and the root its versions are saved under."""

    fdb: FeatureDB
    model_version: str
    layer: str
    root: Path
    backend: str = "auto"
    exact_threshold: int = EXACT_THRESHOLD

    @property
    def key(self) -> str:
        return pool_key(self.model_version, self.layer, self.backend)

    @property
    def recent_key(self) -> str:
        return self.key + RECENT_SUFFIX


def update_pool_index(fdb: FeatureDB, model_version: str, layer: str, root: str | Path, backend: str = "auto",
                      exact_threshold: int = EXACT_THRESHOLD, rebuild: bool = False) -> PoolIndex | None:
    """The pool index of (model, layer) brought up to date, holding what was written up to now (built the first
    time, or afresh with `rebuild`); None when the pool holds no vector of that layer. An exact main grows itself;
    beside a graph main the night's vectors go to the recent side."""
    if fdb.layer_shape(model_version, layer) is None:
        return None
    ref = _PoolRef(fdb, model_version, layer, Path(root), backend, exact_threshold)
    record = None if rebuild else index_store.latest_pool_index(fdb, ref.key)
    if record is None or not Path(record["path"]).is_dir():
        return _build(ref)
    main = _load(record["path"])
    if main.spec.backend == "exact":
        return _grow_main(ref, record, main)
    return _grow_recent(ref, record, main)


def update_pool_indexes(fdb: FeatureDB, model_version: str, layers: tuple[str, ...], root: str | Path,
                        backend: str = "auto") -> dict[str, tuple[PoolIndex | None, float]]:
    """Each layer's pool index brought up to date (`update_pool_index`), with the seconds it took."""
    return _each_layer(layers, lambda layer: update_pool_index(fdb, model_version, layer, root, backend))


def open_pool_index(fdb: FeatureDB, model_version: str, layer: str, root: str | Path, backend: str = "auto"
                    ) -> PoolIndex | None:
    """The pool index of (model, layer) as its last upkeep left it (main and recent side), read only: what ranking
    searches. None when the pool holds no vector of that layer; `PoolIndexBehind` when it has no index yet or holds
    pool vectors written since that the index does not (a writer whose clock lags is left to the upkeep's slack)."""
    if fdb.layer_shape(model_version, layer) is None:
        return None
    ref = _PoolRef(fdb, model_version, layer, Path(root), backend)
    record = index_store.latest_pool_index(fdb, ref.key)
    if record is None or not Path(record["path"]).is_dir():
        if not _pool_has_vectors(ref):
            return None  # as its upkeep found it: nothing to index
        raise PoolIndexBehind(f"no pool index {ref.key} under {ref.root} yet: {_UPKEEP}")
    main = _load(record["path"])
    side_record = _recent_record(ref, main)
    side = _load(side_record["path"]) if side_record else None
    watermark = (side_record or record)["watermark"]
    missing = _not_indexed(ref, watermark, [part for part in (main, side) if part is not None])
    if missing:
        raise PoolIndexBehind(f"pool index {ref.key} is behind the pool: {missing} pool vectors written since its "
                              f"last upkeep ({watermark}) are not in it; {_UPKEEP}")
    return _beside(ref, main, side, side_record["opened_at"] if side_record else None, record["centre"])


def merge_recent_index(fdb: FeatureDB, model_version: str, layer: str, root: str | Path, backend: str = "auto"
                       ) -> PoolIndex | None:
    """The recent side index merged into its main: an HNSW main takes every pool vector newer than its watermark
    (the side's, and any written since) and is saved as a new version; an Annoy main is rebuilt. Then the side is
    deleted. None when the pool has no index yet."""
    return _merge(_PoolRef(fdb, model_version, layer, Path(root), backend))


def rebuild_pool_indexes(fdb: FeatureDB, model_version: str, layers: tuple[str, ...], root: str | Path,
                         backend: str = "auto") -> dict[str, tuple[PoolIndex | None, float]]:
    """Each layer's pool index built afresh from every pool vector (a new centre and projection, for a pool that
    grew far from the vectors it was first built on), with the seconds it took; nights add to it again."""
    return _each_layer(layers, lambda layer: update_pool_index(fdb, model_version, layer, root, backend, rebuild=True))


def merge_recent_indexes(fdb: FeatureDB, model_version: str, layers: tuple[str, ...], root: str | Path,
                         backend: str = "auto") -> dict[str, tuple[PoolIndex | None, float]]:
    """Each layer's recent side index merged into its main (`merge_recent_index`), with the seconds it took."""
    return _each_layer(layers, lambda layer: merge_recent_index(fdb, model_version, layer, root, backend))


def _each_layer(layers, make) -> dict[str, tuple[PoolIndex | None, float]]:
    done = {}
    for layer in layers:
        t0 = time.perf_counter()
        made = make(layer)
        done[layer] = (made, round(time.perf_counter() - t0, 1))
    return done


def _build(ref: _PoolRef) -> PoolIndex | None:
    fdb = ref.fdb
    # Taken before the read: whatever is written while it reads is newer, and the next call reads it (by id, once).
    watermark = fdb.newest_feature_time(ref.model_version, ref.layer) or utcnow()
    vs = fdb.read_vectors(ref.model_version, ref.layer, by_image=True)
    keep = np.isin(vs.image_ids, image_store.pool_image_ids(fdb, ref.model_version))
    if not keep.any():
        return None
    vs_owner_ids = vs.owner_ids[keep]
    vectors = vs.vectors[keep].astype(np.float32)
    del vs
    centre = vectors.mean(axis=0)
    vectors -= centre  # in place: at a million 1024-d vectors each copy is 4 GB
    index = build_index(vectors, vs_owner_ids, model_version=ref.model_version, layer=ref.layer,
                        backend=ref.backend, exact_threshold=ref.exact_threshold)
    _save(fdb, index, ref.root, ref.key, centre, watermark, added=int(keep.sum()), rebuilt=True)
    _drop_recent(ref)  # what it held is in the new main (a side beside an older main would be ignored anyway)
    return PoolIndex(index, centre, added=int(keep.sum()), rebuilt=True)


def _grow_main(ref: _PoolRef, record: dict, main: VectorIndex) -> PoolIndex:
    """The main itself grown by the pool vectors newer than its watermark (an exact main each night, a graph main
    when its side is merged); rebuilt when it cannot take them (Annoy) or outgrew exact search."""
    centre = record["centre"]
    new, watermark = _written_since(ref, record["watermark"])
    fresh = _in_pool(ref.fdb, new.image_ids) & ~_indexed(main, new.owner_ids)
    added = int(fresh.sum())
    if added == 0:
        # Nothing for the pool (the labelled set's vectors, say): the range read next time starts later.
        index_store.advance_watermark(ref.fdb, main.spec.version, watermark)
        return PoolIndex(main, centre)
    too_big_for_exact = ref.backend == "auto" and main.spec.backend == "exact" \
        and len(main) + added >= ref.exact_threshold
    if not main.supports_add or too_big_for_exact:
        return _build(ref)
    _LOADED.pop(record["path"], None)  # about to change: no longer that version's content
    main.add(new.vectors[fresh].astype(np.float32) - centre, new.owner_ids[fresh])
    _save(ref.fdb, main, ref.root, ref.key, centre, watermark, added=added)
    return PoolIndex(main, centre, added=added)


def _grow_recent(ref: _PoolRef, record: dict, main: VectorIndex) -> PoolIndex:
    """The night's pool vectors into the recent side index beside a graph main, whose directory is left alone;
    past the hard limit the night merges instead."""
    side_record = _recent_record(ref, main)
    side = _load(side_record["path"]) if side_record else None
    mark = side_record or record  # the side's watermark, once there is a side, is the newer one
    new, watermark = _written_since(ref, mark["watermark"])
    fresh = _in_pool(ref.fdb, new.image_ids) & ~_indexed(main, new.owner_ids)
    if side is not None:
        fresh &= ~_indexed(side, new.owner_ids)
    added = int(fresh.sum())
    held = len(side) if side is not None else 0
    if held + added > RECENT_HARD_FACTOR * _recent_limit(len(main)):
        log.warning("pool index %s: its recent side index would hold %d vectors, past %d x its merge limit: "
                    "merging it now (run `dataengine reindex --merge-recent` weekly)", ref.key, held + added,
                    RECENT_HARD_FACTOR)
        return replace(_merge(ref), added=added)
    if added == 0:
        index_store.advance_watermark(ref.fdb, mark["_id"], watermark)
        return _beside(ref, main, side, side_record["opened_at"] if side_record else None, record["centre"])
    vectors = new.vectors[fresh].astype(np.float32) - record["centre"]  # centred as the main's were
    side, opened_at = _add_to_recent(ref, main, side_record, side, vectors, new.owner_ids[fresh])
    _save(ref.fdb, side, ref.root, ref.recent_key, record["centre"], watermark, added=added,
          base_version=main.spec.version, opened_at=opened_at)
    return replace(_beside(ref, main, side, opened_at, record["centre"]), added=added)


def _add_to_recent(ref: _PoolRef, main: VectorIndex, side_record: dict | None, side: VectorIndex | None,
                   vectors: np.ndarray, ids: np.ndarray) -> tuple[VectorIndex, dt.datetime]:
    """The side with `vectors` added (a new exact index when there is none yet), and when it was opened."""
    if side is None:
        side = build_index(vectors, ids, ref.model_version, ref.layer, metric=main.spec.metric, backend="exact")
        return side, utcnow()
    _LOADED.pop(side_record["path"], None)  # about to change: no longer that version's content
    side.add(vectors, ids)
    return side, side_record["opened_at"]


def _merge(ref: _PoolRef) -> PoolIndex | None:
    record = index_store.latest_pool_index(ref.fdb, ref.key)
    if record is None or not Path(record["path"]).is_dir():
        return None
    main = _load(record["path"])
    side_record = _recent_record(ref, main)
    # The growth path reads from the main's watermark: the side's vectors and any written since, once each.
    grown = _grow_main(ref, record, main)
    _drop_recent(ref)  # after the new main is saved: a crash before leaves the side serving beside the old one
    return replace(grown, merged=side_record["n"] if side_record else 0)


def _written_since(ref: _PoolRef, watermark: dt.datetime):
    """The (model, layer) vectors written since `watermark` (less the slack), and the watermark after them."""
    since = watermark - WATERMARK_SLACK
    newest = ref.fdb.newest_feature_time(ref.model_version, ref.layer, since)  # before the read, as in _build
    new = ref.fdb.read_vectors(ref.model_version, ref.layer, filter={"created_at": {"$gte": since}})
    return new, max(watermark, newest or watermark)


def _not_indexed(ref: _PoolRef, watermark: dt.datetime, parts: list[VectorIndex]) -> int:
    """How many pool vectors written from `watermark` on none of `parts` holds. Right after an upkeep that reads
    the rows of the watermark's millisecond (the last it took in); rows written since (the labelled set's, a
    night's) are read too, and only pool vectors count."""
    if ref.fdb.newest_feature_time(ref.model_version, ref.layer, watermark) is None:
        return 0
    new = ref.fdb.read_vectors(ref.model_version, ref.layer, filter={"created_at": {"$gte": watermark}})
    fresh = _in_pool(ref.fdb, new.image_ids)
    for part in parts:
        fresh &= ~_indexed(part, new.owner_ids)
    return int(fresh.sum())


def _pool_has_vectors(ref: _PoolRef, batch: int = 10_000) -> bool:
    """Whether any pool image has a vector of (model, layer): the layer's image ids, a batch at a time, up to the
    first pool image (the first batch, for a pool never indexed; every row, for a layer only the labelled set has)."""
    rows = iter(ref.fdb.features.find({"model_version": ref.model_version, "layer": ref.layer},
                                      {"image_id": 1, "_id": 0}).batch_size(batch))
    while ids := [doc["image_id"].binary for doc in itertools.islice(rows, batch)]:
        if len(image_store.pool_images_among(ref.fdb, np.array(ids, dtype="S12"))):
            return True
    return False


def _recent_limit(main_size: int) -> int:
    """How many vectors the side may hold before it is due for a merge."""
    return max(RECENT_MIN, int(RECENT_SHARE * main_size))


def _recent_record(ref: _PoolRef, main: VectorIndex) -> dict | None:
    """The side beside this main, if any: one beside another main version was merged, or its main was rebuilt."""
    record = index_store.latest_pool_index(ref.fdb, ref.recent_key)
    if record is None or record.get("base_version") != main.spec.version or not Path(record["path"]).is_dir():
        return None
    return record


def _beside(ref: _PoolRef, main: VectorIndex, side: VectorIndex | None, opened_at: dt.datetime | None,
            centre: np.ndarray) -> PoolIndex:
    """The main alone, or the main and its side as one index, with whether the side is due for a merge."""
    if side is None:
        return PoolIndex(main, centre)
    due = len(side) > _recent_limit(len(main)) or utcnow() - opened_at > RECENT_MAX_AGE
    if due:
        log.warning("pool index %s: its recent side index (%d vectors, opened %s) is due to be merged: "
                    "`dataengine reindex --merge-recent`", ref.key, len(side), opened_at)
    return PoolIndex(LayeredIndex(main, side), centre, recent=len(side), merge_due=due)


def _drop_recent(ref: _PoolRef) -> None:
    """Every version of the side: its records first, so no reader is sent to a directory being removed."""
    for path in index_store.forget_pool(ref.fdb, ref.recent_key):
        _LOADED.pop(path, None)
    shutil.rmtree(ref.root / ref.recent_key, ignore_errors=True)


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


def _save(fdb, index, root, key, centre, watermark, added: int, rebuilt: bool = False, **facts) -> None:
    path = save_index(index, Path(root), key)
    _remember(str(path), index)
    index_store.record_pool_index(fdb, index.spec.as_dict(), key, str(path), centre, watermark, added=added,
                                  rebuilt=rebuilt, centred_on_pool_mean=True, **facts)
    index_store.forget(fdb, key, prune(Path(root), key, keep=KEEP_VERSIONS))
