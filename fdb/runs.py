"""The `runs` and `scheduled_runs` collections: what each job was asked to do, and what a night produced.

A night (`scheduled_runs`, keyed by its state) goes `exporting` -> `done` when it ships by itself. A night held
for review goes `awaiting_review` (its selection recorded, nothing shipped) -> `exporting` (a person pressed
Export in the review app) -> `exported` (its one batch) or `rejected` (every image rejected: no batch). While a
night waits, no night mines (`waiting_night`): its images are still in the pool, so another selection would
overlap it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bson import ObjectId
from pymongo import ReturnDocument

from fdb.store import FeatureDB
from fdb.writes import durable, utcnow


def start_run(fdb: FeatureDB, kind: str, parameters: dict, model_version: str | None = None,
              flow_run_id: str | None = None) -> ObjectId:
    return fdb.runs.insert_one({"kind": kind, "parameters": parameters, "model_version": model_version,
                                "flow_run_id": flow_run_id, "status": "running", "started_at": utcnow(),
                                "metrics": {}}).inserted_id


def finish_run(fdb: FeatureDB, run_id: ObjectId, status: str = "completed", metrics: dict | None = None) -> None:
    fdb.runs.update_one({"_id": run_id}, {"$set": {"status": status, "finished_at": utcnow(),
                                                   "metrics": metrics or {}}})


def last_run_parameters(fdb: FeatureDB, kind: str, having: str) -> dict | None:
    """The parameters of the newest run of `kind` that had the parameter `having`."""
    run = fdb.runs.find_one({"kind": kind, f"parameters.{having}": {"$exists": True}},
                            sort=[("started_at", -1), ("_id", -1)])
    return run["parameters"] if run else None


def scheduled_run(fdb: FeatureDB, state: str) -> dict | None:
    """The night with this state key as far as it got: None (not mined yet), status `exporting` (its selection is
    recorded, the export may or may not have happened) or `done` (with its result); a held night (`held`) is
    `awaiting_review`, `exporting`, `exported` or `rejected` (see above)."""
    return fdb.scheduled_runs.find_one({"_id": state})


@dataclass(frozen=True)
class NightHold:
    """What a night held for review records beside its selection: where its batch is to go and with which export
    options (`ExportConfig` as a dict), and the night's report so far."""

    target: str | None  # None: `exports/` in the data home (the task resolves it, as the export would)
    export_config: dict
    report: dict


def record_export_intent(fdb: FeatureDB, state: str, mined: dict, hold: NightHold | None = None) -> dict:
    """Record, before anything is exported, which selection this night ships; returns the night's record (its
    `mine`: the recorded mining result). The first record wins: a run that mined the same night again (a crash
    before this point, or two runs at once) ships the recorded selection, so a night never queues two batches.
    With `hold` (`target`, `export_config`, `report`) the night is recorded `awaiting_review` instead: a person
    exports it from the review app (`claim_held_export`). Whether the returned record is held is the record's
    (`held`), not the caller's: a run that lost the race to a held one must not ship it."""
    fields = {"status": "exporting", "mine": mined, "selection_id": mined["selection_id"], "recorded_at": utcnow()}
    if hold is not None:
        fields.update(status=AWAITING, held=True, target=hold.target, export_config=hold.export_config,
                      report=hold.report)
    doc = durable(fdb.scheduled_runs).find_one_and_update(
        {"_id": state}, {"$setOnInsert": fields}, upsert=True, return_document=ReturnDocument.AFTER)
    return doc if "mine" in doc else {**doc, "mine": doc["result"]["mine"]}


def record_scheduled_run(fdb: FeatureDB, state: str, result: dict) -> None:
    """Mark a scheduled run done (last, after its export), so a crash before this point is simply re-run."""
    durable(fdb.scheduled_runs).update_one({"_id": state}, {"$set": {"status": "done", "result": result,
                                                            "finished_at": utcnow()}}, upsert=True)


# ---------------------------------------------------------------------------------------------------- held nights
AWAITING, EXPORTING, EXPORTED, REJECTED = "awaiting_review", "exporting", "exported", "rejected"
WAITING = (AWAITING, EXPORTING)  # a held night not finished yet: no night mines meanwhile
FINISHED = ("done", EXPORTED, REJECTED)  # a night with its result: the same night again is a no-op
# An Export that started this long ago and never finished died with its process (the app restarted): another
# press may take it over. The export is idempotent (its batch id derives from the frozen decisions), so the worst
# a slow export overtaken by a press costs is one more write of the same batch; the lease is generous for that.
EXPORT_LEASE = dt.timedelta(hours=1)


class NightNotWaiting(RuntimeError):
    """The held night is being exported by another press, or it is not a held night."""


@dataclass(frozen=True)
class HeldNight:
    """A night held for review as `scheduled_runs` records it: its selection, where its batch goes (`target`,
    `export_config`: what the night was told), its state and, once exported, its batch."""

    night_id: str  # the night's state key
    status: str  # awaiting_review -> exporting -> exported | rejected
    selection_id: str
    selected: int
    model_version: str | None
    target: str
    export_config: dict
    held_at: dt.datetime | None
    export_by: str | None = None
    export_started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    batch_id: str | None = None
    report: dict | None = None  # the night's report when it was held (as flows.nightly.NightReport.as_doc)
    result: dict | None = None  # the same with its export, once exported or rejected

    @property
    def waiting(self) -> bool:
        return self.status in WAITING

    @classmethod
    def from_doc(cls, doc: dict) -> "HeldNight":
        mine, result = doc.get("mine") or {}, doc.get("result")
        export = (result or {}).get("export") or {}
        return cls(doc["_id"], doc["status"], doc["selection_id"], int(mine.get("selected") or 0),
                   (doc.get("report") or {}).get("model_version"), doc.get("target") or "",
                   doc.get("export_config") or {}, doc.get("recorded_at"), doc.get("export_by"),
                   doc.get("export_started_at"), doc.get("finished_at"), export.get("batch_id"),
                   doc.get("report"), result)


def waiting_night(fdb: FeatureDB) -> HeldNight | None:
    """The oldest held night still waiting for its review (or its export), if any."""
    # A document per night: a collection this small needs no index on `status`.
    doc = fdb.scheduled_runs.find_one({"held": True, "status": {"$in": list(WAITING)}},
                                      sort=[("recorded_at", 1), ("_id", 1)])
    return HeldNight.from_doc(doc) if doc else None


def held_nights(fdb: FeatureDB, limit: int = 100) -> list[HeldNight]:
    """Nights held for review, the waiting ones first, then newest first."""
    docs = fdb.scheduled_runs.find({"held": True}).sort([("recorded_at", -1), ("_id", 1)]).limit(limit)
    nights = [HeldNight.from_doc(d) for d in docs]
    return sorted(nights, key=lambda n: not n.waiting)  # stable: newest first within each group


def held_night(fdb: FeatureDB, night_id: str) -> HeldNight | None:
    doc = fdb.scheduled_runs.find_one({"_id": night_id, "held": True})
    return HeldNight.from_doc(doc) if doc else None


def night_of_selection(fdb: FeatureDB, selection_id: str) -> HeldNight | None:
    """The held night whose selection this is (None: the selection was not held by a night)."""
    doc = fdb.scheduled_runs.find_one({"held": True, "selection_id": selection_id}, sort=[("recorded_at", -1)])
    return HeldNight.from_doc(doc) if doc else None


def claim_held_export(fdb: FeatureDB, night_id: str, by: str) -> HeldNight:
    """Take the held night's export: `awaiting_review` -> `exporting`, atomically, so that of two presses (or two
    app processes) one exports. A night already finished is returned as it is (the caller answers with its
    batch); one another press is exporting raises NightNotWaiting, unless that press started more than
    `EXPORT_LEASE` ago (it died: this one takes over)."""
    now = utcnow()
    doc = durable(fdb.scheduled_runs).find_one_and_update(
        {"_id": night_id, "held": True, "$or": [{"status": AWAITING},
                                                {"status": EXPORTING, "export_started_at": {"$lt": now - EXPORT_LEASE}}]},
        {"$set": {"status": EXPORTING, "export_by": by, "export_started_at": now}},
        return_document=ReturnDocument.AFTER)
    if doc is not None:
        return HeldNight.from_doc(doc)
    night = held_night(fdb, night_id)
    if night is None:
        raise LookupError(f"no night {night_id!r} held for review")
    if night.status == EXPORTING:
        raise NightNotWaiting(f"night {night_id} is being exported (by {night.export_by} since "
                              f"{night.export_started_at:%Y-%m-%d %H:%M:%S} UTC)")
    return night  # exported or rejected already


def release_held_export(fdb: FeatureDB, claimed: HeldNight) -> None:
    """The export `claimed` took failed (a server away, a file missing): the night waits again, so the next press
    tries again at once instead of after the lease. Its decisions stay final (the export had frozen them)."""
    durable(fdb.scheduled_runs).update_one(
        {"_id": claimed.night_id, "status": EXPORTING, "export_started_at": claimed.export_started_at},
        {"$set": {"status": AWAITING}, "$unset": {"export_by": "", "export_started_at": ""}})


def finish_held_export(fdb: FeatureDB, night_id: str, status: str, result: dict) -> HeldNight:
    """The held night's export ended: `exported` (with its batch in `result["export"]`) or `rejected` (no batch).
    Its commit point: from here on the night is done and mining goes on."""
    if status not in (EXPORTED, REJECTED):
        raise ValueError(f"a held night ends {EXPORTED} or {REJECTED}, not {status!r}")
    doc = durable(fdb.scheduled_runs).find_one_and_update(
        {"_id": night_id, "held": True, "status": EXPORTING},
        {"$set": {"status": status, "result": result, "finished_at": utcnow()}},
        return_document=ReturnDocument.AFTER)
    if doc is None:  # finished by a press that took over a stale claim: its record stands
        doc = fdb.scheduled_runs.find_one({"_id": night_id})
    return HeldNight.from_doc(doc)


def list_runs(fdb: FeatureDB, model_version: str | None = None, kind: str | None = None,
              limit: int = 100) -> list[dict]:
    """Runs, newest first (of one model or kind when given)."""
    query: dict = {}
    if model_version:
        query["model_version"] = model_version
    if kind:
        query["kind"] = kind
    return list(fdb.runs.find(query).sort([("started_at", -1), ("_id", -1)]).limit(limit))


def get_run(fdb: FeatureDB, run_id: ObjectId) -> dict | None:
    return fdb.runs.find_one({"_id": run_id})


def run_of_selection(fdb: FeatureDB, selection_id: str) -> dict | None:
    """The mining run that recorded this selection (as its mined or its random arm)."""
    return fdb.runs.find_one({"$or": [{"metrics.selection_id": selection_id},
                                      {"metrics.random_selection_id": selection_id}]},
                             sort=[("started_at", -1)])


def record_report(fdb: FeatureDB, kind: str, parameters: dict, report: dict, model_version: str | None = None,
                  metrics: dict | None = None) -> ObjectId:
    """A finished run whose product is a report (`report`: its files, e.g. `html`, `markdown`)."""
    run_id = start_run(fdb, kind, parameters, model_version=model_version)
    finish_run(fdb, run_id, metrics={**(metrics or {}), "report": report})
    return run_id


def count_by_model(fdb: FeatureDB) -> dict[str | None, int]:
    """How many runs used each model version."""
    return {r["_id"]: r["n"] for r in fdb.runs.aggregate([{"$group": {"_id": "$model_version", "n": {"$sum": 1}}}])}
