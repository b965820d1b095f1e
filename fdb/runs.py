"""The `runs` and `scheduled_runs` collections: what each job was asked to do, and what a night produced."""

from __future__ import annotations

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
    recorded, the export may or may not have happened) or `done` (with its result)."""
    return fdb.scheduled_runs.find_one({"_id": state})


def record_export_intent(fdb: FeatureDB, state: str, mined: dict) -> dict:
    """Record, before anything is exported, which selection this night ships; returns the recorded mining result.
    The first record wins: a run that mined the same night again (a crash before this point, or two runs at
    once) ships the recorded selection, so a night never queues two batches."""
    doc = durable(fdb.scheduled_runs).find_one_and_update(
        {"_id": state}, {"$setOnInsert": {"status": "exporting", "mine": mined, "selection_id": mined["selection_id"],
                                          "recorded_at": utcnow()}},
        upsert=True, return_document=ReturnDocument.AFTER)
    return doc["mine"] if "mine" in doc else doc["result"]["mine"]


def record_scheduled_run(fdb: FeatureDB, state: str, result: dict) -> None:
    """Mark a scheduled run done (last, after its export), so a crash before this point is simply re-run."""
    durable(fdb.scheduled_runs).update_one({"_id": state}, {"$set": {"status": "done", "result": result,
                                                            "finished_at": utcnow()}}, upsert=True)


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
