"""`errors`: the pool images nearest to the model's errors on the labelled split (each error's query vector in
the pool index, `fdb.pool_index`). More queries hitting an image rank it higher; the best distance breaks ties;
near-duplicate images collapse to one."""

from __future__ import annotations

import numpy as np

from fdb import FeatureDB
from fdb import images as image_store
from fdb.pool_index import pool_index
from fdb.vectors import to_object_ids
from mining.config import MiningConfig
from mining.strategies.base import Ranking, StrategyContext, register
from records import BOX_LAYER, IMAGE_LAYER, QueryHit, SelectedImage


@register("errors")
class ErrorRetrieval:
    """Nearest pool images to the error queries (`config.k` each), merged per image."""

    def __init__(self, k: int = 20, backend: str = "auto", duplicate_distance: float = 1e-4):
        self.k, self.backend, self.duplicate_distance = k, backend, duplicate_distance

    @classmethod
    def from_config(cls, config: MiningConfig) -> "ErrorRetrieval":
        return cls(config.k, config.backend, config.duplicate_distance)

    def rank(self, context: StrategyContext, budget: int, exclude: frozenset = frozenset()) -> Ranking:
        return rank_by_errors(context.fdb, context.model_version, context.queries, self.k, budget, self.backend,
                              self.duplicate_distance, context.index_root, exclude)


def rank_by_errors(fdb: FeatureDB, model_version: str, queries, k: int, budget: int, backend: str,
                   duplicate_distance: float, index_root, exclude: frozenset = frozenset()) -> Ranking:
    """Each query's `k` nearest eligible pool images (by its level's layer: detection or image vectors, centred on
    the pool's mean), merged per image, duplicates collapsed, capped at `budget`."""
    uri_of: dict = {}
    sha_of: dict = {}
    hits: dict = {}  # image id -> its hits
    neighbours: dict[str, list] = {}
    index_versions = {}
    means: dict[str, np.ndarray] = {}
    query_docs: list[dict] = []  # each query with the neighbours it found: recorded, so a person can look later
    for level, layer in (("detection", BOX_LAYER), ("image", IMAGE_LAYER)):
        level_queries = [q for q in queries if q.level == level]
        if not level_queries:
            continue
        pool = pool_index(fdb, model_version, layer, index_root, backend=backend)
        if pool is None or len(pool.index) == 0:
            continue
        mean = pool.centre
        means[layer] = mean
        index_versions[layer] = pool.index.spec.version
        query_vectors = np.stack([q.vector for q in level_queries])
        if query_vectors.shape[1] == len(mean):  # a wrong dimension is left for check_query to name
            query_vectors = query_vectors - mean
        pool.index.check_query(query_vectors, model_version)  # refuses another dimension or model, naming both
        rows, eligible = _eligible_neighbours(fdb, model_version, pool, query_vectors, k, layer)
        for image_id, doc in eligible.items():
            uri_of[image_id], sha_of[image_id] = doc["uri"], doc.get("sha256")
        for q, row in zip(level_queries, rows):
            for _owner, image_id, dist in row:
                h = hits.setdefault(image_id, {"queries": {}, "best_distance": np.inf})
                # A query counts once per image, at its nearest neighbour there.
                previous = h["queries"].get(q.error_id)
                if previous is None or dist < previous.distance:
                    h["queries"][q.error_id] = QueryHit(q.error_id, q.type, q.category_name, q.source_image_id,
                                                        level, float(dist))
                h["best_distance"] = min(h["best_distance"], float(dist))
            neighbours[str(q.error_id)] = row
            query_docs.append({"error_id": q.error_id, "type": q.type, "category": q.category_name,
                               "level": level, "layer": layer, "source_image_id": q.source_image_id,
                               "detection_id": q.detection_id, "bbox": q.bbox, "model_version": model_version,
                               "index_version": pool.index.spec.version,
                               "neighbours": [{"rank": r, "owner_id": owner, "image_id": image_id, "distance": dist}
                                              for r, (owner, image_id, dist) in enumerate(row)]})

    ranked = sorted(hits.items(), key=lambda kv: (-len(kv[1]["queries"]), kv[1]["best_distance"], str(kv[0])))
    chosen, seen_content = [], set()
    image_vectors = fdb.vectors_by_owner(model_version, IMAGE_LAYER, [i for i, _ in ranked]) if ranked else {}
    kept_vectors = []
    # Near-duplicates are judged on centred image vectors too: raw ones of different street scenes sit within
    # 1e-3 of each other in cosine distance.
    centre = means.get(IMAGE_LAYER)
    if centre is None:
        centre = np.mean(list(image_vectors.values()), axis=0) if image_vectors else 0.0
    for image_id, h in ranked:
        if len(chosen) >= budget:
            break
        if image_id in exclude:
            continue
        if sha_of.get(image_id) and sha_of[image_id] in seen_content:
            continue  # the same bytes under another name
        vec = image_vectors.get(image_id)
        if vec is not None:
            vec = vec - centre
        if vec is not None and kept_vectors and _min_cosine_distance(vec, kept_vectors) < duplicate_distance:
            continue  # the same content, re-encoded: one copy is enough for the labellers
        seen_content.add(sha_of.get(image_id))
        if vec is not None:
            kept_vectors.append(vec)
        chosen.append((image_id, h))

    images = []
    for rank, (image_id, h) in enumerate(chosen):
        qs = sorted(h["queries"].values(), key=lambda q: q.distance)
        types = sorted({q.type for q in qs})
        classes = sorted({q.category for q in qs})
        images.append(SelectedImage(
            image_id, uri_of[image_id], rank, hits=len(qs), best_distance=h["best_distance"], queries=qs[:20],
            reason=f"nearest pool image to {len(qs)} error queries ({', '.join(types)}; "
                   f"classes {', '.join(classes)}), best distance {h['best_distance']:.4f}"))
    return Ranking(images, {"k": k, "backend": backend, "duplicate_distance": duplicate_distance}, index_versions,
                   neighbours, query_docs,
                   # What may be selected is the index's content less what was exported or labelled since: the
                   # generation's counts say which, at a cost that does not grow with the pool.
                   identity=(sorted(str(q.error_id) for q in queries), index_versions,
                             image_store.pool_generation(fdb, model_version)))


def _eligible_neighbours(fdb: FeatureDB, model_version: str, pool, query_vectors: np.ndarray, k: int, layer: str):
    """Each query's k nearest pool vectors whose images may still be selected, as rows of (owner id, image id,
    distance), and those images' records. The index holds the whole processed pool (fdb.pool_index); exported or
    labelled images are dropped here, so more neighbours are fetched until each query has k (or none are left)."""
    index = pool.index
    fetch = min(len(index), 2 * k)
    # However much of a query's neighbourhood was exported, no query asks for more than this many neighbours.
    limit = min(len(index), max(50 * k, 2000))
    image_of: dict = {}
    eligible: dict = {}
    checked: set = set()
    while True:
        found_ids, distances = index.query(query_vectors, k=fetch)
        owners = {o for o in to_object_ids(np.unique(found_ids[found_ids != b""])) if o not in image_of}
        if owners:
            image_of.update(_owners_to_images(fdb, model_version, layer, owners))
        unchecked = set(image_of.values()) - checked
        if unchecked:
            eligible.update(image_store.eligible_among(fdb, model_version, unchecked))
            checked |= unchecked
        rows = []
        for row_ids, row_d in zip(found_ids, distances):
            row = []
            for owner, dist in zip(to_object_ids(row_ids[row_ids != b""]), row_d[row_ids != b""]):
                image_id = image_of.get(owner)
                if image_id in eligible and np.isfinite(dist) and len(row) < k:
                    row.append((owner, image_id, float(dist)))
            rows.append(row)
        if fetch >= limit or all(len(row) == k for row in rows):
            return rows, eligible
        fetch = min(limit, fetch * 4)


def _owners_to_images(fdb: FeatureDB, model_version: str, layer: str, owners) -> dict:
    """owner id -> image id: an image vector's owner is its image; a detection's is looked up by feature id."""
    if layer == IMAGE_LAYER:
        return {o: o for o in owners}
    return fdb.image_ids_of(model_version, layer, list(owners))


def _min_cosine_distance(vec: np.ndarray, others: list[np.ndarray]) -> float:
    m = np.stack(others)
    sims = m @ vec / (np.linalg.norm(m, axis=1) * np.linalg.norm(vec) + 1e-12)
    return float(1 - sims.max())
