"""Selections and their curation: the images a run chose, accept / reject each before export, then export the
rest as a labelling batch to the app's export target. Writes are recorded with who and when; repeating one
changes nothing; once an export started they are refused (409)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from dataengine.ui import views
from dataengine.ui.deps import Page, Settings, Store
from dataengine.ui.encoding import encode
from dataengine.ui.routes.twins import Twin, serve
from dataengine.ui.schemas_curation import (Decision, DecisionRequest, Export, ExportRequest, Selections,
                                             SelectionWithImages)

api = APIRouter(prefix="/api", tags=["selections"])
pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

serve(api, pages, Twin("/selections", views.selections, Selections, "every selection with its decisions and export",
                       "selections.html", "selections", "selections"))


@api.get("/selections/{selection_id}", response_model=SelectionWithImages,
         summary="a selection's ranked images and random arm")
def api_selection(fdb: Store, selection_id: str):
    return encode(views.selection(fdb, selection_id))


@api.post("/selections/{selection_id}/images/{image_id}/decision", response_model=Decision,
          summary="accept or reject one image before export (recorded; repeating it changes nothing)")
def api_decide(fdb: Store, settings: Settings, selection_id: str, image_id: str, body: DecisionRequest):
    return encode(views.decide(fdb, selection_id, image_id, body.decision, body.by or settings.user, body.note))


@api.post("/selections/{selection_id}/export", response_model=Export,
          summary="export the images not rejected (or only those accepted) as a labelling batch, to the app's "
                  "export target")
def api_export(fdb: Store, settings: Settings, selection_id: str, body: ExportRequest = ExportRequest()):
    return encode(views.export(fdb, selection_id, settings.export_target, body.min_score, body.only_accepted))


@pages.get("/selections/{selection_id}")
def selection_page(page: Page, fdb: Store, settings: Settings, selection_id: str):
    data = {**views.selection(fdb, selection_id), "export_target": settings.export_target}
    return page("selection.html", data, f"selection {selection_id}", "selections")
