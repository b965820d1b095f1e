"""Serve the review app: check the bind, connect to the feature database, run uvicorn."""

from __future__ import annotations

import uvicorn

from dataengine.ui.access import AppSettings, is_loopback
from dataengine.ui.app import build_app
from fdb import StoreConfig, connect


def url_of(settings: AppSettings) -> str:
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    return f"http://{host}:{settings.port}/"


def serve(store: StoreConfig, settings: AppSettings, announce=print) -> None:
    """Blocks until interrupted. Refuses a non-loopback bind without a token (`AppSettings.check`)."""
    settings.check()
    fdb = connect(store)
    app = build_app(fdb, settings)
    where = url_of(settings)
    announce(f"review app on {where} (feature database '{store.db_name}'; Ctrl-C stops it)")
    if not is_loopback(settings.host):
        announce("a token is required: open the app once with ?token=<your DATAENGINE_UI_TOKEN>")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
