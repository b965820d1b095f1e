"""Models and runs: the overview (/), every model version, and one model with the runs that used it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from dataengine.ui import views
from dataengine.ui.routes.twins import Twin, serve
from dataengine.ui.schemas import ModelDetail, Models, Overview

api = APIRouter(prefix="/api", tags=["models and runs"])
pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

serve(api, pages,
      Twin("/", views.overview, Overview, "counts, the production model, recent selections, batches, runs",
           "overview.html", "overview", "overview", api_path="/overview"),
      Twin("/models", views.models, Models, "every model version with stage, parent, mAP; promotions",
           "models.html", "models", "models"),
      Twin("/models/{version}", views.model, ModelDetail, "one model: metrics, runs that used it, its selections",
           "model.html", "model {version}", "models"))
