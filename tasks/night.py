"""Night: what a scheduled night records in fdb (its state, the selection it ships before the export, the night
done), so a second run with nothing new is a no-op and a crashed one is finished without a second batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import task

from fdb import StoreConfig
from fdb import runs as run_store
from fdb.runs import HeldNight, NightHold
from jobs.context import connection, newest_labels
from mining.selection import MiningSummary, pool_state
from tasks.retries import IO_RETRIES


@task(name="what changed since the last night", **IO_RETRIES)
def nightly_state(store: StoreConfig, model_version: str, gt_json: str, params: dict) -> tuple[str, dict | None]:
    """(state key, the night with that key as far as it got, or None): `status` "done" with its `result` (a
    second run with nothing new is a no-op) or "exporting" with its recorded selection under `mine`."""
    fdb = connection(store)
    state = pool_state(fdb, model_version, newest_labels(store, gt_json), params)
    return state, run_store.scheduled_run(fdb, state)


@task(name="record what the night ships", **IO_RETRIES)
def record_export_intent(store: StoreConfig, state: str, mined: MiningSummary, hold: NightHold | None = None
                         ) -> tuple[MiningSummary, HeldNight | None]:
    """The night's selection, recorded before its export: (the one recorded first, see fdb.runs; the night held
    for review, or None when it ships now). With `hold` it is held (its `target` None: `exports/` in the data
    home, as `export` would resolve it)."""
    if hold is not None:
        hold = replace(hold, target=str(hold.target or Path(store.home) / "exports"))
    doc = run_store.record_export_intent(connection(store), state, mined.as_dict(), hold)
    return MiningSummary.from_dict(doc["mine"]), (HeldNight.from_doc(doc) if doc.get("held") else None)


@task(name="is a night waiting for review", **IO_RETRIES)
def waiting_night(store: StoreConfig) -> HeldNight | None:
    """The night held for review that no one has exported yet, if any: no night mines while one waits."""
    return run_store.waiting_night(connection(store))


@task(name="record the night", **IO_RETRIES)
def record_night(store: StoreConfig, state: str, result: dict) -> None:
    """The night done (`result`: its record as flows.nightly.NightReport.as_doc writes it)."""
    run_store.record_scheduled_run(connection(store), state, result)
