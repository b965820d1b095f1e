"""The review app: server-rendered pages and a JSON API over the feature database (FastAPI, Jinja2).

Pages: models and runs, errors on the labelled set (and suspected label errors), a query and its neighbours, a
selection to curate (accept / reject per image, then export), batches and what the annotators changed. Each page
has a twin under `/api/...` returning the same data (`views`), described at `/docs`; the pages' buttons write
through the API.

Safe by default:
- bound to loopback; any other bind needs a token (`AppSettings.token`), sent as `Authorization: Bearer <token>`,
  or once as `?token=` (which sets a cookie for the pages);
- on loopback, requests naming another host are refused (a web page cannot reach the app by DNS rebinding), and
  writes must be JSON from the app's own origin (a form on another site cannot post to it);
- pictures are cut from images an fdb record names: no path in a request is ever opened;
- a write (accept, reject) is recorded with who and when, and repeating it changes nothing.
"""

from __future__ import annotations

import getpass
import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from dataengine.ui import views
from dataengine.ui.crops import Box, CropCache, placeholder
from fdb import FeatureDB
from fdb import detections as detection_store

HERE = Path(__file__).parent
TOKEN_COOKIE = "dataengine_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AppSettings:
    """How the app is served. `token` is required unless `host` is a loopback address."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = field(default=None, repr=False)
    export_target: str = "exports"  # where the export button ships batches (a folder or s3://bucket/prefix)
    cache_dir: str = "ui-cache"  # rendered crops, by content
    user: str = field(default_factory=getpass.getuser)  # who a decision is recorded for, unless the page says

    def check(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"binding to {self.host} exposes the feature database beyond this machine: set a token "
                             "(DATAENGINE_UI_TOKEN, at least 16 characters), or bind to 127.0.0.1")
        if self.token is not None and len(self.token) < 16:
            raise ValueError("the token must be at least 16 characters")


class _Guard(BaseHTTPMiddleware):
    """The token (when one is set) and the same-origin rule for writes."""

    def __init__(self, app, settings: AppSettings):
        super().__init__(app)
        self.settings = settings

    async def dispatch(self, request: Request, call_next):
        token = self.settings.token
        if token:
            given = request.query_params.get("token")
            if given is not None and request.method == "GET" and secrets.compare_digest(given, token):
                # A link with the token logs the browser in once; the address bar then loses the token.
                target = request.url.remove_query_params("token")
                response = RedirectResponse(str(target.path) + (f"?{target.query}" if target.query else ""),
                                            status_code=303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return response
            header = request.headers.get("authorization", "")
            sent = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE, "")
            if not (sent and secrets.compare_digest(sent, token)):
                return _refuse(request, 401, "a token is required: send 'Authorization: Bearer <token>', or open "
                                             "the app once with ?token=<token>")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return _refuse(request, 415, "writes take JSON (Content-Type: application/json)")
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != request.headers.get("host"):
                return _refuse(request, 403, f"a write from another origin ({origin}) is refused")
        return await call_next(request)


def _refuse(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": message}, status_code=status)
    return HTMLResponse(f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{message}</p>", status_code=status)


def build_app(fdb: FeatureDB, settings: AppSettings = AppSettings()) -> FastAPI:
    """The app over `fdb`. `settings.check()` is the caller's (the server's) to run before it binds."""
    app = FastAPI(title="gaze data engine: review app", version="1",
                  description="The feature database as people review it: models and runs, errors, queries and "
                              "their neighbours, selections to curate before export, batches and labels. Every "
                              "page under / has its data here under /api.")
    if is_loopback(settings.host):
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_NAMES))
    app.add_middleware(_Guard, settings=settings)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["when"] = _when
    templates.env.filters["num"] = _num
    templates.env.filters["short"] = lambda s, n=12: (str(s)[:n] + "…") if s and len(str(s)) > n else (s or "")
    crops = CropCache(settings.cache_dir)
    app.state.fdb, app.state.settings, app.state.crops = fdb, settings, crops

    @app.exception_handler(views.NotFound)
    async def not_found(request: Request, exc: views.NotFound):
        return _refuse(request, 404, str(exc))

    @app.exception_handler(views.Conflict)
    async def conflict(request: Request, exc: views.Conflict):
        return _refuse(request, 409, str(exc))

    def page(request: Request, name: str, data: dict, title: str, nav: str):
        return templates.TemplateResponse(request, name, {"d": views.jsonable(data), "title": title, "nav": nav,
                                                          "user": settings.user})

    # ------------------------------------------------------------------------------------------------ API
    @app.get("/api/overview", tags=["api"], summary="counts, the production model, recent selections, batches, runs")
    def api_overview():
        return views.jsonable(views.overview(fdb))

    @app.get("/api/models", tags=["api"], summary="every model version with stage, parent, mAP; promotions")
    def api_models():
        return views.jsonable(views.models(fdb))

    @app.get("/api/models/{version}", tags=["api"], summary="one model: metrics, runs that used it, its selections")
    def api_model(version: str):
        return views.jsonable(views.model(fdb, version))

    @app.get("/api/errors", tags=["api"], summary="a page of a model's errors on the labelled set, and suspects")
    def api_errors(model: str | None = None, type: Annotated[list[str] | None, Query()] = None,
                   category: str | None = None, page: Annotated[int, Query(ge=1)] = 1):
        return views.jsonable(views.errors(fdb, model, type, category or None, page))

    @app.get("/api/queries/{error_id}", tags=["api"], summary="a query and the neighbours it found")
    def api_query(error_id: str, selection: str | None = None):
        return views.jsonable(views.query(fdb, error_id, selection))

    @app.get("/api/selections", tags=["api"], summary="every selection with its decisions and export")
    def api_selections():
        return views.jsonable(views.selections(fdb))

    @app.get("/api/selections/{selection_id}", tags=["api"], summary="a selection's ranked images and random arm")
    def api_selection(selection_id: str):
        return views.jsonable(views.selection(fdb, selection_id))

    @app.post("/api/selections/{selection_id}/images/{image_id}/decision", tags=["api"],
              summary="accept or reject one image before export (recorded; repeating it changes nothing)")
    def api_decide(selection_id: str, image_id: str,
                   decision: str = Body(..., pattern="^(accept|reject|accepted|rejected)$"),
                   by: str | None = Body(None, max_length=100), note: str = Body("", max_length=1000)):
        return views.jsonable(views.decide(fdb, selection_id, image_id, decision, by or settings.user, note))

    @app.post("/api/selections/{selection_id}/export", tags=["api"],
              summary="export the images not rejected (or only those accepted) as a labelling batch, to the "
                      "app's export target")
    def api_export(selection_id: str, min_score: Annotated[float | None, Body(ge=0, le=1)] = None,
                   only_accepted: Annotated[bool, Body()] = False):
        return views.jsonable(views.export(fdb, selection_id, settings.export_target, min_score, only_accepted))

    @app.get("/api/batches", tags=["api"], summary="every labelling and review batch")
    def api_batches():
        return views.jsonable(views.batches(fdb))

    @app.get("/api/batches/{batch_id}", tags=["api"], summary="a batch: status, labels back, what annotators changed")
    def api_batch(batch_id: str):
        return views.jsonable(views.batch(fdb, batch_id))

    @app.get("/api/images/{image_id}", tags=["api"], summary="an image: record, detections, errors, selections")
    def api_image(image_id: str, model: str | None = None,
                  min_score: Annotated[float, Query(ge=0, le=1)] = views.IMAGE_MIN_SCORE):
        return views.jsonable(views.image(fdb, image_id, model, min_score))

    # ------------------------------------------------------------------------------------------------ pictures
    def picture(image: dict, focus, boxes, size: int) -> Response:
        try:
            path = crops.get(image, focus, boxes, size)
        except OSError as exc:
            return Response(placeholder(min(size, 256), f"unreadable: {type(exc).__name__}"),
                            media_type="image/jpeg", status_code=404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/media/images/{image_id}.jpg", tags=["media"], summary="an image, with a selection's hits drawn")
    def media_image(image_id: str, selection: str | None = None, model: str | None = None,
                    size: int = Query(320, ge=32, le=2048)):
        doc = views.image_record(fdb, image_id)
        if selection:  # why the image was selected: the detections the queries reached
            boxes = [Box(tuple(h["bbox"]), "neighbour", f"{h['distance']:.3f}")
                     for h in views.hit_boxes(fdb, selection, image_id)]
        elif model:  # what the model sees in it
            boxes = [Box(tuple(det.bbox), "prediction", f"{det.category_name} {det.score:.2f}")
                     for det in detection_store.read_detections(fdb, model, [doc["_id"]],
                                                                min_score=views.IMAGE_MIN_SCORE, masks=False)]
        else:
            boxes = []
        return picture(doc, None, boxes, size)

    @app.get("/media/detections/{detection_id}.jpg", tags=["media"], summary="a detection's crop")
    def media_detection(detection_id: str, size: int = Query(160, ge=32, le=1024)):
        det = views.detection_record(fdb, detection_id)
        doc = views.image_record(fdb, str(det.image_id))
        return picture(doc, det.bbox, [Box(tuple(det.bbox), "neighbour", det.category_name or "")], size)

    @app.get("/media/errors/{error_id}.jpg", tags=["media"], summary="an error's crop: prediction red, truth green")
    def media_error(error_id: str, size: int = Query(160, ge=32, le=1024)):
        err = views.error_record(fdb, error_id)
        doc = views.image_record(fdb, str(err["image_id"]))
        boxes = []
        if err.get("gt_bbox"):
            boxes.append(Box(tuple(err["gt_bbox"]), "truth", err.get("true_category_name") or ""))
        if err["type"] != "miss":
            boxes.append(Box(tuple(err["bbox"]), "prediction", err.get("category_name") or ""))
        elif not err.get("gt_bbox"):
            boxes.append(Box(tuple(err["bbox"]), "truth", err.get("category_name") or ""))
        return picture(doc, err["bbox"], boxes, size)

    @app.get("/media/label-errors/{suspect_id}.jpg", tags=["media"], summary="a suspected label error's crop")
    def media_suspect(suspect_id: str, size: int = Query(160, ge=32, le=1024)):
        s = views.suspect_record(fdb, suspect_id)
        doc = views.image_record(fdb, str(s["image_id"]))
        boxes = ([Box(tuple(s["gt_bbox"]), "truth", s.get("gt_category_name") or "")] if s.get("gt_bbox") else [])
        boxes += [Box(tuple(s["bbox"]), "prediction", s.get("category_name") or "")] if s.get("bbox") else []
        focus = s.get("bbox") or s.get("gt_bbox")
        return picture(doc, focus, boxes, size)

    @app.get("/reports/{run_id}", tags=["media"], summary="the HTML report a run wrote", response_class=HTMLResponse)
    def report(run_id: str):
        path = Path(views.report_path(fdb, run_id))
        if not path.is_file():
            raise views.NotFound(f"run {run_id}'s report {path} is no longer on disk")
        return FileResponse(path, media_type="text/html")

    # ------------------------------------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request):
        return page(request, "overview.html", views.overview(fdb), "overview", "overview")

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models_page(request: Request):
        return page(request, "models.html", views.models(fdb), "models", "models")

    @app.get("/models/{version}", response_class=HTMLResponse, include_in_schema=False)
    def model_page(request: Request, version: str):
        return page(request, "model.html", views.model(fdb, version), f"model {version}", "models")

    @app.get("/errors", response_class=HTMLResponse, include_in_schema=False)
    def errors_page(request: Request, model: str | None = None, type: Annotated[list[str] | None, Query()] = None,
                    category: str | None = None, page_: Annotated[int, Query(ge=1, alias="page")] = 1):
        data = views.errors(fdb, model, [t for t in type or [] if t], category or None, page_)
        return page(request, "errors.html", data, "errors", "errors")

    @app.get("/queries/{error_id}", response_class=HTMLResponse, include_in_schema=False)
    def query_page(request: Request, error_id: str, selection: str | None = None):
        return page(request, "query.html", views.query(fdb, error_id, selection), "query", "errors")

    @app.get("/selections", response_class=HTMLResponse, include_in_schema=False)
    def selections_page(request: Request):
        return page(request, "selections.html", views.selections(fdb), "selections", "selections")

    @app.get("/selections/{selection_id}", response_class=HTMLResponse, include_in_schema=False)
    def selection_page(request: Request, selection_id: str):
        data = views.selection(fdb, selection_id)
        return page(request, "selection.html", {**data, "export_target": settings.export_target},
                    f"selection {selection_id}", "selections")

    @app.get("/batches", response_class=HTMLResponse, include_in_schema=False)
    def batches_page(request: Request):
        return page(request, "batches.html", views.batches(fdb), "batches", "batches")

    @app.get("/batches/{batch_id}", response_class=HTMLResponse, include_in_schema=False)
    def batch_page(request: Request, batch_id: str):
        return page(request, "batch.html", views.batch(fdb, batch_id), f"batch {batch_id}", "batches")

    @app.get("/images/{image_id}", response_class=HTMLResponse, include_in_schema=False)
    def image_page(request: Request, image_id: str, model: str | None = None,
                   min_score: Annotated[float, Query(ge=0, le=1)] = views.IMAGE_MIN_SCORE):
        return page(request, "image.html", views.image(fdb, image_id, model, min_score), "image", "")

    return app


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
