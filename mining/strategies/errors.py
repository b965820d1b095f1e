"""`errors`: the pool images nearest to the model's errors on the labelled split (each error's query vector in
the pool index, `fdb.pool_index`). More queries hitting an image rank it higher; the best distance breaks ties;
near-duplicate images collapse to one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fdb import FeatureDB
from fdb import images as image_store
from fdb.pool_index import open_pool_index
from fdb.vectors import to_object_ids
from mining.config import MiningConfig
from mining.model_errors import operating_point_cost
from mining.strategies.base import Ranking, StrategyContext, register, reranked
from records import BOX_LAYER, IMAGE_LAYER, QueryHit, SelectedImage


@register("errors", searches_pool_index=True)
class ErrorRetrieval:
    """Nearest pool images to the error queries (`config.k` each), merged per image. With `budget_split="cost"`
    the budget is first split between the queried error types in proportion to what each costs on the labelled set
    (`split_budget`): the mAP it costs the model (`cost="map"`) or its count at the score threshold x its unit cost
    (`cost="operating-point"`, `operating_point_cost`); each type's share goes to the images nearest to its own
    queries."""

    def __init__(self, k: int = MiningConfig.k, backend: str = MiningConfig.backend,
                 duplicate_distance: float = MiningConfig.duplicate_distance,
                 budget_split: str = MiningConfig.budget_split, type_floor: float = MiningConfig.type_floor,
                 cost: str = MiningConfig.cost, fp_cost: float = MiningConfig.fp_cost,
                 miss_cost: float = MiningConfig.miss_cost):
        # The defaults are the mining config's, defined once there.
        if budget_split not in ("hits", "cost"):
            raise ValueError(f"budget_split is hits or cost, not {budget_split!r}")
        if cost not in ("map", "operating-point"):
            raise ValueError(f"cost is map or operating-point, not {cost!r}")
        self.k, self.backend, self.duplicate_distance = k, backend, duplicate_distance
        self.budget_split, self.type_floor = budget_split, type_floor
        self.cost, self.fp_cost, self.miss_cost = cost, fp_cost, miss_cost

    @classmethod
    def from_config(cls, config: MiningConfig) -> "ErrorRetrieval":
        return cls(config.k, config.backend, config.duplicate_distance, config.budget_split, config.type_floor,
                   config.cost, config.fp_cost, config.miss_cost)

    def prices(self, context: StrategyContext, types) -> dict[str, float]:
        """What each of `types` costs under this strategy's pricing: the mAP (`context.cost`) or the operating-point
        cost of its count at the score threshold (`context.counts`)."""
        priced = (operating_point_cost(context.counts, self.fp_cost, self.miss_cost)
                  if self.cost == "operating-point" else context.cost)
        return {t: priced.get(t, 0.0) for t in types}

    def _price_text(self, context: StrategyContext, error_type: str, price: float) -> str:
        """A type's price as the reason of each image in its share says it, naming the pricing."""
        if self.cost == "map":
            return f"{price:.4f} mAP"
        unit = self.miss_cost if error_type == "miss" else self.fp_cost
        return f"{context.counts.get(error_type, 0)} errors x {unit:g} at the operating point"

    def rank(self, context: StrategyContext, budget: int, exclude: frozenset = frozenset()) -> Ranking:
        rank = lambda queries, share, taken: rank_by_errors(  # noqa: E731
            context.fdb, context.model_version, queries, self.k, share, self.backend, self.duplicate_distance,
            context.index_root, context.pool_generation(), taken)
        if self.budget_split == "hits":
            return rank(context.queries, budget, exclude)
        by_type: dict[str, list] = {}
        for q in context.queries:
            by_type.setdefault(q.type, []).append(q)
        prices = self.prices(context, by_type)
        shares = split_budget(prices, budget, self.type_floor)
        images, taken, parts = [], frozenset(exclude), []
        # The costliest type first; what a type cannot fill (too few neighbours left) passes to the next.
        carry = 0
        for error_type in sorted(shares, key=lambda t: (-prices[t], t)):
            part = rank(by_type[error_type], shares[error_type] + carry, taken)
            carry = shares[error_type] + carry - len(part.images)
            for image in part.images:
                image.reason = (f"{error_type} ({shares[error_type]} of {budget} images for "
                                f"{self._price_text(context, error_type, prices[error_type])}): {image.reason}")
            images += reranked(part.images, start=len(images))
            taken |= {image.image_id for image in part.images}
            parts.append(part)
        return Ranking(images, {"k": self.k, "backend": self.backend, "duplicate_distance": self.duplicate_distance,
                                "budget_split": "cost", "type_floor": self.type_floor, "shares": shares,
                                # The pricing names the selection: the same pool priced otherwise is another one.
                                "cost": self.cost, "prices": {t: round(prices[t], 6) for t in shares},
                                **({"fp_cost": self.fp_cost, "miss_cost": self.miss_cost}
                                   if self.cost == "operating-point" else {})},
                       {k: v for p in parts for k, v in p.index_versions.items()},
                       {k: v for p in parts for k, v in p.neighbours.items()},
                       [d for p in parts for d in p.query_docs],
                       identity=tuple(x for p in parts for x in p.identity))


def split_budget(cost: dict[str, float], budget: int, floor: float = 0.1) -> dict[str, int]:
    """The budget split between error types in proportion to what each costs (its price), each type given at least
    `floor` x budget images (rounded down, at least one while the budget lasts) so that none starves; the largest
    remainders take the images rounding leaves. Types that cost nothing measurable share alike."""
    if not cost or budget <= 0:
        return {t: 0 for t in cost}
    types = sorted(cost)
    least = min(max(1, int(floor * budget)), budget // len(types)) if budget >= len(types) else 0
    shares = {t: least for t in types}
    left = budget - least * len(types)
    total = sum(max(0.0, cost[t]) for t in types)
    weights = {t: (max(0.0, cost[t]) / total if total > 0 else 1 / len(types)) for t in types}
    exact = {t: left * weights[t] for t in types}
    for t in types:
        shares[t] += int(exact[t])
    rest = budget - sum(shares.values())
    for t in sorted(types, key=lambda t: (-(exact[t] - int(exact[t])), -weights[t], t))[:rest]:
        shares[t] += 1
    return shares


def rank_by_errors(fdb: FeatureDB, model_version: str, queries, k: int, budget: int, backend: str,
                   duplicate_distance: float, index_root, generation: dict[str, int],
                   exclude: frozenset = frozenset()) -> Ranking:
    """Each query's `k` nearest eligible pool images (by its level's layer: detection or image vectors, centred on
    the pool's mean), merged per image, duplicates collapsed, capped at `budget`. `generation` is the pool's
    (`StrategyContext.pool_generation`)."""
    found = _search_pool(fdb, model_version, queries, k, backend, index_root)
    chosen = _choose_images(fdb, model_version, found, budget, duplicate_distance, exclude)
    images = [_selected_image(image_id, found.uri_of[image_id], rank, h) for rank, (image_id, h) in enumerate(chosen)]
    return Ranking(images, {"k": k, "backend": backend, "duplicate_distance": duplicate_distance},
                   found.index_versions, found.neighbours, found.query_docs,
                   # What may be selected is the index's content less what was exported or labelled since: the
                   # generation's counts say which.
                   identity=(sorted(str(q.error_id) for q in queries), found.index_versions, generation))


@dataclass
class _PoolHits:
    """What the error queries found in the pool: each image's hits and record, each query's neighbours."""
    uri_of: dict = field(default_factory=dict)
    sha_of: dict = field(default_factory=dict)
    hits: dict = field(default_factory=dict)  # image id -> its hits
    neighbours: dict[str, list] = field(default_factory=dict)
    index_versions: dict = field(default_factory=dict)
    means: dict[str, np.ndarray] = field(default_factory=dict)
    # Each query with the neighbours it found: recorded, so a person can look later.
    query_docs: list[dict] = field(default_factory=list)


def _search_pool(fdb: FeatureDB, model_version: str, queries, k: int, backend: str, index_root) -> _PoolHits:
    """Every query searched in its level's pool index, detection level first, the hits merged per image."""
    found = _PoolHits()
    found_nothing: list = []  # detection-level queries that reached no pool detection
    for level, layer in (("detection", BOX_LAYER), ("image", IMAGE_LAYER)):
        level_queries = [q for q in queries if q.level == level]
        if level == "image":
            # A miss searched with its ground-truth box's vector, which no pool detection lies near (the pool's
            # look-alikes may be missed too): its image's vector searches instead.
            level_queries += [replace(q, level="image", vector=q.fallback) for q in found_nothing
                              if q.fallback is not None]
        if not level_queries:
            continue
        pool = open_pool_index(fdb, model_version, layer, index_root, backend=backend)
        if pool is None or len(pool.index) == 0:
            found_nothing += level_queries if level == "detection" else []
            continue
        found_nothing += _search_level(fdb, model_version, pool, level_queries, level, layer, k, found)
    return found


def _search_level(fdb: FeatureDB, model_version: str, pool, level_queries: list, level: str, layer: str, k: int,
                  found: _PoolHits) -> list:
    """One level's queries searched in its pool index (centred on the pool's mean), their hits added to `found`;
    returns the detection-level queries with a fallback that reached no eligible pool detection."""
    mean = pool.centre
    found.means[layer] = mean
    found.index_versions[layer] = pool.index.spec.version
    query_vectors = np.stack([q.vector for q in level_queries])
    if query_vectors.shape[1] == len(mean):  # a wrong dimension is left for check_query to name
        query_vectors = query_vectors - mean
    pool.index.check_query(query_vectors, model_version)  # refuses another dimension or model, naming both
    rows, eligible = eligible_neighbours(fdb, model_version, pool, query_vectors, k, layer)
    for image_id, doc in eligible.items():
        found.uri_of[image_id], found.sha_of[image_id] = doc["uri"], doc.get("sha256")
    found_nothing = []
    for q, row in zip(level_queries, rows):
        if not row and level == "detection" and q.fallback is not None:
            found_nothing.append(q)
            continue
        _record_query(found, q, row, level, layer, model_version, pool.index.spec.version)
    return found_nothing


def _record_query(found: _PoolHits, q, row: list, level: str, layer: str, model_version: str,
                  index_version) -> None:
    """One query's neighbours added to `found`: a hit on each neighbour's image, and the query's record."""
    for _owner, image_id, dist in row:
        h = found.hits.setdefault(image_id, {"queries": {}, "best_distance": np.inf})
        # A query counts once per image, at its nearest neighbour there.
        previous = h["queries"].get(q.error_id)
        if previous is None or dist < previous.distance:
            h["queries"][q.error_id] = QueryHit(q.error_id, q.type, q.category_name, q.source_image_id,
                                                level, float(dist))
        h["best_distance"] = min(h["best_distance"], float(dist))
    found.neighbours[str(q.error_id)] = row
    found.query_docs.append(query_doc(q, row, level, layer, model_version, index_version))


def query_doc(q, row: list, level: str, layer: str, model_version: str, index_version) -> dict:
    """A query as a selection records it (`fdb.selections.record_queries`), with the neighbours it found: rows of
    (owner id, image id, distance)."""
    return {"error_id": q.error_id, "type": q.type, "category": q.category_name, "level": level, "layer": layer,
            "source_image_id": q.source_image_id, "detection_id": q.detection_id, "bbox": q.bbox,
            "model_version": model_version, "index_version": index_version,
            "neighbours": [{"rank": r, "owner_id": owner, "image_id": image_id, "distance": dist}
                           for r, (owner, image_id, dist) in enumerate(row)]}


def _choose_images(fdb: FeatureDB, model_version: str, found: _PoolHits, budget: int, duplicate_distance: float,
                   exclude: frozenset) -> list:
    """The hit images, most queries first (then the best distance), less the excluded and the duplicates, capped
    at `budget`: (image id, its hits) pairs."""
    ranked = sorted(found.hits.items(), key=lambda kv: (-len(kv[1]["queries"]), kv[1]["best_distance"], str(kv[0])))
    chosen, seen_content = [], set()
    image_vectors = fdb.vectors_by_owner(model_version, IMAGE_LAYER, [i for i, _ in ranked]) if ranked else {}
    kept_vectors = []
    # Near-duplicates are judged on centred image vectors too: raw ones of different street scenes sit within
    # 1e-3 of each other in cosine distance.
    centre = found.means.get(IMAGE_LAYER)
    if centre is None:
        centre = np.mean(list(image_vectors.values()), axis=0) if image_vectors else 0.0
    for image_id, h in ranked:
        if len(chosen) >= budget:
            break
        if image_id in exclude:
            continue
        if found.sha_of.get(image_id) and found.sha_of[image_id] in seen_content:
            continue  # the same bytes under another name
        vec = image_vectors.get(image_id)
        if vec is not None:
            vec = vec - centre
        if vec is not None and kept_vectors and _min_cosine_distance(vec, kept_vectors) < duplicate_distance:
            continue  # the same content, re-encoded: one copy is enough for the labellers
        seen_content.add(found.sha_of.get(image_id))
        if vec is not None:
            kept_vectors.append(vec)
        chosen.append((image_id, h))
    return chosen


def _selected_image(image_id, uri: str, rank: int, h: dict) -> SelectedImage:
    """A chosen image as a selection entry: its queries nearest first (at most 20 kept) and why it was chosen."""
    qs = sorted(h["queries"].values(), key=lambda q: q.distance)
    types = sorted({q.type for q in qs})
    classes = sorted({q.category for q in qs})
    return SelectedImage(
        image_id, uri, rank, hits=len(qs), best_distance=h["best_distance"], queries=qs[:20],
        reason=f"nearest pool image to {len(qs)} error queries ({', '.join(types)}; "
               f"classes {', '.join(classes)}), best distance {h['best_distance']:.4f}")


def eligible_neighbours(fdb: FeatureDB, model_version: str, pool, query_vectors: np.ndarray, k: int, layer: str):
    """Each query's k nearest pool vectors whose images may still be selected, as rows of (owner id, image id,
    distance), and those images' records. The index holds the whole processed pool (fdb.pool_index); exported or
    labelled images are dropped here, so more neighbours are fetched for each query short of k, and only for those
    (a nightly's queries come back every night while its nearest images leave the pool: a few of them search far,
    the rest stay cheap), until each has k or none are left."""
    index = pool.index
    fetch = min(len(index), 2 * k)
    # However much of a query's neighbourhood was exported, no query asks for more than this many neighbours.
    limit = min(len(index), max(50 * k, 2000))
    image_of: dict = {}
    eligible: dict = {}
    checked: set = set()
    rows: list[list] = [[] for _ in range(len(query_vectors))]
    short = list(range(len(query_vectors)))
    while True:
        found_ids, distances = index.query(query_vectors[short], k=fetch)
        owners = {o for o in to_object_ids(np.unique(found_ids[found_ids != b""])) if o not in image_of}
        if owners:
            image_of.update(owners_to_images(fdb, model_version, layer, owners))
        unchecked = set(image_of.values()) - checked
        if unchecked:
            eligible.update(image_store.eligible_among(fdb, model_version, unchecked))
            checked |= unchecked
        for q, row_ids, row_d in zip(short, found_ids, distances):
            row = []
            for owner, dist in zip(to_object_ids(row_ids[row_ids != b""]), row_d[row_ids != b""]):
                image_id = image_of.get(owner)
                if image_id in eligible and np.isfinite(dist) and len(row) < k:
                    row.append((owner, image_id, float(dist)))
            rows[q] = row
        short = [q for q in short if len(rows[q]) < k]
        if fetch >= limit or not short:
            return rows, eligible
        fetch = min(limit, fetch * 4)


def owners_to_images(fdb: FeatureDB, model_version: str, layer: str, owners) -> dict:
    """owner id -> image id: an image vector's owner is its image; a detection's is looked up by feature id."""
    if layer == IMAGE_LAYER:
        return {o: o for o in owners}
    return fdb.image_ids_of(model_version, layer, list(owners))


def _min_cosine_distance(vec: np.ndarray, others: list[np.ndarray]) -> float:
    m = np.stack(others)
    sims = m @ vec / (np.linalg.norm(m, axis=1) * np.linalg.norm(vec) + 1e-12)
    return float(1 - sims.max())
