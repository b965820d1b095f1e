"""What every collection module writes with: stable ids, timestamps, durable commit points, idempotent bulk
inserts (`bulk_insert`, reported as a `WriteReport`), and pages of what was written (`find_page`).

Bulk writes run with `ordered=False`: a duplicate by a unique index counts as already present, any other refusal
is reported with the record's position and the server's message, never hidden.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Sequence

from bson import ObjectId
from pymongo import WriteConcern
from pymongo.errors import BulkWriteError

from records.hashing import part_digest

DUPLICATE_KEY = 11000


def durable(collection):
    """`collection` for a commit point: the write returns only once it is journaled (and, on a replica set, on a
    majority). MongoDB journals in order, so every write acknowledged before it survives a kill of the server
    with it; the writes before a commit point can stay fast (w:1), and a crash loses nothing a commit point
    claimed (e.g. an image marked processed whose features were still in the journal buffer)."""
    return collection.with_options(write_concern=WriteConcern(w="majority", j=True))


def utcnow() -> dt.datetime:
    # MongoDB stores milliseconds; truncating here keeps what is written equal to what is read back.
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def stable_id(*parts: Any) -> ObjectId:
    """A deterministic ObjectId for a record identified by its parts, so a re-run writes the same `_id`."""
    return ObjectId(part_digest(*map(str, parts), size=12))


@dataclass
class WriteReport:
    """What a bulk write did. `rejected` holds (position in the input, reason) for every refused record."""

    inserted: int = 0
    existing: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def __iadd__(self, other: "WriteReport") -> "WriteReport":
        self.inserted += other.inserted
        self.existing += other.existing
        self.rejected += other.rejected
        return self

    def __str__(self) -> str:
        s = f"{self.inserted} new, {self.existing} already present, {len(self.rejected)} rejected"
        if self.rejected:
            s += "; first rejection: record %d: %s" % self.rejected[0]
        return s


def find_page(collection, query: dict, sort: list, skip: int, limit: int) -> tuple[list[dict], int]:
    """One page of the documents matching `query` in `sort` order, and how many match in all."""
    return list(collection.find(query).sort(sort).skip(skip).limit(limit)), collection.count_documents(query)


def bulk_insert(collection, docs: Sequence) -> WriteReport:
    """Insert with `ordered=False`: duplicates by a unique index count as already present, other errors as
    rejected with their position and message, and nothing stops the rest of the batch."""
    report = WriteReport()
    if not docs:
        return report
    try:
        collection.insert_many(docs, ordered=False)
        report.inserted = len(docs)
    except BulkWriteError as exc:
        details = exc.details
        report.inserted = details.get("nInserted", 0)
        for err in details.get("writeErrors", []):
            if err.get("code") == DUPLICATE_KEY:
                report.existing += 1
            else:
                report.rejected.append((err["index"], f"code {err.get('code')}: {err.get('errmsg')}"))
    return report
