"""Serve the review app: check the bind, connect to the feature database, run uvicorn."""

from __future__ import annotations

from dataclasses import replace

import uvicorn

from dataengine.ui.access import AppSettings, is_loopback
from dataengine.ui.app import build_app
from fdb import FeatureDB, StoreConfig, connect


def url_of(settings: AppSettings) -> str:
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    return f"http://{host}:{settings.port}/"


def serve(store: StoreConfig, settings: AppSettings, announce=print, named: bool = True) -> None:
    """Blocks until interrupted. Refuses a non-loopback bind without a token (`AppSettings.check`). With `named`
    False (no DATAENGINE_DB in the environment) an empty default database gives way to the newest demo's, and the
    app says which it opened."""
    settings.check()
    fdb = connect(store)
    if not named:
        fdb, store = newest_demo_if_empty(fdb, store, announce)
    app = build_app(fdb, settings)
    where = url_of(settings)
    announce(f"review app on {where} (feature database '{store.db_name}'; Ctrl-C stops it)")
    if not is_loopback(settings.host):
        announce("a token is required: open the app once with ?token=<your DATAENGINE_UI_TOKEN>")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


def newest_demo_if_empty(fdb: FeatureDB, store: StoreConfig, announce=print) -> tuple[FeatureDB, StoreConfig]:
    """The default database when it holds images, else the demo database (`<name>-demo-*`, `dataengine demo`'s)
    whose last run started most recently, so the README's next command after the demo shows the demo's data."""
    if fdb.images.estimated_document_count():
        return fdb, store
    client = fdb.db.client
    newest = None
    for name in client.list_database_names():
        if not name.startswith(f"{store.db_name}-demo-"):
            continue
        last = client[name]["runs"].find_one({}, {"started_at": 1}, sort=[("started_at", -1)])
        started = last.get("started_at") if last else None
        if started is not None and (newest is None or started > newest[0]):
            newest = (started, name)
    if newest is None:
        return fdb, store
    announce(f"the database '{store.db_name}' is empty: opening the newest demo's, '{newest[1]}' "
             f"(DATAENGINE_DB names another)")
    return FeatureDB(client[newest[1]], server=fdb.server), replace(store, db_name=newest[1])
