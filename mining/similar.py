"""Query by example: the pool vectors nearest to one vector, as plain records a person can read.

The command line (`dataengine search`, which runs the model on an image first: `jobs.search`) and the review app's
"find similar" (which takes a vector the store already holds) both ask `nearest_in_pool`. It searches the same pool
index mining searches (`fdb.pool_index`, centred on the pool mean), but it is a lookup, not a selection: every pool
image the index holds is a candidate, exported, labelled or quarantined since or not, so an image that is in the
pool always finds itself. The only writes are the pool index's own upkeep (taking in the vectors written since it
was last asked, as mining does); no image, detection or feature record is written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from bson import ObjectId

from fdb import FeatureDB
from fdb import detections as detection_store
from fdb import images as image_store
from fdb.pool_index import update_pool_index
from fdb.vectors import to_object_ids
from mining.strategies.errors import owners_to_images
from records import BOX_LAYER, IMAGE_LAYER

SEARCHABLE_LAYERS = (BOX_LAYER, IMAGE_LAYER)


class NoPoolVectors(LookupError):
    """The model has no pool vector of that layer yet: the pool was not run through it."""


@dataclass(frozen=True)
class SimilarHit:
    """One pool vector near the query: a detection (box layer) or an image (image layer), nearest first."""

    rank: int
    owner_id: ObjectId  # the detection (box layer) or the image (image layer) the vector belongs to
    image_id: ObjectId
    uri: str | None
    distance: float  # the index's distance (cosine, on vectors centred on the pool mean)
    category: str | None = None  # a detection's class, score and box [x, y, w, h]; None for an image
    score: float | None = None
    bbox: list[float] | None = None


def nearest_in_pool(fdb: FeatureDB, model_version: str, vector: np.ndarray, layer: str, k: int,
                    index_root: str | Path, backend: str = "auto") -> list[SimilarHit]:
    """The `k` pool vectors of (model, layer) nearest to `vector`, nearest first: with `BOX_LAYER` pool
    detections (a ground-truth box's vector, `records.GT_BOX_LAYER`, lies in the same space), with `IMAGE_LAYER`
    pool images. Every pool image the index holds is searched (see the module's docstring). NoPoolVectors when the
    model has none of that layer; IndexShapeError when `vector` is not of the index's dimension."""
    if layer not in SEARCHABLE_LAYERS:
        raise ValueError(f"the pool is indexed by {' and '.join(SEARCHABLE_LAYERS)}, not {layer!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    pool = update_pool_index(fdb, model_version, layer, index_root, backend=backend)  # a lookup keeps it up to date
    if pool is None or len(pool.index) == 0:
        raise NoPoolVectors(f"model {model_version} has no pool vectors of layer {layer}: run the pool through it "
                            "first (`dataengine detect --images <pool folder> --model ...`)")
    query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    if query.shape[1] == len(pool.centre):  # a wrong dimension is left for the index to name
        query = query - pool.centre  # centred as the indexed vectors were
    found_ids, distances = pool.index.query(query, k=min(k, len(pool.index)), model_version=model_version)
    kept = (found_ids[0] != b"") & np.isfinite(distances[0])
    owners = to_object_ids(found_ids[0][kept])
    return _hits(fdb, model_version, layer, owners, [float(d) for d in distances[0][kept]])


def _hits(fdb: FeatureDB, model_version: str, layer: str, owners: list[ObjectId],
          distances: list[float]) -> list[SimilarHit]:
    """The found owners as hits: each with its image's uri, and a detection's class, score and box."""
    image_of = owners_to_images(fdb, model_version, layer, owners)
    detections = detection_store.detections_by_id(fdb, owners) if layer != IMAGE_LAYER else {}
    records = image_store.by_id(fdb, set(image_of.values()))
    hits = []
    for owner, distance in zip(owners, distances):
        image_id = image_of.get(owner)
        if image_id is None:
            continue  # the vector's record went since the index took it
        det = detections.get(owner)
        hits.append(SimilarHit(len(hits), owner, image_id, (records.get(image_id) or {}).get("uri"), distance,
                               det.category_name if det else None, det.score if det else None,
                               list(det.bbox) if det else None))
    return hits


def nearest_images(hits: list[SimilarHit]) -> list[SimilarHit]:
    """Each image's nearest hit, nearest first, ranked again: the images a box search reached, one line each."""
    first: dict = {}
    for hit in hits:
        first.setdefault(hit.image_id, hit)
    return [replace(hit, rank=rank) for rank, hit in enumerate(first.values())]
