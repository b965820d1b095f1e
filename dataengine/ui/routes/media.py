"""Pictures and reports: crops cut from the images fdb records name (never from a path in a request), cached on
disk by content, with the boxes that explain them drawn; and the HTML report a run wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse, Response

from dataengine.ui import lookups, views
from dataengine.ui.crops import Box, CropCache, placeholder
from dataengine.ui.deps import Crops, Store
from fdb import detections as detection_store

router = APIRouter(tags=["media"])
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "a JPEG"}}
CropSize = Annotated[int, Query(ge=32, le=1024)]


def picture(crops: CropCache, image: dict, focus, boxes: list[Box], size: int) -> Response:
    try:
        path = crops.get(image, focus, boxes, size)
    except OSError as exc:
        return Response(placeholder(min(size, 256), f"unreadable: {type(exc).__name__}"),
                        media_type="image/jpeg", status_code=404)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.get("/media/images/{image_id}.jpg", response_class=Response, responses=JPEG,
            summary="an image, with a selection's hits drawn")
def media_image(fdb: Store, crops: Crops, image_id: str, selection: str | None = None, model: str | None = None,
                size: Annotated[int, Query(ge=32, le=2048)] = 320):
    doc = lookups.image_record(fdb, image_id)
    if selection:  # why the image was selected: the detections the queries reached
        boxes = [Box(tuple(h["bbox"]), "neighbour", f"{h['distance']:.3f}")
                 for h in lookups.hit_boxes(fdb, selection, image_id)]
    elif model:  # what the model sees in it
        boxes = [Box(tuple(det.bbox), "prediction", f"{det.category_name} {det.score:.2f}")
                 for det in detection_store.read_detections(fdb, model, [doc["_id"]], min_score=views.IMAGE_MIN_SCORE, masks=False)]
    else:
        boxes = []
    return picture(crops, doc, None, boxes, size)


@router.get("/media/detections/{detection_id}.jpg", response_class=Response, responses=JPEG,
            summary="a detection's crop")
def media_detection(fdb: Store, crops: Crops, detection_id: str, size: CropSize = 160):
    det = lookups.detection_record(fdb, detection_id)
    doc = lookups.image_record(fdb, str(det.image_id))
    return picture(crops, doc, det.bbox, [Box(tuple(det.bbox), "neighbour", det.category_name or "")], size)


@router.get("/media/errors/{error_id}.jpg", response_class=Response, responses=JPEG,
            summary="an error's crop: prediction red, truth green")
def media_error(fdb: Store, crops: Crops, error_id: str, size: CropSize = 160):
    err = lookups.error_record(fdb, error_id)
    doc = lookups.image_record(fdb, str(err["image_id"]))
    boxes = []
    if err.get("gt_bbox"):
        boxes.append(Box(tuple(err["gt_bbox"]), "truth", err.get("true_category_name") or ""))
    if err["type"] != "miss":
        boxes.append(Box(tuple(err["bbox"]), "prediction", err.get("category_name") or ""))
    elif not err.get("gt_bbox"):
        boxes.append(Box(tuple(err["bbox"]), "truth", err.get("category_name") or ""))
    return picture(crops, doc, err["bbox"], boxes, size)


@router.get("/media/label-errors/{suspect_id}.jpg", response_class=Response, responses=JPEG,
            summary="a suspected label error's crop")
def media_suspect(fdb: Store, crops: Crops, suspect_id: str, size: CropSize = 160):
    s = lookups.suspect_record(fdb, suspect_id)
    doc = lookups.image_record(fdb, str(s["image_id"]))
    boxes = ([Box(tuple(s["gt_bbox"]), "truth", s.get("gt_category_name") or "")] if s.get("gt_bbox") else [])
    boxes += [Box(tuple(s["bbox"]), "prediction", s.get("category_name") or "")] if s.get("bbox") else []
    focus = s.get("bbox") or s.get("gt_bbox")
    return picture(crops, doc, focus, boxes, size)


@router.get("/reports/{run_id}", response_class=HTMLResponse, summary="the HTML report a run wrote")
def report(fdb: Store, run_id: str):
    path = Path(lookups.report_path(fdb, run_id))
    if not path.is_file():
        raise lookups.NotFound(f"run {run_id}'s report {path} is no longer on disk")
    return FileResponse(path, media_type="text/html")
