"""What the "find similar" page shows, as plain data: a detection or an image, and the pool detections or images
nearest to it (`mining.similar.nearest_in_pool`).

The query's vector is the one the store already holds (the detection's box-head vector, the image's pooled vector,
written when the model processed it): the app runs no model. As `views`, the API returns exactly this and the page
is rendered from it.
"""

from __future__ import annotations

from pathlib import Path

from dataengine.ui.lookups import NotFound, detection_record, image_model, image_record, parse_id
from fdb import FeatureDB
from mining.similar import NoPoolVectors, nearest_in_pool
from records import BOX_LAYER, IMAGE_LAYER

LAYERS = {"box": BOX_LAYER, "image": IMAGE_LAYER}  # what a request names -> the pool index searched
DEFAULT_K = 12


def similar(fdb: FeatureDB, owner: str, layer: str, index_root: str | Path, model_version: str | None = None,
            k: int = DEFAULT_K) -> dict:
    """The `k` pool detections (`layer` "box": `owner` is a detection) or pool images ("image": `owner` is an
    image) nearest to `owner`'s stored vector, nearest first; the owner itself comes first when it is in the pool.
    A detection is searched with its own model's vectors; an image with `model_version`'s (default: production's
    when it processed the image, else the last model that did)."""
    if layer not in LAYERS:
        raise NotFound(f"no layer {layer!r}: box or image")
    oid = parse_id(owner, "detection" if layer == "box" else "image")
    if layer == "box":
        det = detection_record(fdb, owner)
        image, version = image_record(fdb, str(det.image_id)), model_version or det.model_version
        query = {"detection_id": det.id, "bbox": det.bbox, "category": det.category_name, "score": det.score}
    else:
        image, det = image_record(fdb, owner), None
        version = model_version or image_model(fdb, image)
        query = {"detection_id": None, "bbox": None, "category": None, "score": None}
    vector = fdb.vectors_by_owner(version, LAYERS[layer], [oid]).get(oid) if version else None
    if vector is None:
        raise NotFound(f"model {version} holds no {LAYERS[layer]} vector of {layer if det else 'image'} {owner}")
    try:
        hits = nearest_in_pool(fdb, version, vector, LAYERS[layer], k, index_root)
    except NoPoolVectors as exc:
        raise NotFound(str(exc)) from None
    return {"owner_id": oid, "layer": layer, "vector_layer": LAYERS[layer], "model_version": version, "k": k,
            "query": {"image_id": image["_id"], "uri": image.get("uri"), **query},
            "hits": [{"rank": h.rank, "distance": h.distance, "image_id": h.image_id, "uri": h.uri,
                      "detection_id": h.owner_id if layer == "box" else None, "bbox": h.bbox, "score": h.score,
                      "category": h.category, "is_query": h.owner_id == oid} for h in hits]}

