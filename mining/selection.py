"""Selecting hard cases: the nearest pool images to the error queries become a labelling selection, with the
reason for every image recorded; a random arm of the same budget is drawn beside it.

`mine` asks the pool index (fdb.pool_index: every pool image this model processed, grown with each night) for each
query's k nearest neighbours among the images still eligible (unlabelled, not quarantined, not yet exported),
merges them per image (more queries hitting an image rank it higher; the best distance breaks ties), collapses
near-duplicate images, caps at the budget, and records the selection with its provenance in fdb.
`random_selection` draws the same budget from the same pool: the baseline arm every comparison needs.
`mine_hard_cases` is the whole job over errors the store already holds: mining never runs a model (`tasks` runs it
first).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fdb import FeatureDB
from fdb import images as image_store
from fdb import runs as run_store
from fdb import selections as selection_store
from fdb.pool_index import pool_index
from fdb.vectors import to_object_ids
from mining.config import LabelErrorConfig, MatchConfig, MiningConfig
from mining.errors import ErrorReport, find_errors
from mining.label_errors import LabelErrorReport, explained_errors, find_label_errors
from mining.montage import query_montage
from mining.queries import Query, build_queries, chosen_errors
from records import BOX_LAYER, IMAGE_LAYER, QueryHit, SelectedImage, SelectionInfo
from records.coco import CocoSet


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Selection:
    info: SelectionInfo
    images: list[SelectedImage]  # in rank order
    neighbours: dict = field(default_factory=dict)  # query error id -> [(owner id, image id, distance)]

    @property
    def selection_id(self) -> str:
        return self.info.selection_id

    @property
    def index_versions(self) -> dict[str, str]:
        return self.info.index_versions

    def __len__(self) -> int:
        return len(self.images)


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


def mine(fdb: FeatureDB, model_version: str, queries: list[Query], config: MiningConfig = MiningConfig(),
         index_root: str | Path = "indexes", params: dict | None = None) -> Selection:
    """Select up to `config.budget` pool images nearest to the queries (`config.k` each), and record the
    selection in fdb. `params` are recorded with it (and name it) beside the mining parameters."""
    k, budget, backend, duplicate_distance = config.k, config.budget, config.backend, config.duplicate_distance
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

    params = {"k": k, "budget": budget, "backend": backend, "duplicate_distance": duplicate_distance,
              **(params or {})}
    # What may be selected is the index's content less what was exported or labelled since: the generation's
    # counts say which, at a cost that does not grow with the pool.
    selection_id = "sel-" + _key(model_version, params, sorted(str(q.error_id) for q in queries), index_versions,
                                 image_store.pool_generation(fdb, model_version))
    images = []
    for rank, (image_id, h) in enumerate(chosen):
        qs = sorted(h["queries"].values(), key=lambda q: q.distance)
        types = sorted({q.type for q in qs})
        classes = sorted({q.category for q in qs})
        images.append(SelectedImage(
            image_id, uri_of[image_id], rank, hits=len(qs), best_distance=h["best_distance"], queries=qs[:20],
            reason=f"nearest pool image to {len(qs)} error queries ({', '.join(types)}; "
                   f"classes {', '.join(classes)}), best distance {h['best_distance']:.4f}"))
    info = SelectionInfo(selection_id, "mined", model_version, params, index_versions)
    selection_store.record_selection(fdb, info, images)
    selection_store.record_queries(fdb, selection_id, query_docs)
    return Selection(info, images, neighbours)


def _min_cosine_distance(vec: np.ndarray, others: list[np.ndarray]) -> float:
    m = np.stack(others)
    sims = m @ vec / (np.linalg.norm(m, axis=1) * np.linalg.norm(vec) + 1e-12)
    return float(1 - sims.max())


def random_selection(fdb: FeatureDB, model_version: str, budget: int, seed: int = 0,
                     params: dict | None = None) -> Selection:
    """The baseline arm: `budget` images drawn uniformly from the same eligible pool."""
    pool = image_store.eligible_pool_ids(fdb, model_version)  # sorted ids only: the pool's records stay unread
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(pool), size=min(budget, len(pool)), replace=False).tolist()) if len(pool) else []
    params = {"budget": budget, "seed": seed, **(params or {})}
    selection_id = "rnd-" + _key(model_version, params, hashlib.sha256(pool.tobytes()).hexdigest())
    drawn = to_object_ids(pool[picked]) if picked else []
    records = image_store.by_id(fdb, drawn)
    images = [SelectedImage(image_id, records[image_id]["uri"], r,
                            reason=f"random draw (seed {seed}) from {len(pool)} eligible pool images")
              for r, image_id in enumerate(drawn)]
    info = SelectionInfo(selection_id, "random", model_version, params)
    selection_store.record_selection(fdb, info, images)
    return Selection(info, images)


# ---------------------------------------------------------------------------------------------------- the job
def last_labelled_set(fdb: FeatureDB) -> tuple[str, str] | None:
    """(COCO json, image folder) of the labelled set the last mining run used, so later runs can omit it."""
    params = run_store.last_run_parameters(fdb, "mine_hard_cases", having="gt_json")
    return (params["gt_json"], params["gt_images"]) if params else None


@dataclass
class MiningResult:
    errors: ErrorReport
    queries: list[Query]
    selection: Selection
    random: Selection | None
    montage: Path | None
    run_id: object
    label_errors: LabelErrorReport | None = None
    left_out: dict[str, int] = field(default_factory=dict)  # suspect type -> errors it explained, not queried


def mine_hard_cases(fdb: FeatureDB, model_version: str, ground_truth: CocoSet,
                    config: MiningConfig = MiningConfig(), match: MatchConfig = MatchConfig(),
                    out_dir: str | Path = ".", label_config: LabelErrorConfig = LabelErrorConfig()) -> MiningResult:
    """The "mine hard cases" job over what the store holds: type the model's errors on the labelled set (whose
    images it must have processed), leave out those a suspected label error explains (unless
    `config.keep_label_errors`), query the pool with the rest, record the selection (and a random arm of the
    same budget), and draw the montage."""
    run_params = {"k": config.k, "budget": config.budget, "match": match.as_dict(), "types": _list(config.types),
                  "classes": _list(config.classes), "level": config.level, "backend": config.backend,
                  "random_arm": config.random_arm, "seed": config.seed,
                  "keep_label_errors": config.keep_label_errors, "label_errors": label_config.as_dict(),
                  "gt_json": str(Path(ground_truth.path).resolve()), "gt_images": str(ground_truth.image_dir)}
    run_id = run_store.start_run(fdb, "mine_hard_cases", run_params, model_version=model_version)
    errors = find_errors(fdb, model_version, ground_truth, match)
    # Suspects are judged (and recorded) either way, so the report can show them beside the model's errors.
    label_errors = find_label_errors(fdb, model_version, ground_truth, label_config, match)
    explained = ({} if label_errors.judge_too_weak else
                 explained_errors(errors.errors, label_errors.suspects, label_config.threshold))
    model_errors = errors.errors if config.keep_label_errors else [e for e in errors.errors if e.id not in explained]
    queries = build_queries(fdb, model_version, model_errors, types=config.types, classes=config.classes,
                            level=config.level)
    left_out = {} if config.keep_label_errors else dict(Counter(
        explained[e.id] for e in chosen_errors(errors.errors, config.types, config.classes) if e.id in explained))
    out_dir = Path(out_dir)
    selection = mine(fdb, model_version, queries, config, index_root=out_dir / "indexes",
                     params={"match": match.as_dict(), "types": _list(config.types),
                             "classes": _list(config.classes), "level": config.level})
    baseline = random_selection(fdb, model_version, config.budget, seed=config.seed) if config.random_arm else None
    montage = query_montage(fdb, queries, selection.neighbours,
                            out_dir / "selections" / selection.selection_id / "montage.png")
    run_store.finish_run(fdb, run_id, metrics={
        "errors": errors.totals(), "label_errors": label_errors.counts(), "left_out_as_label_errors": left_out,
        "label_error_predictions": label_errors.predictions, "label_error_judge_too_weak": label_errors.judge_too_weak,
        "queries": len(queries), "selected": len(selection),
        "selection_id": selection.selection_id, "random_selection_id": baseline.selection_id if baseline else None})
    return MiningResult(errors, queries, selection, baseline, montage, run_id, label_errors, left_out)


def _list(values):
    return list(values) if values is not None else None


# ---------------------------------------------------------------------------------------------------- nightly
def pool_state(fdb: FeatureDB, model_version: str, gt_json: str | Path, params: dict) -> str:
    """A key for everything a scheduled mining run depends on: the model, the labelled set's bytes, the
    parameters, the pool images this model has processed and which of them have labels back. A run whose key is
    already recorded has nothing new to mine: exporting its selection removed those images from the pool, so
    mining again would queue a second batch for the same night."""
    # Counts of processed pool images and labels back: each only grows, so they change whenever the pool does,
    # and they cost the same at a million images as at ten (the labelled set is covered by its bytes). Exports
    # are left out on purpose: the night's own export must not make the same night look new.
    generation = image_store.pool_generation(fdb, model_version)
    generation.pop("exported")
    gt_sha = hashlib.sha256(Path(gt_json).read_bytes()).hexdigest()
    return "state-" + _key(model_version, gt_sha, params, generation)
