"""Nights held for review: the nightly flow with `hold_for_review` recorded a selection and exported nothing. The
page lists them (waiting ones first); a person curates the night's selection on its selection page, then exports
the night here: its one batch, to the night's recorded target with its recorded options."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from dataengine.ui import views
from dataengine.ui.deps import Settings, Store
from dataengine.ui.encoding import encode
from dataengine.ui.routes.twins import Twin, serve
from dataengine.ui.schemas_curation import NightExportAnswer, NightExportRequest, Nights

api = APIRouter(prefix="/api", tags=["nights"])
pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

serve(api, pages, Twin("/nights", views.nights, Nights, "the nights held for review, waiting ones first",
                       "nights.html", "nights held for review", "nights"))


@api.post("/nights/{night_id}/export", response_model=NightExportAnswer,
          summary="export a held night as its one batch, to the night's recorded target (pressing again answers "
                  "with the same batch)")
def api_export_night(fdb: Store, settings: Settings, night_id: str, body: NightExportRequest = NightExportRequest()):
    return encode(views.export_night(fdb, night_id, body.by or settings.user))
