"""Images: one image's record, a model's detections on it, its errors and the selections it is in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from dataengine.ui import views
from dataengine.ui.deps import Page, Store
from dataengine.ui.encoding import encode
from dataengine.ui.schemas import Image

api = APIRouter(prefix="/api", tags=["images"])
pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

MinScore = Annotated[float, Query(ge=0, le=1, description="the lowest detection score listed")]


@api.get("/images/{image_id}", response_model=Image, summary="an image: record, detections, errors, selections")
def api_image(fdb: Store, image_id: str, model: str | None = None, min_score: MinScore = views.IMAGE_MIN_SCORE):
    return encode(views.image(fdb, image_id, model, min_score))


@pages.get("/images/{image_id}")
def image_page(page: Page, fdb: Store, image_id: str, model: str | None = None,
               min_score: MinScore = views.IMAGE_MIN_SCORE):
    return page("image.html", views.image(fdb, image_id, model, min_score), "image", "")
