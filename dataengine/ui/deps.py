"""What a route is handed, through FastAPI's `Depends`: the feature database, the app's settings, the crop cache,
and a page renderer (the Jinja2 templates, given the same data the API returns).

`build_app` keeps the three on `app.state`; a route names what it needs by type (`Store`, `Settings`, `Crops`,
`Page`), and a test can swap any of them with `app.dependency_overrides`.
"""

# No `from __future__ import annotations` here: FastAPI reads these signatures' annotations as objects.

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from dataengine.ui.access import AppSettings
from dataengine.ui.crops import CropCache
from dataengine.ui.encoding import encode
from fdb import FeatureDB

HERE = Path(__file__).parent


def get_fdb(request: Request) -> FeatureDB:
    return request.app.state.fdb


def get_settings(request: Request) -> AppSettings:
    return request.app.state.settings


def get_crops(request: Request) -> CropCache:
    return request.app.state.crops


Store = Annotated[FeatureDB, Depends(get_fdb)]
Settings = Annotated[AppSettings, Depends(get_settings)]
Crops = Annotated[CropCache, Depends(get_crops)]


def _when(value) -> str:
    if not value:
        return ""
    return str(value).replace("T", " ")[:16]


def _num(value, digits: int = 3) -> str:
    if value is None or value == "":
        return "–"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def _short(value, n: int = 12) -> str:
    return (str(value)[:n] + "…") if value and len(str(value)) > n else (value or "")


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(when=_when, num=_num, short=_short)


class Renderer:
    """Renders a page from a view's data, encoded as the API returns it."""

    def __init__(self, request: Request, user: str):
        self.request, self.user = request, user

    def __call__(self, name: str, data: dict[str, Any], title: str, nav: str) -> HTMLResponse:
        return templates.TemplateResponse(self.request, name, {"d": encode(data), "title": title, "nav": nav,
                                                               "user": self.user})


def get_page(request: Request, settings: Settings) -> Renderer:
    return Renderer(request, settings.user)


Page = Annotated[Renderer, Depends(get_page)]
