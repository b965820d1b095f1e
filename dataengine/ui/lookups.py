"""One record by the id a request names: what the pictures and reports are cut from, and the app's refusals.

Ids arrive as text and are parsed here; an id that is not one, or names nothing, is a `NotFound` (the app answers
404), a write the record's state forbids a `Conflict` (409). Nothing here opens a path that came with a request.
"""

from __future__ import annotations

from bson import ObjectId

from fdb import FeatureDB
from fdb import detections as detection_store
from fdb import errors as error_store
from fdb import images as image_store
from fdb import label_errors as suspect_store
from fdb import models as model_store
from fdb import runs as run_store
from fdb import selections as selection_store


class NotFound(LookupError):
    """No such record: the app answers 404 with this message."""


class Conflict(RuntimeError):
    """The write cannot be made in the record's state (an exported selection): the app answers 409."""


def parse_id(text: str, what: str) -> ObjectId:
    if not ObjectId.is_valid(text):
        raise NotFound(f"no {what} {text!r}: not a record id")
    return ObjectId(text)


def report_path(fdb: FeatureDB, run_id: str) -> str:
    """The HTML report a run wrote, as its record names it."""
    run = run_store.get_run(fdb, parse_id(run_id, "run"))
    report = ((run or {}).get("metrics") or {}).get("report")
    path = report.get("html") if isinstance(report, dict) else report
    if not path:
        raise NotFound(f"run {run_id} wrote no report")
    return str(path)


def error_record(fdb: FeatureDB, error_id: str) -> dict:
    doc = error_store.get(fdb, parse_id(error_id, "error"))
    if doc is None:
        raise NotFound(f"no error {error_id}")
    return doc


def suspect_record(fdb: FeatureDB, suspect_id: str) -> dict:
    doc = suspect_store.get(fdb, parse_id(suspect_id, "label error"))
    if doc is None:
        raise NotFound(f"no suspected label error {suspect_id}")
    return doc


def image_record(fdb: FeatureDB, image_id: str) -> dict:
    iid = parse_id(image_id, "image")
    doc = image_store.by_id(fdb, [iid]).get(iid)
    if doc is None:
        raise NotFound(f"no image {image_id}")
    return doc


def image_model(fdb: FeatureDB, image: dict) -> str | None:
    """The model an image page means (its detections, its vector): production's when it processed the image, else
    the last model that did; None when none did."""
    processed = image_store.models_done(image)
    production = model_store.production_version(fdb)
    return production if production in processed else (processed[-1] if processed else None)


def detection_record(fdb: FeatureDB, detection_id: str):
    did = parse_id(detection_id, "detection")
    det = detection_store.detections_by_id(fdb, [did]).get(did)
    if det is None:
        raise NotFound(f"no detection {detection_id}")
    return det


def hit_boxes(fdb: FeatureDB, selection_id: str, image_id: str) -> list[dict]:
    """The detections of an image that a selection's queries reached, with the query and distance."""
    iid = parse_id(image_id, "image")
    hits = selection_store.neighbours_in_image(fdb, selection_id, iid)
    detections = detection_store.detections_by_id(fdb, [h["owner_id"] for h in hits if h.get("level") == "detection"])
    return [{"bbox": detections[h["owner_id"]].bbox, "error_id": h["error_id"], "type": h.get("type"),
             "distance": h["distance"]} for h in hits if h["owner_id"] in detections]
