"""Errors: a page of a model's errors on the labelled set, filtered by type and class, and the suspected label
errors beside them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from dataengine.ui import views
from dataengine.ui.deps import Page, Store
from dataengine.ui.encoding import encode
from dataengine.ui.schemas import ErrorsPage

api = APIRouter(prefix="/api", tags=["errors"])
pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

Types = Annotated[list[str] | None, Query(description="error types to keep (repeat for several)")]


@api.get("/errors", response_model=ErrorsPage,
         summary="a page of a model's errors on the labelled set, and suspects")
def api_errors(fdb: Store, model: str | None = None, type: Types = None, category: str | None = None,
               page: Annotated[int, Query(ge=1)] = 1):
    return encode(views.errors(fdb, model, type, category or None, page))


@pages.get("/errors")
def errors_page(page: Page, fdb: Store, model: str | None = None, type: Types = None, category: str | None = None,
                page_: Annotated[int, Query(ge=1, alias="page")] = 1):
    # A form's empty type select sends `type=`: the page takes that as no filter.
    data = views.errors(fdb, model, [t for t in type or [] if t], category or None, page_)
    return page("errors.html", data, "errors", "errors")
