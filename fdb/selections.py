"""The `selections` collection: one document per selected image, with its provenance."""

from __future__ import annotations

from bson import ObjectId

from fdb.store import FeatureDB, bulk_insert, durable, utcnow
from records import QueryHit, SelectedImage, SelectionInfo


def record_selection(fdb: FeatureDB, info: SelectionInfo, images: list[SelectedImage]) -> None:
    """One document per selected image; writing the same selection again adds nothing."""
    now = utcnow()
    docs = [{"selection_id": info.selection_id, "arm": info.arm, "model_version": info.model_version,
             "index_versions": info.index_versions, "params": info.params, "export_id": None, "created_at": now,
             "image_id": img.image_id, "uri": img.uri, "rank": img.rank, "hits": img.hits,
             "best_distance": img.best_distance, "reason": img.reason,
             "queries": [{"error_id": q.error_id, "type": q.type, "category": q.category,
                          "source_image_id": q.source_image_id, "level": q.level, "distance": q.distance}
                         for q in img.queries]}
            for img in images]
    bulk_insert(fdb.selections, docs)


def read_selection(fdb: FeatureDB, selection_id: str) -> tuple[SelectionInfo, list[SelectedImage]] | None:
    """The selection and its images in rank order, or None when there is no such selection."""
    docs = list(fdb.selections.find({"selection_id": selection_id}).sort([("rank", 1), ("uri", 1)]))
    if not docs:
        return None
    first = docs[0]
    info = SelectionInfo(selection_id, first.get("arm") or "mined", first.get("model_version"),
                         first.get("params") or {}, first.get("index_versions") or {}, first.get("export_id"))
    images = [SelectedImage(d["image_id"], d["uri"], d.get("rank", 0), d.get("reason") or "", d.get("hits", 0),
                            d.get("best_distance"),
                            [QueryHit(q.get("error_id"), q.get("type"), q.get("category"), q.get("source_image_id"),
                                      q.get("level"), q.get("distance")) for q in d.get("queries") or []])
              for d in docs]
    return info, images


def mark_exported(fdb: FeatureDB, selection_id: str, batch_id: str) -> None:
    """The selection's images went to the annotation team as `batch_id`: they leave the eligible pool."""
    durable(fdb.selections).update_many({"selection_id": selection_id}, {"$set": {"export_id": batch_id}})


def exported_image_ids(fdb: FeatureDB) -> list[ObjectId]:
    return fdb.selections.distinct("image_id", {"export_id": {"$ne": None}})


def exported_among(fdb: FeatureDB, image_ids: list[ObjectId]) -> list[ObjectId]:
    """Those of `image_ids` already exported: `exported_image_ids` asked about a few images only."""
    return fdb.selections.distinct("image_id", {"image_id": {"$in": image_ids}, "export_id": {"$ne": None}})


def exported_count(fdb: FeatureDB) -> int:
    """Selection records that were exported: grows with every export, never shrinks."""
    return fdb.selections.count_documents({"export_id": {"$ne": None}})
