"""The `labels` collection: ground truth that came back from the annotation team, one version per import.

An import never overwrites: it adds the next label version of its batch, so earlier versions stay readable."""

from __future__ import annotations

from pymongo import DESCENDING

from fdb.store import FeatureDB, stable_id, utcnow


def latest_version(fdb: FeatureDB, batch_id: str) -> int | None:
    last = fdb.labels.find_one({"batch_id": batch_id}, sort=[("label_version", DESCENDING)])
    return last["label_version"] if last else None


def write_version(fdb: FeatureDB, batch_id: str, label_version: int, images: list[dict], source: str,
                  source_sha256: str) -> None:
    """Store one label version of a batch: `images` holds `image_id`, `file_name` and `annotations` each."""
    now = utcnow()
    docs = [{"_id": stable_id("label", batch_id, label_version, im["image_id"]), "image_id": im["image_id"],
             "batch_id": batch_id, "label_version": label_version, "file_name": im["file_name"],
             "annotations": im["annotations"], "source": source, "source_sha256": source_sha256, "created_at": now}
            for im in images]
    if docs:
        fdb.labels.insert_many(docs, ordered=True)


def read_version(fdb: FeatureDB, batch_id: str, label_version: int) -> list[dict]:
    """The labelled images of one version of a batch (`image_id`, `file_name`, `annotations`), by image id."""
    return list(fdb.labels.find({"batch_id": batch_id, "label_version": label_version}).sort("image_id", 1))

