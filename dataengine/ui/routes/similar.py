"""Find similar: a detection or an image beside the pool detections or images nearest to its stored vector."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from dataengine.ui import similar as similar_view
from dataengine.ui.deps import Page, Settings, Store
from dataengine.ui.encoding import encode
from dataengine.ui.schemas import Similar

api = APIRouter(prefix="/api", tags=["similar"])
pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

Owner = Annotated[str, Query(description="a detection's id (layer box) or an image's id (layer image)")]
Layer = Annotated[Literal["box", "image"], Query(description="box: search the pool's detections with a "
                                                             "detection's vector; image: the pool's images")]
K = Annotated[int, Query(ge=1, le=100, description="how many hits")]


@api.get("/similar", response_model=Similar, summary="the pool detections or images nearest to a detection or image")
def api_similar(fdb: Store, settings: Settings, owner: Owner, layer: Layer = "box", model: str | None = None,
                k: K = similar_view.DEFAULT_K):
    return encode(similar_view.similar(fdb, owner, layer, settings.index_root, model, k))


@pages.get("/similar")
def similar_page(page: Page, fdb: Store, settings: Settings, owner: Owner, layer: Layer = "box",
                 model: str | None = None, k: K = similar_view.DEFAULT_K):
    data = similar_view.similar(fdb, owner, layer, settings.index_root, model, k)
    return page("similar.html", data, "similar", "")
