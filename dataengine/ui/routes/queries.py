"""Queries: an error a selection searched with, and the pool neighbours it found."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from dataengine.ui import views
from dataengine.ui.deps import Page, Store
from dataengine.ui.encoding import encode
from dataengine.ui.schemas import QueryWithNeighbours

api = APIRouter(prefix="/api", tags=["queries"])
pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@api.get("/queries/{error_id}", response_model=QueryWithNeighbours, summary="a query and the neighbours it found")
def api_query(fdb: Store, error_id: str, selection: str | None = None):
    return encode(views.query(fdb, error_id, selection))


@pages.get("/queries/{error_id}")
def query_page(page: Page, fdb: Store, error_id: str, selection: str | None = None):
    return page("query.html", views.query(fdb, error_id, selection), "query", "errors")
