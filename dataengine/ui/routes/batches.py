"""Batches: every labelling and review batch, and one batch with what its annotators changed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from dataengine.ui import views
from dataengine.ui.routes.twins import Twin, serve
from dataengine.ui.schemas_curation import Batch, Batches

api = APIRouter(prefix="/api", tags=["batches"])
pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

serve(api, pages,
      Twin("/batches", views.batches, Batches, "every labelling and review batch", "batches.html", "batches",
           "batches"),
      Twin("/batches/{batch_id}", views.batch, Batch, "a batch: status, labels back, what annotators changed",
           "batch.html", "batch {batch_id}", "batches"))
