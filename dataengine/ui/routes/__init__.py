"""The app's routes, one module per page family; each has an `api` router (JSON under /api, with response models
so /openapi.json documents it) and a `pages` router (the HTML twin of the same view), `media` the pictures and
reports, `docs` the API's documentation pages."""

from __future__ import annotations

from fastapi import FastAPI

from dataengine.ui.routes import batches, docs, errors, images, media, models, nights, queries, selections, similar

FAMILIES = (models, errors, queries, selections, nights, batches, images, similar)


def include(app: FastAPI) -> None:
    for family in FAMILIES:
        app.include_router(family.api)
    app.include_router(media.router)
    for family in FAMILIES:
        app.include_router(family.pages)
    app.include_router(docs.router)
