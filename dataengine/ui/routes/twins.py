"""A view served twice: as JSON under /api, validated and documented by its response model, and as the page
rendered from the same data. Most pages and their API twins differ only in the view, the model and the template:
`serve` adds both routes for each `Twin` (the routes whose pages or API take more keep their own functions).

Each route's signature is built from its path's parameters (each a text), so FastAPI reads them as it reads a
written function's: they are checked, and documented in /openapi.json.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter
from pydantic import BaseModel

from dataengine.ui.deps import Page, Store
from dataengine.ui.encoding import encode

_KEYWORD = inspect.Parameter.KEYWORD_ONLY


@dataclass(frozen=True)
class Twin:
    path: str  # the page's path; the API's is the api router's prefix followed by `api_path`, else by `path`
    view: Callable[..., dict]  # a function of views: (fdb, **the path's parameters) -> the data
    model: type[BaseModel]  # what the API returns
    summary: str  # the API's one line in /docs
    template: str
    title: str  # the page's title, formatted with the path's parameters
    nav: str  # the navigation entry the page lights up
    api_path: str | None = None


def serve(api: APIRouter, pages: APIRouter, *twins: Twin) -> None:
    for twin in twins:
        _add(api, pages, twin)


def _add(api: APIRouter, pages: APIRouter, twin: Twin) -> None:
    named = [inspect.Parameter(name, _KEYWORD, annotation=str) for name in re.findall(r"{(\w+)}", twin.path)]
    store = inspect.Parameter("fdb", _KEYWORD, annotation=Store)

    def data(fdb, **params):
        return encode(twin.view(fdb, **params))

    def html(page, fdb, **params):
        return page(twin.template, twin.view(fdb, **params), twin.title.format(**params), twin.nav)

    data.__name__, data.__signature__ = f"api_{twin.view.__name__}", inspect.Signature([store, *named])
    html.__name__ = f"{twin.view.__name__}_page"
    html.__signature__ = inspect.Signature([inspect.Parameter("page", _KEYWORD, annotation=Page), store, *named])
    api.add_api_route(twin.api_path or twin.path, data, response_model=twin.model, summary=twin.summary)
    pages.add_api_route(twin.path, html)
