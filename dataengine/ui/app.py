"""The review app: server-rendered pages and a JSON API over the feature database (FastAPI, Jinja2).

Pages: models and runs, errors on the labelled set (and suspected label errors), a query and its neighbours, a
selection to curate (accept / reject per image, then export), batches and what the annotators changed. Each page
has a twin under `/api/...` returning the same data (`views`, encoded by `encoding`, in the shapes `schemas`
documents), described at `/docs`; the pages' buttons write through the API. `routes` holds one module per page
family (its API router and its pages router), `deps` what the routes are handed (`Depends`).

Safe by default (`access`):
- bound to loopback; any other bind needs a token (`AppSettings.token`), sent as `Authorization: Bearer <token>`,
  or once as `?token=` (which sets a cookie for the pages);
- on loopback, requests naming another host are refused (a web page cannot reach the app by DNS rebinding), and
  writes must be JSON from the app's own origin (a form on another site cannot post to it);
- pictures are cut from images an fdb record names: no path in a request is ever opened;
- a write (accept, reject) is recorded with who and when, and repeating it changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from dataengine.ui import routes
from dataengine.ui.access import LOOPBACK_NAMES, AppSettings, Guard, is_loopback, refuse
from dataengine.ui.crops import CropCache
from dataengine.ui.lookups import Conflict, NotFound
from dataengine.ui.routes.docs import DOCS_ASSETS
from fdb import FeatureDB

__all__ = ["AppSettings", "build_app", "is_loopback"]

HERE = Path(__file__).parent


async def _not_found(request: Request, exc: NotFound):
    return refuse(request, 404, str(exc))


async def _conflict(request: Request, exc: Conflict):
    return refuse(request, 409, str(exc))


def build_app(fdb: FeatureDB, settings: AppSettings = AppSettings()) -> FastAPI:
    """The app over `fdb`. `settings.check()` is the caller's (the server's) to run before it binds."""
    app = FastAPI(title="gaze data engine: review app", version="1",
                  description="The feature database as people review it: models and runs, errors, queries and "
                              "their neighbours, selections to curate before export, batches and labels. Every "
                              "page under / has its data here under /api.",
                  docs_url=None, redoc_url=None,  # served by routes.docs, from local files
                  exception_handlers={NotFound: _not_found, Conflict: _conflict})
    if is_loopback(settings.host):
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_NAMES))
    app.add_middleware(Guard, settings=settings)
    # The app's own files, then Swagger UI's and ReDoc's (the documentation pages load nothing from elsewhere).
    app.mount("/static", StaticFiles(directory=HERE / "static", packages=[DOCS_ASSETS]), name="static")
    app.state.fdb, app.state.settings, app.state.crops = fdb, settings, CropCache(settings.cache_dir)
    routes.include(app)
    return app
