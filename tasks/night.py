"""Night: what a scheduled night records in fdb (its state, the selection it ships before the export, the night
done), so a second run with nothing new is a no-op and a crashed one is finished without a second batch."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from prefect import task

from fdb import StoreConfig
from fdb import runs as run_store
from fdb.runs import FINISHED, HeldNight, NightHold
from jobs.context import connection
from mining.selection import MiningSummary, pool_state
from records.coco import LabelledSet
from tasks.logs import run_logger
from tasks.retries import IO_RETRIES


@dataclass(frozen=True)
class NightState:
    """Where tonight stands before it mines: its `key` (what a scheduled mining run depends on,
    `mining.selection.pool_state`) and at most one of `done` (the record of the night with that key, finished: a
    second run with nothing new is a no-op), `selection` (what an earlier run of tonight recorded before it
    stopped: exported now, the idempotent step, instead of mining again) and `waiting` (a night held for review
    that nobody exported yet, tonight's or an earlier one: no night mines while one waits). None of them: mine."""

    key: str
    done: dict | None = None  # the finished night's result, as flows.nightly.NightReport.as_doc wrote it
    selection: MiningSummary | None = None
    waiting: HeldNight | None = None


@task(name="what changed since the last night", **IO_RETRIES)
def nightly_state(store: StoreConfig, model_version: str, labelled: LabelledSet, params: dict) -> NightState:
    """Tonight's state (`NightState`), from the pool, the labelled set's bytes, the model and the parameters."""
    fdb = connection(store)
    key = pool_state(fdb, model_version, labelled.sha256, params)
    night = run_store.scheduled_run(fdb, key)
    if night is not None and night["status"] in FINISHED:
        return NightState(key, done=night["result"])
    if night is not None and not night.get("held"):
        run_logger().info("finishing the night of selection %s: exporting it (idempotent)", night["selection_id"])
        return NightState(key, selection=MiningSummary.from_doc(night["mine"]))
    return NightState(key, waiting=run_store.waiting_night(fdb))


@task(name="record what the night ships", **IO_RETRIES)
def record_export_intent(store: StoreConfig, state: str, mined: MiningSummary, hold: NightHold | None = None
                         ) -> tuple[MiningSummary, HeldNight | None]:
    """The night's selection, recorded before its export: (the one recorded first, see fdb.runs; the night held
    for review, or None when it ships now). With `hold` it is held (its `target` None: `exports/` in the data
    home, as `export` would resolve it)."""
    if hold is not None:
        hold = replace(hold, target=str(hold.target or Path(store.home) / "exports"))
    doc = run_store.record_export_intent(connection(store), state, mined.as_doc(), hold)
    return MiningSummary.from_doc(doc["mine"]), (HeldNight.from_doc(doc) if doc.get("held") else None)


@task(name="record the night", **IO_RETRIES)
def record_night(store: StoreConfig, state: str, result: dict) -> None:
    """The night done (`result`: its record as flows.nightly.NightReport.as_doc writes it)."""
    run_store.record_scheduled_run(connection(store), state, result)
