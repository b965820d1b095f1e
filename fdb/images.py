"""The `images` collection: ingest, quarantine, which model processed what, which images may be mined.

Every image gets one record; an unreadable one is quarantined with its reason, never dropped.

Only new uris are read and hashed, so the cost of an ingest grows with new images, not with the archive.
A quarantined image is looked at again on the next ingest, so a file that was repaired comes back on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from bson import ObjectId
from pymongo import ASCENDING, UpdateOne

from fdb import labels as label_store
from fdb.catalogue import RANDOM_KEY_INDEX
from fdb.image_files import DecodedImage, read_image
from fdb.selections import decision_count, exported_count, taken_among, taken_image_ids
from fdb.store import FeatureDB
from fdb.vectors import iter_id_batches
from fdb.writes import WriteReport, bulk_insert, durable, utcnow
from records.hashing import part_digest


INGEST_CHUNK = 64  # images read and checked before their records are written


def random_key(content: str) -> float:
    """An image's place in the random arm's order, in [0, 1): a hash of its content hash (`sha256`) read as a
    fraction, so uniform, fixed for the image (the same bytes draw alike on any machine, under any path) and
    indexed, so a draw reads only the images it takes (`random_draw`)."""
    return int.from_bytes(part_digest(content, size=7), "big") / 256 ** 7


@dataclass
class IngestReport:
    new: int = 0
    existing: int = 0
    recovered: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (uri, reason)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (uri, the uri with the same bytes)
    write: WriteReport = field(default_factory=WriteReport)

    def __str__(self) -> str:
        s = f"{self.new} new images, {self.existing} already known, {len(self.quarantined)} quarantined"
        if self.duplicates:
            s += f", {len(self.duplicates)} duplicates of known images"
        if self.recovered:
            s += f", {self.recovered} recovered from quarantine"
        return s


def ingest_images(fdb: FeatureDB, uris: Iterable[str], source: str = "local", split: str = "pool",
                  labelled: bool = False, extra: dict | None = None) -> IngestReport:
    """Register images in fdb. Known uris are skipped without being read (a quarantined one is read again).

    An image that cannot be read or decoded is quarantined with its reason. A pool image with the same bytes
    as a known image is recorded as a `duplicate` (`duplicate_of`: that uri) and never detected or mined: the team would
    label the same picture twice, and a pool copy of a labelled image must never go out for labelling. A local
    file that cannot be read is the file's problem (quarantined); an S3 read that still fails after its retries
    is the network's (raised, so the task is retried), unless the object is gone."""
    uris = list(dict.fromkeys(str(u) for u in uris))
    report = IngestReport()
    known = {d["uri"]: d for part in _parts(uris)
             for d in fdb.images.find({"uri": {"$in": part}}, {"uri": 1, "status": 1})}
    todo = [uri for uri in uris if not settled(known.get(uri))]
    report.existing += len(uris) - len(todo)
    seen: dict[str, str] = {}
    for start in range(0, len(todo), INGEST_CHUNK):  # records written as it goes, not at the end of a night
        register_images(fdb, [(uri, read_image(uri, pixels=False)) for uri in todo[start:start + INGEST_CHUNK]],
                        known, report, seen, source=source, split=split, labelled=labelled, extra=extra)
    return report


def settled(record: dict | None) -> bool:
    """Whether an image record is final for ingest: readable, or a duplicate (a quarantined one is read again)."""
    return record is not None and record["status"] in ("ok", "duplicate")


def register_images(fdb: FeatureDB, read: Sequence[tuple[str, DecodedImage | str]], known: dict[str, dict],
                    report: IngestReport, seen: dict[str, str], source: str = "local", split: str = "pool",
                    labelled: bool = False, extra: dict | None = None) -> None:
    """Record images that were read (`read_image`: the image, or why it cannot be read) and are not `settled`
    in `known` (uri -> record): new ones inserted, quarantined ones updated in place. `seen` (sha256 -> uri)
    carries this ingest's new images from one call to the next, so a copy later in the same night is a duplicate."""
    docs = []
    checks_copies = split == "pool" and not labelled  # only an unlabelled pool image can be a duplicate
    # One query for the whole batch (not one per image): which of these hashes a readable known image holds.
    holders = _holders_of(fdb, [image.info.sha256 for _, image in read if isinstance(image, DecodedImage)]) \
        if checks_copies else {}
    for uri, image in read:
        previous = known.get(uri)
        if isinstance(image, DecodedImage):
            info = image.info
            fields = {"sha256": info.sha256, "width": info.width, "height": info.height, "status": "ok",
                      "reason": None, "random_key": random_key(info.sha256)}
        else:
            fields = {"sha256": None, "width": None, "height": None, "status": "quarantined", "reason": image}
            report.quarantined.append((uri, image))
        if fields["status"] == "ok" and checks_copies:
            original = _same_bytes(holders, fields["sha256"], uri, seen)
            if original is not None:
                fields.update(status="duplicate", reason=f"same bytes as {original['uri']}",
                              duplicate_of=original["uri"])
                report.duplicates.append((uri, original["uri"]))
            else:
                seen[fields["sha256"]] = uri
        if previous:  # a quarantined image seen again: update it in place
            fdb.images.update_one({"_id": previous["_id"]}, {"$set": {**fields, "checked_at": utcnow()}})
            if fields["status"] == "ok":
                report.recovered += 1
            continue
        docs.append({"uri": uri, **fields, "source": source, "split": split, "labelled": labelled,
                     "ingested_at": utcnow(), "processed_by": [], **(extra or {})})
    written = bulk_insert(fdb.images, docs)
    report.write += written
    report.new += written.inserted
    report.existing += written.existing


def _holders_of(fdb: FeatureDB, hashes: list[str]) -> dict[str, list[dict]]:
    """sha256 -> the readable known images with those bytes ({`_id`, `uri`}), oldest first."""
    holders: dict[str, list[dict]] = {}
    if hashes:
        for d in fdb.images.find({"sha256": {"$in": list(set(hashes))}, "status": "ok"}, {"uri": 1, "sha256": 1},
                                 sort=[("_id", ASCENDING)]):
            holders.setdefault(d["sha256"], []).append(d)
    return holders


def _same_bytes(holders: dict[str, list[dict]], sha256: str, uri: str, seen: dict[str, str]) -> dict | None:
    """A readable image already known (`holders`, from `_holders_of`) or new in this ingest (`seen`) with these
    bytes under another uri: the oldest."""
    if sha256 in seen:
        return {"uri": seen[sha256]}
    return next((d for d in holders.get(sha256, ()) if d["uri"] != uri), None)


# ---------------------------------------------------------------------------------------------------- reads
def _parts(values: list, size: int = 20_000) -> list[list]:
    """A long list of uris (or ids) in parts: one query's `$in` must fit a 16 MB command (a full listing of a
    million-image root is about 60 MB of uris)."""
    return [values[i:i + size] for i in range(0, len(values), size)] or [[]]


def by_uri(fdb: FeatureDB, uris: Iterable[str]) -> dict[str, dict]:
    """uri -> its image record (`_id`, `uri`, `width`, `height`, `status`, `split`, `labelled`, ...)."""
    return {d["uri"]: d for part in _parts(list(uris)) for d in fdb.images.find({"uri": {"$in": part}})}


def by_id(fdb: FeatureDB, image_ids: Iterable[ObjectId]) -> dict[ObjectId, dict]:
    return {d["_id"]: d for d in fdb.images.find({"_id": {"$in": list(image_ids)}})}


def processed_uris(fdb: FeatureDB, uris: Sequence[str], model_version: str) -> set[str]:
    """Those of `uris` whose detections and features from `model_version` are complete."""
    return {d["uri"] for part in _parts(list(uris))
            for d in fdb.images.find({"uri": {"$in": part}, "processed_by": model_version}, {"uri": 1, "_id": 0})}


def backlog(fdb: FeatureDB, model_version: str) -> list[str]:
    """The readable images (any split) that `model_version` has not processed: what a new model must detect before
    it can serve (a rollout), in the order they were ingested."""
    query = {"status": "ok", "processed_by": {"$ne": model_version}}
    return [d["uri"] for d in fdb.images.find(query, {"uri": 1}).sort("_id", ASCENDING)]


def _eligible_filter(model_version: str) -> dict:
    # Field order matches the index processed_split_labelled_status, which answers it alone.
    return {"processed_by": model_version, "split": "pool", "labelled": False, "status": "ok"}


def _not_eligible_filter(model_version: str) -> dict:
    # The processed pool images `_eligible_filter` leaves out, exactly (a missing field counts as not False, not
    # "ok", as there): labelled ones and unlabelled ones not "ok". Two short ranges of the same index.
    return {"processed_by": model_version, "split": "pool",
            "$or": [{"labelled": {"$ne": False}}, {"labelled": False, "status": {"$ne": "ok"}}]}


def _sorted_ids(fdb: FeatureDB, query: dict) -> np.ndarray:
    """The `_id`s of the images matching `query`, sorted, as 12-byte ids (S12). Read as raw batches and sliced by
    numpy, and sorted here rather than by the server: a million ids cost about a second, where decoding each
    document in Python costs several, and a `distinct` reply of them would pass MongoDB's 16 MB limit."""
    parts = list(iter_id_batches(fdb.images, query))
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, "S12")


def pool_image_ids(fdb: FeatureDB, model_version: str) -> np.ndarray:
    """Every pool image `model_version` has processed, exported or not, as sorted 12-byte ids (S12): what the pool
    index holds (fdb.pool_index)."""
    return _sorted_ids(fdb, {"processed_by": model_version, "split": "pool"})


def pool_images_among(fdb: FeatureDB, image_ids: np.ndarray) -> np.ndarray:
    """Those of `image_ids` (S12) that are pool images, as S12."""
    ids = [ObjectId(bytes(i).ljust(12, b"\0")) for i in image_ids]
    found = [d["_id"].binary for part in _parts(ids, 100_000)
             for d in fdb.images.find({"_id": {"$in": part}, "split": "pool"}, {"_id": 1})]
    return np.array(found, dtype="S12")


def eligible_pool_ids(fdb: FeatureDB, model_version: str) -> np.ndarray:
    """Pool images that may be selected (unlabelled, readable, processed by this model, not yet exported), as
    sorted 12-byte ids (S12), without reading their records: the random arm draws from these and then reads only
    the images it drew."""
    ids = _sorted_ids(fdb, _eligible_filter(model_version))
    taken = taken_image_ids(fdb)
    if taken:
        ids = ids[~np.isin(ids, np.array([i.binary for i in taken], dtype="S12"))]
    return ids


def random_draw(fdb: FeatureDB, model_version: str, budget: int, seed: int = 0,
                exclude: Iterable[ObjectId] = (), processed_pool: int | None = None) -> tuple[list[dict], int]:
    """Up to `budget` eligible pool images (as `eligible_pool_ids`) drawn uniformly: the first `budget` in
    `random_key` order from a start the seed draws, wrapping round; as {`_id`, `uri`} records in draw order, and
    how many images were eligible. Two range scans of the index `processed_split_labelled_status_key` read the
    drawn images and the few taken ones among them, not the pool. `processed_pool`, this model's processed pool
    images as `pool_generation` counted them, spares counting the eligible ones among them (half a second at a
    million): they are those less the few labelled or unreadable ones."""
    _backfill_random_keys(fdb, model_version)
    eligible = _eligible_filter(model_version)
    taken = set(taken_image_ids(fdb)) | set(exclude)
    start = float(np.random.default_rng(seed).random())
    drawn: list[dict] = []
    for part in ({"$gte": start}, {"$lt": start}):
        if len(drawn) >= budget:
            break
        cursor = (fdb.images.find({**eligible, "random_key": part}, {"uri": 1})
                  .sort("random_key", ASCENDING).hint(RANDOM_KEY_INDEX))
        for doc in cursor:
            if doc["_id"] not in taken:
                drawn.append(doc)
                if len(drawn) >= budget:
                    break
        cursor.close()
    if processed_pool is None:
        count = fdb.images.count_documents(eligible, hint=RANDOM_KEY_INDEX)
    else:
        count = processed_pool - fdb.images.count_documents(_not_eligible_filter(model_version))
    if taken:
        count -= fdb.images.count_documents({**eligible, "_id": {"$in": list(taken)}})
    return drawn, count


def _backfill_random_keys(fdb: FeatureDB, model_version: str) -> int:
    """Give a key to eligible images recorded before keys existed (a database from an earlier version): once."""
    missing = list(fdb.images.find({**_eligible_filter(model_version), "random_key": None}, {"sha256": 1, "uri": 1}))
    if missing:
        fdb.images.bulk_write([UpdateOne({"_id": d["_id"]}, {"$set": {
            "random_key": random_key(d.get("sha256") or d.get("uri") or str(d["_id"]))}}) for d in missing],
            ordered=False)
    return len(missing)


def eligible_among(fdb: FeatureDB, model_version: str, image_ids: Iterable[ObjectId]) -> dict[ObjectId, dict]:
    """Those of `image_ids` that may be selected (as `eligible_pool_ids`), id -> {`uri`, `sha256`}: the question a
    query's neighbours ask, at a cost that follows the neighbours, not the pool."""
    image_ids = list(set(image_ids))
    found = {d["_id"]: d for d in fdb.images.find({**_eligible_filter(model_version), "_id": {"$in": image_ids}},
                                                  {"uri": 1, "sha256": 1})}
    for taken in taken_among(fdb, list(found)):
        found.pop(taken, None)
    return found


def labelled_ids(fdb: FeatureDB, model_version: str) -> list[ObjectId]:
    """Images with labels that `model_version` has processed (the labelled split, and pool images whose labels came
    back): what a core-set starts from."""
    return [d["_id"] for d in fdb.images.find({"processed_by": model_version, "labelled": True}, {"_id": 1})]


def pool_generation(fdb: FeatureDB, model_version: str) -> dict[str, int]:
    """Counts that change whenever what may be mined does: pool images this model processed, images with labels
    back, images exported, decisions people made on selections. Each only grows (a processed mark, a label, an
    export or a recorded decision is never taken back), so equal counts mean an unchanged pool, and the counts come
    from indexes whatever the archive's size."""
    generation = {"processed_pool": fdb.images.count_documents({"processed_by": model_version, "split": "pool"}),
                  "labels_back": label_store.count(fdb), "exported": exported_count(fdb)}
    decided = decision_count(fdb)
    if decided:  # only when people curated: keys of engines that never did stay as they were
        generation["decisions"] = decided
    return generation


# ---------------------------------------------------------------------------------------------------- writes
def mark_processed(fdb: FeatureDB, image_ids: Sequence[ObjectId], model_version: str) -> int:
    """Record that the images' detections and features from this model are complete (the incremental key): a
    commit point, durable with everything written before it. Returns how many of the images it found."""
    return durable(fdb.images).update_many({"_id": {"$in": list(image_ids)}},
                                           {"$addToSet": {"processed_by": model_version}}).matched_count


def restore_records(fdb: FeatureDB, records: Sequence[dict]) -> int:
    """Insert again, durably, those of `records` (as read back after their insert) that the store no longer holds:
    a server killed after acknowledging them, before its journal held them, lost them. Returns how many."""
    present = {d["_id"] for d in fdb.images.find({"_id": {"$in": [r["_id"] for r in records]}}, {"_id": 1})}
    missing = [r for r in records if r["_id"] not in present]
    return bulk_insert(durable(fdb.images), missing).inserted


def quarantine(fdb: FeatureDB, image_id: ObjectId, reason: str) -> None:
    """An image that could be ingested but not decoded for detection: out of every later step, with its reason."""
    fdb.images.update_one({"_id": image_id}, {"$set": {"status": "quarantined", "reason": reason,
                                                       "checked_at": utcnow()}})


def mark_labelled(fdb: FeatureDB, uris: Sequence[str], split: str = "val") -> None:
    """Images with ground truth are labelled, whatever an earlier ingest called them: never mine them."""
    fdb.images.update_many({"uri": {"$in": list(uris)}}, {"$set": {"split": split, "labelled": True}})


def mark_label_version(fdb: FeatureDB, image_ids: Sequence[ObjectId], label_version: int, session=None) -> None:
    """Labels came back for these images: they are labelled, at this version."""
    fdb.images.update_many({"_id": {"$in": list(image_ids)}},
                           {"$set": {"labelled": True, "label_version": label_version}}, session=session)


def models_done(record: dict) -> list[str]:
    """The model versions whose detections and features of this image (its record) are complete."""
    return list(record.get("processed_by") or [])
