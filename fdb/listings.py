"""The `listings` collection: where each image root's last complete night left off, so the next night lists from
there (storage.list_images_since) instead of asking the database about every file the archive holds.

One record per (root, pattern, model version): `mark` is the newest change time (ns) seen under a local folder,
or the greatest key seen under an S3 prefix, by a listing whose images were then all detected. It is advanced only
after detection finished (`advance`), so a night that dies half-way is listed again from the old mark, and what it
already processed is skipped by the database check on the (small) listed set. A new model version has no mark:
its first night lists the whole root, since every image needs that model's features.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fdb.store import FeatureDB
from fdb.writes import utcnow

# A local mark is used less this much: a file created while the walk was passing its folder has a change time
# just before the newest one seen, yet was not listed. The overlap is re-listed and filtered by the database.
LOCAL_SLACK_NS = 10 * 60 * 10**9


@dataclass(frozen=True)
class NewImages:
    """A night's listing: the images not yet processed by the model (`uris`), what the walk saw (`listed`
    images, `scanned` entries) from `since` (None: everything), and the `mark` to `advance` its `key` to once
    they are all detected."""

    uris: list[str]
    listed: int
    scanned: int
    key: str
    since: int | str | None
    mark: int | str | None


def listing_key(root: str, pattern: str, model_version: str) -> str:
    return f"{root}|{pattern}|{model_version}"


def since(fdb: FeatureDB, key: str) -> int | str | None:
    """Where the next listing of `key` starts: None (everything) when no night finished yet."""
    doc = fdb.listings.find_one({"_id": key})
    if doc is None or doc.get("mark") is None:
        return None
    return doc["mark"] - LOCAL_SLACK_NS if doc["kind"] == "local" else doc["mark"]


def advance(fdb: FeatureDB, key: str, mark: int | str | None, listed: int, scanned: int) -> None:
    """Record that every image listed up to `mark` was processed; a mark never moves back."""
    if mark is None:
        return
    kind = "s3" if isinstance(mark, str) else "local"
    doc = fdb.listings.find_one({"_id": key})
    if doc is not None and doc.get("mark") is not None and doc["kind"] == kind and mark <= doc["mark"]:
        mark = doc["mark"]
    fdb.listings.update_one({"_id": key}, {"$set": {"mark": mark, "kind": kind, "listed": listed,
                                                    "scanned": scanned, "at": utcnow()}}, upsert=True)


def carry_marks(fdb: FeatureDB, from_version: str, to_version: str) -> int:
    """Give `to_version` the listing marks of `from_version` on every root it has none on: once a rollout has
    detected everything in the store with the new model, its first night need not walk the whole root again. Taken
    before the rollout's last pass over the store, so whatever a night ingests after it is either in that pass or
    listed again from the carried mark. Returns how many marks were carried."""
    carried = 0
    for doc in fdb.listings.find({"_id": {"$regex": f"\\|{re.escape(from_version)}$"}}):
        root_and_pattern = doc["_id"][: -len(from_version)]
        result = fdb.listings.update_one({"_id": root_and_pattern + to_version},
                                         {"$setOnInsert": {k: v for k, v in doc.items() if k != "_id"}}, upsert=True)
        carried += result.upserted_id is not None
    return carried
