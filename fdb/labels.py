"""The `labels` collection: ground truth that came back from the annotation team, one version per import.

An import never overwrites: it adds the next label version of its batch, so earlier versions stay readable. A
version exists once its batch's export record names it (`exports.mark_labelled`, the commit point): an import
killed before that left nothing anyone reads, and the next import writes the same version again over its remains.
On a replica set the whole import is also one transaction (`FeatureDB.transaction`)."""

from __future__ import annotations

from fdb import exports
from fdb.store import FeatureDB
from fdb.writes import stable_id, utcnow


def count(fdb: FeatureDB) -> int:
    """Label records that came back, of every batch and version: grows with every import, never shrinks."""
    return fdb.labels.count_documents({})


def latest_version(fdb: FeatureDB, batch_id: str) -> int | None:
    """The batch's newest committed label version (None: no labels back yet), as its export record names it."""
    return exports.label_version(fdb, batch_id)


def write_version(fdb: FeatureDB, batch_id: str, label_version: int, images: list[dict], source: str,
                  source_sha256: str, session=None) -> None:
    """Store one label version of a batch: `images` holds `image_id`, `file_name` and `annotations` each. What a
    killed import of the same (uncommitted) version left is replaced."""
    now = utcnow()
    docs = [{"_id": stable_id("label", batch_id, label_version, im["image_id"]), "image_id": im["image_id"],
             "batch_id": batch_id, "label_version": label_version, "file_name": im["file_name"],
             "annotations": im["annotations"], "source": source, "source_sha256": source_sha256, "created_at": now}
            for im in images]
    fdb.labels.delete_many({"batch_id": batch_id, "label_version": label_version}, session=session)
    if docs:
        fdb.labels.insert_many(docs, ordered=True, session=session)


def version_sha256(fdb: FeatureDB, batch_id: str, label_version: int) -> str | None:
    """The sha256 of what a label version was read from (a file, or what a pull read from a server)."""
    doc = fdb.labels.find_one({"batch_id": batch_id, "label_version": label_version}, {"source_sha256": 1})
    return doc.get("source_sha256") if doc else None


def read_version(fdb: FeatureDB, batch_id: str, label_version: int) -> list[dict]:
    """The labelled images of one version of a batch (`image_id`, `file_name`, `annotations`), by image id."""
    return list(fdb.labels.find({"batch_id": batch_id, "label_version": label_version}).sort("image_id", 1))



def images_of_batches(fdb: FeatureDB, batch_ids: list[str]) -> set:
    """The image ids any label version of these batches holds (what a model that trained on them has seen)."""
    return set(fdb.labels.distinct("image_id", {"batch_id": {"$in": list(batch_ids)}}))


def versions(fdb: FeatureDB, batch_id: str) -> list[dict]:
    """The batch's label versions: `label_version`, `images`, `annotations`, `source`, `created_at`."""
    rows = fdb.labels.aggregate([
        {"$match": {"batch_id": batch_id}},
        {"$group": {"_id": "$label_version", "images": {"$sum": 1},
                    "annotations": {"$sum": {"$size": {"$ifNull": ["$annotations", []]}}},
                    "source": {"$first": "$source"}, "created_at": {"$min": "$created_at"}}},
        {"$sort": {"_id": 1}}])
    committed = latest_version(fdb, batch_id) or 0
    return [{"label_version": r.pop("_id"), **r} for r in rows if r["_id"] <= committed]
