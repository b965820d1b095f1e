"""Mining hard cases: the detector's errors on labelled images become queries, and their nearest neighbours in
the unlabelled pool become a labelling selection, with the reason for every image recorded.

1. `find_errors`: match the model's stored detections on a labelled COCO set to its ground truth
   (`detectors.errors`), and record every error in fdb (`errors`), idempotently.
2. `build_queries`: a false positive queries with its own box-head vector (detection level) or its image's
   vector (image level); a miss has no detection, so it always queries with its image's vector.
3. `mine`: index the eligible pool (unlabelled, not quarantined, not yet exported, processed by this model),
   take each query's k nearest neighbours, merge them per image (more queries hitting an image rank it higher;
   the best distance breaks ties), collapse near-duplicate images, cap at the budget, and record the selection
   with its provenance in fdb (`selections`). `random_selection` draws the same budget from the same pool: the
   baseline arm every comparison needs.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bson import ObjectId

from detectors.errors import ERROR_TYPES, MatchParams, type_image_errors
from detectors.taps import BOX_LAYER, IMAGE_LAYER
from fdb.montage import query_montage
from fdb.store import FeatureDB, bulk_insert, stable_id, utcnow
from fdb.vectors import to_object_ids


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------- errors
@dataclass
class ErrorReport:
    model_version: str
    params: MatchParams
    images: int
    errors: list[dict]
    counts: dict[str, dict[str, int]]  # error type -> class name -> count

    def table(self) -> str:
        classes = sorted({c for by_class in self.counts.values() for c in by_class})
        lines = [f"{'error type':<18}" + "".join(f"{c:>12}" for c in classes) + f"{'total':>8}"]
        for kind in ERROR_TYPES:
            row = self.counts.get(kind, {})
            lines.append(f"{kind:<18}" + "".join(f"{row.get(c, 0):>12}" for c in classes)
                         + f"{sum(row.values()):>8}")
        return "\n".join(lines)


def find_errors(fdb: FeatureDB, model_version: str, ground_truth, params: MatchParams = MatchParams()) -> ErrorReport:
    """Type the errors of `model_version` on the labelled COCO set `ground_truth` (a `detectors.coco.CocoSet`
    whose images were run through `detect_images`), and record them in fdb."""
    names = {c["id"]: c["name"] for c in ground_truth.categories}
    uri_of = {cid: str(ground_truth.image_path(cid).resolve()) for cid in ground_truth.images}
    docs = {d["uri"]: d for d in fdb.images.find({"uri": {"$in": list(uri_of.values())}})}
    not_done = [u for u in uri_of.values() if model_version not in docs.get(u, {}).get("processed_by", [])]
    if not_done:
        raise LookupError(f"{len(not_done)} of {len(uri_of)} labelled images have no detections from model "
                          f"{model_version} (e.g. {not_done[0]}): run detection over them first")
    image_ids = [docs[u]["_id"] for u in uri_of.values()]
    by_image = defaultdict(list)
    for det in fdb.detections.find({"image_id": {"$in": image_ids}, "model_version": model_version},
                                   {"mask": 0}):
        by_image[det["image_id"]].append(det)

    params_key = _key(params.as_dict())
    records = []
    for coco_id, uri in uri_of.items():
        image = docs[uri]
        dets = [{"id": d["_id"], "category_id": d["category_id"], "bbox": d["box"], "score": d["score"]}
                for d in by_image[image["_id"]]]
        for error in type_image_errors(dets, ground_truth.annotations_by_image[coco_id], params):
            subject = error["detection_id"] if error["detection_id"] is not None else f"gt{error['gt_id']}"
            records.append({
                "_id": stable_id("err", model_version, params_key, image["_id"], error["type"], subject),
                "model_version": model_version, "params_key": params_key, "params": params.as_dict(),
                "image_id": image["_id"], "coco_image_id": coco_id, "uri": uri, **error,
                "category_name": names.get(error["category_id"]),
                "true_category_name": names.get(error["true_category_id"]), "created_at": utcnow(),
            })
    bulk_insert(fdb.errors, records)
    counts: dict[str, dict[str, int]] = {kind: {} for kind in ERROR_TYPES}
    for r in records:
        counts[r["type"]][r["category_name"]] = counts[r["type"]].get(r["category_name"], 0) + 1
    return ErrorReport(model_version, params, len(uri_of), records, counts)


# ---------------------------------------------------------------------------------------------------- queries
@dataclass
class Query:
    error_id: ObjectId
    type: str
    category_name: str
    source_image_id: ObjectId
    level: str  # "detection" or "image": which vector it searches with
    vector: np.ndarray
    detection_id: ObjectId | None = None
    bbox: list[float] | None = None


def build_queries(fdb: FeatureDB, model_version: str, errors: list[dict], types=None, classes=None,
                  level: str = "detection") -> list[Query]:
    """One query per error of the chosen types and classes. Misses always use the image vector."""
    chosen = [e for e in errors if (not types or e["type"] in types) and (not classes or e["category_name"] in classes)]
    chosen.sort(key=lambda e: str(e["_id"]))
    det_ids = [e["detection_id"] for e in chosen if e["detection_id"] is not None and level == "detection"]
    det_vectors = _vectors_by_owner(fdb, model_version, BOX_LAYER, {"owner_id": {"$in": det_ids}}) if det_ids else {}
    image_vectors = _vectors_by_owner(fdb, model_version, IMAGE_LAYER,
                                      {"owner_id": {"$in": list({e["image_id"] for e in chosen})}})
    queries = []
    for e in chosen:
        if level == "detection" and e["detection_id"] is not None:
            queries.append(Query(e["_id"], e["type"], e["category_name"], e["image_id"], "detection",
                                 det_vectors[e["detection_id"]], e["detection_id"], e["bbox"]))
        else:
            queries.append(Query(e["_id"], e["type"], e["category_name"], e["image_id"], "image",
                                 image_vectors[e["image_id"]], None, e["bbox"]))
    return queries


def _vectors_by_owner(fdb, model_version, layer, filter) -> dict[ObjectId, np.ndarray]:
    vs = fdb.read_vectors(model_version, layer, filter=filter)
    return dict(zip(vs.object_ids(), vs.vectors.astype(np.float32)))


# ---------------------------------------------------------------------------------------------------- pool
def eligible_pool(fdb: FeatureDB, model_version: str) -> list[dict]:
    """Pool images that may be selected: unlabelled, readable, processed by this model, not yet exported."""
    exported = fdb.selections.distinct("image_id", {"export_id": {"$ne": None}})
    return list(fdb.images.find({"split": "pool", "labelled": False, "status": "ok", "processed_by": model_version,
                                 "_id": {"$nin": exported}}, {"uri": 1, "sha256": 1}).sort("_id", 1))


# ---------------------------------------------------------------------------------------------------- mining
@dataclass
class Selection:
    selection_id: str
    arm: str
    model_version: str
    images: list[dict]  # in rank order: image_id, uri, hits, best_distance, queries
    params: dict
    index_versions: dict[str, str] = field(default_factory=dict)
    neighbours: dict = field(default_factory=dict)  # query error id -> [(owner id, image id, distance)]

    def __len__(self) -> int:
        return len(self.images)


def _build_pool_index(fdb, model_version, layer, pool_ids, index_root, backend):
    """The pool's index for one layer, over mean-centred vectors, and the mean queries must be centred with.

    FC and pooled FPN vectors share a large common component (every image has road and sky), so raw cosine
    distances crowd together; centring on the pool's mean spreads them (a probe here: 83 % -> 88-90 % of mined
    images holding the queried error). The index is keyed by its content, so an unchanged pool reuses it.
    """
    from fdb.index import build_index, load_index, save_index  # noqa: PLC0415 - heavy, only when mining

    vs = fdb.read_vectors(model_version, layer, filter={"image_id": {"$in": pool_ids}})
    if len(vs) == 0:
        return None, vs, None
    vectors = vs.vectors.astype(np.float32)
    mean = vectors.mean(axis=0)
    content = _key(model_version, layer, backend, "centred", hashlib.sha256(vs.owner_ids.tobytes()).hexdigest())
    record = fdb.indexes.find_one({"content_key": content})
    if record and Path(record["path"]).is_dir():
        return load_index(record["path"]), vs, mean
    index = build_index(vectors - mean, vs.owner_ids, model_version=model_version, layer=layer, backend=backend)
    path = save_index(index, Path(index_root), f"{model_version}-{layer}".replace("/", "_"))
    fdb.indexes.update_one({"_id": index.spec.version},
                           {"$set": {**index.spec.as_dict(), "content_key": content, "path": str(path),
                                     "centred_on_pool_mean": True, "created_at": utcnow()}}, upsert=True)
    return index, vs, mean


def mine(fdb: FeatureDB, model_version: str, queries: list[Query], k: int = 20, budget: int = 200,
         index_root: str | Path = "indexes", backend: str = "auto", duplicate_distance: float = 1e-4,
         params: dict | None = None) -> Selection:
    """Select up to `budget` pool images nearest to the queries, and record the selection in fdb."""
    pool = eligible_pool(fdb, model_version)
    uri_of = {d["_id"]: d["uri"] for d in pool}
    sha_of = {d["_id"]: d.get("sha256") for d in pool}
    pool_ids = list(uri_of)
    hits: dict[ObjectId, dict] = {}
    neighbours: dict[str, list] = {}
    index_versions = {}
    means: dict[str, np.ndarray] = {}
    for level, layer in (("detection", BOX_LAYER), ("image", IMAGE_LAYER)):
        level_queries = [q for q in queries if q.level == level]
        if not level_queries or not pool_ids:
            continue
        index, vs, mean = _build_pool_index(fdb, model_version, layer, pool_ids, index_root, backend)
        if index is None:
            continue
        means[layer] = mean
        index_versions[layer] = index.spec.version
        image_of = dict(zip(map(_id_bytes, vs.owner_ids), to_object_ids(vs.image_ids)))
        query_vectors = np.stack([q.vector for q in level_queries])
        if query_vectors.shape[1] == len(mean):  # a wrong dimension is left for check_query to name
            query_vectors = query_vectors - mean
        index.check_query(query_vectors, model_version)  # refuses another dimension or model, naming both
        found_ids, distances = index.query(query_vectors, k=k)
        for q, row_ids, row_d in zip(level_queries, found_ids, distances):
            row = []
            for owner, dist in zip(row_ids, row_d):
                if not np.isfinite(dist):
                    continue
                image_id = image_of[_id_bytes(owner)]
                row.append((to_object_ids([owner])[0], image_id, float(dist)))
                h = hits.setdefault(image_id, {"queries": {}, "best_distance": np.inf})
                # A query counts once per image, at its nearest neighbour there.
                previous = h["queries"].get(q.error_id)
                if previous is None or dist < previous["distance"]:
                    h["queries"][q.error_id] = {"error_id": q.error_id, "type": q.type, "category": q.category_name,
                                                "source_image_id": q.source_image_id, "level": level,
                                                "distance": float(dist)}
                h["best_distance"] = min(h["best_distance"], float(dist))
            neighbours[str(q.error_id)] = row

    ranked = sorted(hits.items(), key=lambda kv: (-len(kv[1]["queries"]), kv[1]["best_distance"], str(kv[0])))
    chosen, seen_content = [], set()
    image_vectors = _vectors_by_owner(fdb, model_version, IMAGE_LAYER, {"owner_id": {"$in": [i for i, _ in ranked]}}) \
        if ranked else {}
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
    selection_id = "sel-" + _key(model_version, params, sorted(str(q.error_id) for q in queries), index_versions,
                                 sorted(map(str, pool_ids)))
    images = []
    for rank, (image_id, h) in enumerate(chosen):
        qs = sorted(h["queries"].values(), key=lambda q: q["distance"])
        types = sorted({q["type"] for q in qs})
        classes = sorted({q["category"] for q in qs})
        images.append({"image_id": image_id, "uri": uri_of[image_id], "rank": rank, "hits": len(qs),
                       "best_distance": h["best_distance"], "queries": qs[:20],
                       "reason": f"nearest pool image to {len(qs)} error queries ({', '.join(types)}; "
                                 f"classes {', '.join(classes)}), best distance {h['best_distance']:.4f}"})
    selection = Selection(selection_id, "mined", model_version, images, params, index_versions, neighbours)
    record_selection(fdb, selection)
    return selection


def _id_bytes(item) -> bytes:
    return bytes(item).ljust(12, b"\0")  # numpy drops an S12 item's trailing NUL bytes


def _min_cosine_distance(vec: np.ndarray, others: list[np.ndarray]) -> float:
    m = np.stack(others)
    sims = m @ vec / (np.linalg.norm(m, axis=1) * np.linalg.norm(vec) + 1e-12)
    return float(1 - sims.max())


def random_selection(fdb: FeatureDB, model_version: str, budget: int, seed: int = 0,
                     params: dict | None = None) -> Selection:
    """The baseline arm: `budget` images drawn uniformly from the same eligible pool."""
    pool = eligible_pool(fdb, model_version)
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(pool), size=min(budget, len(pool)), replace=False).tolist()) if pool else []
    params = {"budget": budget, "seed": seed, **(params or {})}
    selection_id = "rnd-" + _key(model_version, params, sorted(str(d["_id"]) for d in pool))
    images = [{"image_id": pool[i]["_id"], "uri": pool[i]["uri"], "rank": r, "hits": 0, "best_distance": None,
               "queries": [], "reason": f"random draw (seed {seed}) from {len(pool)} eligible pool images"}
              for r, i in enumerate(picked)]
    selection = Selection(selection_id, "random", model_version, images, params)
    record_selection(fdb, selection)
    return selection


def record_selection(fdb: FeatureDB, selection: Selection) -> None:
    """One document per selected image; writing the same selection again adds nothing."""
    now = utcnow()
    docs = [{"selection_id": selection.selection_id, "arm": selection.arm, "model_version": selection.model_version,
             "index_versions": selection.index_versions, "params": selection.params, "export_id": None,
             "created_at": now, **{k: v for k, v in img.items()}} for img in selection.images]
    bulk_insert(fdb.selections, docs)


# ---------------------------------------------------------------------------------------------------- the job
def last_labelled_set(fdb: FeatureDB) -> tuple[str, str] | None:
    """(COCO json, image folder) of the labelled set the last mining run used, so later runs can omit it."""
    run = fdb.runs.find_one({"kind": "mine_hard_cases", "parameters.gt_json": {"$exists": True}},
                            sort=[("started_at", -1), ("_id", -1)])
    return (run["parameters"]["gt_json"], run["parameters"]["gt_images"]) if run else None


@dataclass
class MiningResult:
    errors: ErrorReport
    queries: list[Query]
    selection: Selection
    random: Selection | None
    montage: Path | None
    run_id: ObjectId


def mine_hard_cases(fdb: FeatureDB, checkpoint, ground_truth, k: int = 20, budget: int = 200,
                    params: MatchParams = MatchParams(), types=None, classes=None, level: str = "detection",
                    backend: str = "auto", random_arm: bool = True, seed: int = 0, out_dir: str | Path = ".",
                    progress: bool = True) -> MiningResult:
    """The manual "mine hard cases" job: detect on the labelled set (incrementally), type the errors, query the
    pool with them, record the selection (and a random arm of the same budget), and draw the montage."""
    from detectors.inference import detect_images  # noqa: PLC0415 - the model side, only for this job

    version = checkpoint.version
    run_params = {"k": k, "budget": budget, "match": params.as_dict(), "types": types, "classes": classes,
                  "level": level, "backend": backend, "random_arm": random_arm, "seed": seed,
                  "gt_json": str(Path(ground_truth.path).resolve()), "gt_images": str(ground_truth.image_dir)}
    run_id = fdb.start_run("mine_hard_cases", run_params, model_version=version)
    uris = [str(ground_truth.image_path(i).resolve()) for i in ground_truth.images]
    detect_images(fdb, checkpoint, uris, split="val", labelled=True, progress=progress)
    # Images with ground truth are labelled, whatever an earlier ingest called them: never mine them.
    fdb.images.update_many({"uri": {"$in": uris}}, {"$set": {"split": "val", "labelled": True}})
    errors = find_errors(fdb, version, ground_truth, params)
    queries = build_queries(fdb, version, errors.errors, types=types, classes=classes, level=level)
    out_dir = Path(out_dir)
    selection = mine(fdb, version, queries, k=k, budget=budget, index_root=out_dir / "indexes", backend=backend,
                     params={"match": params.as_dict(), "types": types, "classes": classes, "level": level})
    baseline = random_selection(fdb, version, budget, seed=seed) if random_arm else None
    montage = query_montage(fdb, queries, selection.neighbours,
                            out_dir / "selections" / selection.selection_id / "montage.png")
    counts = {kind: sum(by_class.values()) for kind, by_class in errors.counts.items()}
    fdb.finish_run(run_id, metrics={"errors": counts, "queries": len(queries), "selected": len(selection),
                                    "selection_id": selection.selection_id,
                                    "random_selection_id": baseline.selection_id if baseline else None})
    return MiningResult(errors, queries, selection, baseline, montage, run_id)


# ---------------------------------------------------------------------------------------------------- scheduled runs
def pool_state(fdb: FeatureDB, model_version: str, gt_json: str | Path, params: dict) -> str:
    """A key for everything a scheduled mining run depends on: the model, the labelled set's bytes, the
    parameters, the pool images this model has processed and which of them have labels back. A run whose key is
    already recorded has nothing new to mine: exporting its selection removed those images from the pool, so
    mining again would queue a second batch for the same night."""
    pool = sorted(map(str, fdb.images.distinct("_id", {"split": "pool", "processed_by": model_version})))
    # Labels that came back from the team (the labelled set itself is covered by its file's bytes).
    labelled = sorted(map(str, fdb.images.distinct("_id", {"label_version": {"$exists": True}})))
    gt_sha = hashlib.sha256(Path(gt_json).read_bytes()).hexdigest()
    return "state-" + _key(model_version, gt_sha, params, pool, labelled)


def finished_scheduled_run(fdb: FeatureDB, state: str) -> dict | None:
    """What the scheduled run with this state key produced, if it ran to the end."""
    return fdb.db["scheduled_runs"].find_one({"_id": state, "status": "done"})


def record_scheduled_run(fdb: FeatureDB, state: str, result: dict) -> None:
    """Mark a scheduled run done (last, after its export), so a crash before this point is simply re-run."""
    fdb.db["scheduled_runs"].update_one({"_id": state}, {"$set": {"status": "done", "result": result,
                                                                  "finished_at": utcnow()}}, upsert=True)
