"""The `exports` collection: labelling batches, `in_progress` -> `done` -> `labelled`.

A batch is marked `done` only after its files are complete where the team reads them, so an interrupted export
stays visibly unfinished and is completed by the next attempt."""

from __future__ import annotations

from fdb.store import FeatureDB
from fdb.writes import durable, utcnow


def get(fdb: FeatureDB, batch_id: str) -> dict | None:
    """The batch record: `selection_id`, `model_version`, `min_score`, `target`, `status`, and once done `files`,
    `counts`, `categories`, `category_map` (project id -> export id, as strings) and `images` (image_id, uri,
    file_name, width, height)."""
    return fdb.exports.find_one({"_id": batch_id})


def is_review(fdb: FeatureDB, batch_id: str) -> bool:
    """Whether `batch_id` is a review batch (labelled images sent back for correction), not a selection to label."""
    return fdb.exports.count_documents({"_id": batch_id, "kind": "review"}, limit=1) > 0


def start(fdb: FeatureDB, batch_id: str, selection_id: str | None, model_version: str, min_score: float | None,
          location: str, kind: str = "selection", extra: dict | None = None) -> None:
    """`kind`: "selection" (mined or random images to label) or "review" (labelled images whose labels are
    suspected, to correct; `extra` names the labelled set and its version)."""
    fdb.exports.update_one(
        {"_id": batch_id},
        {"$set": {"selection_id": selection_id, "model_version": model_version, "min_score": min_score,
                  "target": location, "status": "in_progress", "started_at": utcnow(), "kind": kind,
                  **(extra or {})},
         "$setOnInsert": {"created_at": utcnow()}, "$inc": {"attempts": 1}},
        upsert=True)


def finish(fdb: FeatureDB, batch_id: str, files: list[dict], counts: dict, categories: list[dict],
           category_map: dict[int, int], images: list[dict], extra: dict | None = None) -> None:
    """The batch is complete where the team reads it. `extra`: what else its target knows of it (an annotation
    server's `server`: kind, url, project and its id, the staged folder; never a credential)."""
    durable(fdb.exports).update_one(
        {"_id": batch_id},
        {"$set": {"status": "done", "finished_at": utcnow(), "files": files, "counts": counts,
                  "categories": categories, "category_map": {str(k): v for k, v in category_map.items()},
                  "images": images, **(extra or {})}})


def label_version(fdb: FeatureDB, batch_id: str, session=None) -> int | None:
    """The batch's newest committed label version (None: no labels back yet)."""
    export = fdb.exports.find_one({"_id": batch_id}, {"label_version": 1}, session=session)
    return export.get("label_version") if export else None


def mark_labelled(fdb: FeatureDB, batch_id: str, label_version: int, session=None) -> None:
    """The commit point of a labels import: from now on `label_version` is the batch's newest labels."""
    durable(fdb.exports).update_one({"_id": batch_id}, {"$set": {"status": "labelled", "labelled_at": utcnow(),
                                                                 "label_version": label_version}}, session=session)


def labelled_batches(fdb: FeatureDB) -> list[dict]:
    """Every batch of new images whose labels came back: `batch_id`, `selection_id`, `label_version` (the
    newest), in the order they came back. Review batches are not among them: their corrections become a new
    version of the labelled set they came from (`labelled_sets`)."""
    docs = fdb.exports.find({"status": "labelled", "kind": {"$ne": "review"}},
                            {"selection_id": 1, "label_version": 1, "labelled_at": 1})
    return [{"batch_id": d["_id"], "selection_id": d["selection_id"], "label_version": d.get("label_version")}
            for d in sorted(docs, key=lambda d: (d.get("labelled_at") or 0, d["_id"]))]


def list_batches(fdb: FeatureDB, limit: int = 200) -> list[dict]:
    """Every batch, newest first, without its per-image list (`n_images` instead)."""
    docs = fdb.exports.aggregate([{"$sort": {"created_at": -1, "_id": 1}}, {"$limit": limit},
                                  {"$addFields": {"n_images": {"$size": {"$ifNull": ["$images", []]}}}},
                                  {"$project": {"images": 0, "files": 0, "category_map": 0}}])
    return list(docs)
