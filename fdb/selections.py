"""The `selections` collection: one document per selected image, with its provenance and the decision a person
made on it before export; and the `queries` collection: one document per (selection, query), with the neighbours
the query found, so what a query retrieved and why can be looked at later.

A selection is curated before it ships: each image may be accepted or rejected (`decide`). The export ships the
images not rejected (or, when asked, only the accepted ones), and a rejected image leaves the pool mining draws
from, as an exported one does. Decisions are frozen once an export of the selection has started (`freeze`), so
what ships is what was decided.
"""

from __future__ import annotations

from bson import ObjectId
from pymongo import ReturnDocument

from fdb.store import FeatureDB
from fdb.writes import bulk_insert, durable, stable_id, utcnow
from records import QueryHit, SelectedImage, SelectionInfo

DECISIONS = ("accepted", "rejected")


class SelectionFrozen(RuntimeError):
    """The selection is being exported or was exported: its decisions can no longer change."""


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
    # Images left out of the batch (rejected, not accepted) are not marked exported: a shipped one says it.
    export_id = next((d["export_id"] for d in docs if d.get("export_id")), None)
    info = SelectionInfo(selection_id, first.get("arm") or "mined", first.get("model_version"),
                         first.get("params") or {}, first.get("index_versions") or {}, export_id)
    images = [SelectedImage(d["image_id"], d["uri"], d.get("rank", 0), d.get("reason") or "", d.get("hits", 0),
                            d.get("best_distance"),
                            [QueryHit(q.get("error_id"), q.get("type"), q.get("category"), q.get("source_image_id"),
                                      q.get("level"), q.get("distance")) for q in d.get("queries") or []])
              for d in docs]
    return info, images


def mark_exported(fdb: FeatureDB, selection_id: str, batch_id: str, image_ids: list[ObjectId]) -> None:
    """These images of the selection went to the annotation team as `batch_id`: they leave the eligible pool.
    The selection's images left out of the batch (rejected, or not accepted) are not marked."""
    durable(fdb.selections).update_many({"selection_id": selection_id, "image_id": {"$in": list(image_ids)}},
                                        {"$set": {"export_id": batch_id}})


# What mining may no longer select: images that went to the team, and images a person rejected.
_TAKEN = {"$or": [{"export_id": {"$ne": None}}, {"decision": "rejected"}]}


def taken_image_ids(fdb: FeatureDB) -> list[ObjectId]:
    """Images exported in some selection, or rejected by a person in one: out of the pool mining draws from."""
    return fdb.selections.distinct("image_id", _TAKEN)


def taken_among(fdb: FeatureDB, image_ids: list[ObjectId]) -> list[ObjectId]:
    """Those of `image_ids` exported or rejected: `taken_image_ids` asked about a few images only."""
    return fdb.selections.distinct("image_id", {"image_id": {"$in": image_ids}, **_TAKEN})


def exported_count(fdb: FeatureDB) -> int:
    """Selection records that were exported: grows with every export, never shrinks."""
    return fdb.selections.count_documents({"export_id": {"$ne": None}})


# ---------------------------------------------------------------------------------------------------- curation
def decision_count(fdb: FeatureDB) -> int:
    """Decisions people recorded, on every selection: grows with each new decision, never shrinks (a selection
    mined again after a rejection must not take the old one's id)."""
    rows = list(fdb.selections.aggregate([{"$match": {"decision": {"$exists": True}}},
                                          {"$group": {"_id": None, "n": {"$sum": {"$size": "$decisions"}}}}]))
    return rows[0]["n"] if rows else 0


def export_started(fdb: FeatureDB, selection_id: str):
    """When an export of the selection started (its decisions final from then on), or None."""
    doc = fdb.selections.find_one({"selection_id": selection_id, "exporting": {"$ne": None}}, {"exporting": 1})
    return doc["exporting"] if doc else None


def freeze(fdb: FeatureDB, selection_id: str) -> None:
    """An export of the selection starts: from now on its decisions stay as they are (`exporting`: since when)."""
    durable(fdb.selections).update_many({"selection_id": selection_id, "exporting": None},
                                        {"$set": {"exporting": utcnow()}})


DECIDE_ATTEMPTS = 5  # a decision that keeps losing races to other reviewers' answers with the one that stands


def decide(fdb: FeatureDB, selection_id: str, image_id: ObjectId, decision: str, by: str,
           note: str = "") -> dict:
    """Record that `by` accepted or rejected one image of a selection before export. Idempotent: the decision the
    image already has changes nothing and records nothing; a new one is recorded with who and when, and the
    earlier ones are kept in `decisions`. Raises LookupError (no such image in the selection), ValueError (not a
    decision) or SelectionFrozen (only when an export has really started). A race with another reviewer retries;
    returns the image's decision record and `changed`."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {list(DECISIONS)}, not {decision!r}")
    key = {"selection_id": selection_id, "image_id": image_id}
    for _ in range(DECIDE_ATTEMPTS):
        now = utcnow()
        doc = durable(fdb.selections).find_one_and_update(
            {**key, "exporting": None, "export_id": None, "decision": {"$ne": decision}},
            {"$set": {"decision": decision, "decided_by": by, "decided_at": now, "decision_note": note},
             "$push": {"decisions": {"decision": decision, "by": by, "at": now, "note": note}}},
            return_document=ReturnDocument.AFTER)
        if doc is not None:
            return {**decision_of(doc), "changed": True}
        # Nothing matched: the image is not in the selection, an export started, the image already has this
        # decision, or another reviewer changed it between the update and this read (then try again).
        doc = fdb.selections.find_one(key)
        if doc is None:
            raise LookupError(f"image {image_id} is not in selection {selection_id!r}")
        if doc.get("export_id") is not None or doc.get("exporting") is not None:
            state = f"exported as {doc['export_id']}" if doc.get("export_id") else "being exported"
            raise SelectionFrozen(f"selection {selection_id} is {state}: its decisions are final")
        if doc.get("decision") == decision:
            return {**decision_of(doc), "changed": False}
    # Still racing after every attempt: answer with the decision that stands now (recorded, with its history).
    return {**decision_of(doc), "changed": False}


def decision_of(doc: dict) -> dict:
    """The decision part of a selection document: `decision` (None: undecided), `by`, `at`, `note`, `history`."""
    return {"decision": doc.get("decision"), "by": doc.get("decided_by"), "at": doc.get("decided_at"),
            "note": doc.get("decision_note") or "", "history": doc.get("decisions") or []}


def decisions(fdb: FeatureDB, selection_id: str) -> dict[ObjectId, dict]:
    """image id -> its decision record, for the images of a selection someone decided on."""
    return {d["image_id"]: decision_of(d) for d in fdb.selections.find(
        {"selection_id": selection_id, "decision": {"$ne": None}},
        {"image_id": 1, "decision": 1, "decided_by": 1, "decided_at": 1, "decision_note": 1, "decisions": 1})}


def list_selections(fdb: FeatureDB, limit: int = 200) -> list[dict]:
    """Every selection, newest first: `selection_id`, `arm`, `model_version`, `created_at`, `images`, `accepted`,
    `rejected`, `export_id` (None until exported) and `exporting`."""
    rows = fdb.selections.aggregate([
        {"$group": {"_id": "$selection_id", "arm": {"$first": "$arm"}, "model_version": {"$first": "$model_version"},
                    "created_at": {"$min": "$created_at"}, "images": {"$sum": 1},
                    "accepted": {"$sum": {"$cond": [{"$eq": ["$decision", "accepted"]}, 1, 0]}},
                    "rejected": {"$sum": {"$cond": [{"$eq": ["$decision", "rejected"]}, 1, 0]}},
                    "export_id": {"$max": "$export_id"}, "exporting": {"$max": "$exporting"}}},
        {"$sort": {"created_at": -1, "_id": 1}}, {"$limit": limit}])
    return [{"selection_id": r.pop("_id"), **r} for r in rows]


def selections_of_image(fdb: FeatureDB, image_id: ObjectId) -> list[dict]:
    """The selections an image is in: `selection_id`, `arm`, `rank`, `reason`, `export_id`, `decision`."""
    return [{"selection_id": d["selection_id"], "arm": d.get("arm"), "rank": d.get("rank"),
             "reason": d.get("reason"), "export_id": d.get("export_id"), "decision": d.get("decision")}
            for d in fdb.selections.find({"image_id": image_id}).sort("created_at", -1)]


# ---------------------------------------------------------------------------------------------------- queries
def record_queries(fdb: FeatureDB, selection_id: str, queries: list[dict]) -> None:
    """One document per query of a selection: `error_id`, `type`, `category`, `level`, `layer`,
    `source_image_id`, `detection_id`, `bbox`, `index_version`, `model_version` and `neighbours` (rank,
    `owner_id`, `image_id`, `distance`: the eligible nearest neighbours, nearest first). Recording the same
    selection again adds nothing."""
    now = utcnow()
    docs = [{"_id": stable_id("query", selection_id, q["error_id"]), "selection_id": selection_id, **q,
             "created_at": now} for q in queries]
    bulk_insert(fdb.queries, docs)


def read_query(fdb: FeatureDB, error_id, selection_id: str | None = None) -> dict | None:
    """A query as a selection recorded it (that selection's, or the newest one's), with its neighbours."""
    spec: dict = {"error_id": error_id}
    if selection_id:
        spec["selection_id"] = selection_id
    return fdb.queries.find_one(spec, sort=[("created_at", -1), ("_id", 1)])


def queries_of(fdb: FeatureDB, selection_id: str) -> list[dict]:
    """The queries of a selection without their neighbour lists, with `found` (how many neighbours)."""
    docs = fdb.queries.aggregate([{"$match": {"selection_id": selection_id}},
                                  {"$addFields": {"found": {"$size": {"$ifNull": ["$neighbours", []]}}}},
                                  {"$project": {"neighbours": 0}}, {"$sort": {"type": 1, "_id": 1}}])
    return list(docs)


def selections_of_errors(fdb: FeatureDB, error_ids: list) -> dict:
    """error id -> the selections that searched with it (newest first)."""
    out: dict = {}
    for d in fdb.queries.find({"error_id": {"$in": list(error_ids)}}, {"error_id": 1, "selection_id": 1}
                              ).sort("created_at", -1):
        out.setdefault(d["error_id"], []).append(d["selection_id"])
    return out


def neighbours_in_image(fdb: FeatureDB, selection_id: str, image_id: ObjectId) -> list[dict]:
    """The neighbours a selection's queries found in one image: `owner_id` (a detection, or the image itself for
    an image-level query), `error_id`, `type`, `category`, `distance`, nearest first."""
    rows = fdb.queries.aggregate([
        {"$match": {"selection_id": selection_id, "neighbours.image_id": image_id}},
        {"$unwind": "$neighbours"}, {"$match": {"neighbours.image_id": image_id}},
        {"$project": {"_id": 0, "owner_id": "$neighbours.owner_id", "distance": "$neighbours.distance",
                      "error_id": 1, "type": 1, "category": 1, "level": 1}},
        {"$sort": {"distance": 1}}])
    return list(rows)
