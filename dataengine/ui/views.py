"""What each page of the review app shows, as plain data.

One function per resource, over the feature database. The JSON API returns exactly what these return (as
`encoding.encode` writes it, in the shape `schemas` documents), and each page is rendered from the same call, so a
page never shows anything the API does not (and tests can call them without a server). Ids arrive as text and are
parsed by `lookups`; anything unknown is a `NotFound`.
"""

from __future__ import annotations

import math

from annotation_export.changes import batch_changes
from annotation_export.config import ExportConfig
from annotation_export.export import ExportError, export_batch
from annotation_export.held_nights import HeldNight, NightNotWaiting, export_held_night
from dataengine.ui.lookups import Conflict, NotFound, image_model, image_record, parse_id
from fdb import FeatureDB, labelled_sets
from fdb import detections as detection_store
from fdb import errors as error_store
from fdb import exports as export_store
from fdb import images as image_store
from fdb import label_errors as suspect_store
from fdb import labels as label_store
from fdb import models as model_store
from fdb import runs as run_store
from fdb import selections as selection_store
from records import ERROR_TYPES, LABEL_ERROR_TYPES

PER_PAGE = 48
IMAGE_MIN_SCORE = 0.3  # the detections an image's page lists and draws


def _run_row(run: dict) -> dict:
    metrics = run.get("metrics") or {}
    report = metrics.get("report")
    has_report = bool(report.get("html") if isinstance(report, dict) else report)
    return {"run_id": run["_id"], "kind": run.get("kind"), "status": run.get("status"),
            "model_version": run.get("model_version"), "started_at": run.get("started_at"),
            "finished_at": run.get("finished_at"), "report": f"/reports/{run['_id']}" if has_report else None,
            "selection_id": metrics.get("selection_id"), "random_selection_id": metrics.get("random_selection_id"),
            "title": (run.get("parameters") or {}).get("title")}


# ---------------------------------------------------------------------------------------------------- overview
def overview(fdb: FeatureDB) -> dict:
    counts = fdb.counts()
    return {"production": model_store.production_version(fdb),
            "counts": {k: counts.get(k, 0) for k in ("images", "images_quarantined", "detections", "features",
                                                      "errors", "label_errors", "selections", "exports", "labels",
                                                      "models", "runs")},
            "selections": selection_store.list_selections(fdb, limit=5), "batches": export_store.list_batches(fdb, 5),
            "runs": [_run_row(r) for r in run_store.list_runs(fdb, limit=8)],
            "waiting_nights": sum(n.waiting for n in run_store.held_nights(fdb))}


# ---------------------------------------------------------------------------------------------------- models
def models(fdb: FeatureDB) -> dict:
    docs = model_store.list_models(fdb)
    runs_by_model = run_store.count_by_model(fdb)
    return {"production": model_store.production_version(fdb),
            "models": [{"version": d["_id"], "stage": d["stage"], "role": d.get("role", "model"),
                        "parent": d.get("parent"), "created_at": d.get("created_at"), "bbox_map": model_store.bbox_map(d),
                        "test": model_store.test_numbers(d),
                        "classes": d.get("classes") or [], "runs": runs_by_model.get(d["_id"], 0)} for d in docs],
            "promotions": model_store.promotions(fdb)}


def model(fdb: FeatureDB, version: str) -> dict:
    doc = model_store.get_model(fdb, version)
    if doc is None:
        raise NotFound(f"no model {version!r}")
    children = [m["_id"] for m in model_store.list_models(fdb) if m.get("parent") == version]
    return {"version": version, "stage": doc["stage"], "role": doc.get("role", "model"), "parent": doc.get("parent"),
            "children": children, "created_at": doc.get("created_at"), "promoted_at": doc.get("promoted_at"),
            "checkpoint": doc.get("checkpoint"), "classes": doc.get("classes") or [], "bbox_map": model_store.bbox_map(doc),
            "test": model_store.test_numbers(doc),
            "metrics": doc.get("metrics") or {}, "evaluation": doc.get("evaluation") or {},
            "training_data": doc.get("training_data") or {}, "recipe": doc.get("recipe") or {},
            "runs": [_run_row(r) for r in run_store.list_runs(fdb, model_version=version)],
            "selections": [s for s in selection_store.list_selections(fdb) if s["model_version"] == version],
            "errors": error_store.facets(fdb, version)}


# ---------------------------------------------------------------------------------------------------- errors
def _default_model(fdb: FeatureDB, candidates: list[str]) -> str | None:
    production = model_store.production_version(fdb)
    if production in candidates:
        return production
    known = model_store.known_versions(fdb)  # oldest first: the newest model that has errors
    return next((v for v in reversed(known) if v in candidates), candidates[-1] if candidates else None)


def errors(fdb: FeatureDB, model_version: str | None = None, types: list[str] | None = None,
           category: str | None = None, page: int = 1, per_page: int = PER_PAGE) -> dict:
    """A page of a model's errors on the labelled set (filtered by type and class), the counts by type and class,
    and the suspected label errors the model found, apart."""
    with_errors = error_store.models_with_errors(fdb)
    model_version = model_version or _default_model(fdb, with_errors)
    page = max(1, int(page))
    if model_version is None or model_version not in with_errors:
        docs, total, facets = [], 0, {"type": {}, "category_name": {}}
    else:
        params_key = error_store.newest_params_key(fdb, model_version)  # the page and its counts agree on it
        docs, total = error_store.find(fdb, model_version, params_key, types=types, category=category,
                                       skip=(page - 1) * per_page, limit=per_page)
        facets = error_store.facets(fdb, model_version, params_key)
    queried = selection_store.selections_of_errors(fdb, [d["_id"] for d in docs])
    suspects, n_suspects = suspect_store.suspects_page(fdb, model_version, limit=per_page) if model_version else ([], 0)
    return {"model_version": model_version, "models": with_errors, "types": list(types or []), "category": category,
            "all_types": list(ERROR_TYPES), "facets": facets, "page": page, "per_page": per_page, "total": total,
            "pages": max(1, math.ceil(total / per_page)),
            "errors": [{"error_id": d["_id"], "type": d["type"], "detail": d.get("detail"),
                        "category": d.get("category_name"), "true_category": d.get("true_category_name"),
                        "score": d.get("score"), "iou": d.get("iou"), "bbox": d.get("bbox"),
                        "gt_bbox": d.get("gt_bbox"), "image_id": d.get("image_id"), "uri": d.get("uri"),
                        "queried_in": queried.get(d["_id"], [])} for d in docs],
            "label_errors": {"total": n_suspects, "types": list(LABEL_ERROR_TYPES),
                             "suspects": [_suspect_row(s) for s in suspects]}}


def _suspect_row(s: dict) -> dict:
    return {"suspect_id": s["_id"], "type": s["type"], "suspicion": s.get("suspicion"), "why": s.get("why"),
            "category": s.get("category_name"), "label_category": s.get("gt_category_name"),
            "score": s.get("score"), "bbox": s.get("bbox"), "gt_bbox": s.get("gt_bbox"),
            "image_id": s.get("image_id"), "uri": s.get("uri"), "model_version": s.get("model_version")}


# ---------------------------------------------------------------------------------------------------- queries
def query(fdb: FeatureDB, error_id: str, selection_id: str | None = None) -> dict:
    """A query and its nearest pool neighbours as the selection recorded them (the newest selection that used it
    when none is named): crops, distances, images, whether each neighbour's image was selected, the index."""
    eid = parse_id(error_id, "query")
    recorded = selection_store.read_query(fdb, eid, selection_id)
    error = error_store.get(fdb, eid)
    if recorded is None:
        raise NotFound(f"no selection recorded a query for error {error_id}"
                       + (f" in selection {selection_id}" if selection_id else ""))
    neighbours = recorded.get("neighbours") or []
    detections = (detection_store.detections_by_id(fdb, [n["owner_id"] for n in neighbours])
                  if recorded.get("level") == "detection" else {})
    records = image_store.by_id(fdb, {n["image_id"] for n in neighbours} | {recorded["source_image_id"]})
    found = selection_store.read_selection(fdb, recorded["selection_id"])
    rank_of = {img.image_id: img.rank for img in found[1]} if found else {}
    source = records.get(recorded["source_image_id"]) or {}
    rows = []
    for n in neighbours:
        det = detections.get(n["owner_id"])
        rows.append({"rank": n["rank"], "distance": n["distance"], "image_id": n["image_id"],
                     "uri": (records.get(n["image_id"]) or {}).get("uri"),
                     "detection_id": det.id if det else None, "bbox": det.bbox if det else None,
                     "score": det.score if det else None, "category": det.category_name if det else None,
                     "selected_rank": rank_of.get(n["image_id"])})
    distances = [n["distance"] for n in neighbours]
    return {"error_id": eid, "selection_id": recorded["selection_id"], "model_version": recorded.get("model_version"),
            "type": recorded.get("type"), "category": recorded.get("category"), "level": recorded.get("level"),
            "layer": recorded.get("layer"), "index_version": recorded.get("index_version"),
            "detail": (error or {}).get("detail"), "score": (error or {}).get("score"),
            "true_category": (error or {}).get("true_category_name"),
            "source_image_id": recorded["source_image_id"], "source_uri": source.get("uri"),
            "bbox": recorded.get("bbox"), "gt_bbox": (error or {}).get("gt_bbox"),
            "reason": _query_reason(recorded, distances, sum(r["selected_rank"] is not None for r in rows)),
            "other_selections": [s for s in selection_store.selections_of_errors(fdb, [eid]).get(eid, [])
                                 if s != recorded["selection_id"]],
            "neighbours": rows}


def _query_reason(recorded: dict, distances: list[float], selected: int) -> str:
    level = ("its own box-head FC vector" if recorded.get("level") == "detection"
             else "its image's pooled vector (a miss has no detection)")
    if not distances:
        return f"a {recorded.get('type')} of class {recorded.get('category')}, searched with {level}: no eligible " \
               "neighbour was found"
    return (f"a {recorded.get('type')} of class {recorded.get('category')}, searched with {level} in index "
            f"{recorded.get('index_version')}: {len(distances)} nearest eligible pool neighbours, distance "
            f"{min(distances):.4f}-{max(distances):.4f}; {selected} of their images are in the selection")


# ---------------------------------------------------------------------------------------------------- selections
def selections(fdb: FeatureDB) -> dict:
    return {"selections": selection_store.list_selections(fdb)}


def selection(fdb: FeatureDB, selection_id: str) -> dict:
    """A selection's images in rank order with their reasons, hits, distances and decisions; its queries; the
    random arm drawn beside it (or the mined one, for a random arm); its export."""
    found = selection_store.read_selection(fdb, selection_id)
    if found is None:
        raise NotFound(f"no selection {selection_id!r}")
    info, images = found
    decided = selection_store.decisions(fdb, selection_id)
    run = run_store.run_of_selection(fdb, selection_id)
    metrics = (run or {}).get("metrics") or {}
    partner_id = metrics.get("random_selection_id") if info.arm == "mined" else metrics.get("selection_id")
    partner = selection_store.read_selection(fdb, partner_id) if partner_id else None
    export = export_store.get(fdb, info.export_id) if info.export_id else None
    return {
        "selection_id": selection_id, "arm": info.arm, "model_version": info.model_version, "params": info.params,
        "strategy": info.params.get("strategy", "errors" if info.arm == "mined" else info.arm),
        # What each error type cost the model on the labelled set, and the budget each was given (--budget-split).
        "error_cost": metrics.get("error_cost") or {}, "budget_shares": info.params.get("shares") or {},
        # Beside the mAP, each type's count at the score threshold x its unit cost (--cost operating-point).
        "operating_point_cost": metrics.get("operating_point_cost") or {},
        "index_versions": info.index_versions, "export_id": info.export_id,
        "export": {"batch_id": export["_id"], "status": export.get("status"), "target": export.get("target"),
                   "images": len(export.get("images") or [])} if export else None,
        "frozen": bool(info.export_id or selection_store.export_started(fdb, selection_id)),
        "run_id": (run or {}).get("_id"),
        "counts": {"images": len(images), "accepted": sum(d["decision"] == "accepted" for d in decided.values()),
                   "rejected": sum(d["decision"] == "rejected" for d in decided.values())},
        "images": [{"image_id": img.image_id, "uri": img.uri, "rank": img.rank, "reason": img.reason,
                    "hits": img.hits, "best_distance": img.best_distance,
                    "queries": [{"error_id": q.error_id, "type": q.type, "category": q.category, "level": q.level,
                                 "distance": q.distance} for q in img.queries],
                    "decision": decided.get(img.image_id, {}).get("decision"),
                    "decided_by": decided.get(img.image_id, {}).get("by"),
                    "decided_at": decided.get(img.image_id, {}).get("at"),
                    "note": decided.get(img.image_id, {}).get("note", "")} for img in images],
        "queries": [{"error_id": q["error_id"], "type": q.get("type"), "category": q.get("category"),
                     "level": q.get("level"), "found": q.get("found", 0)}
                    for q in selection_store.queries_of(fdb, selection_id)],
        "partner": {"selection_id": partner_id, "arm": partner[0].arm,
                    "images": [{"image_id": img.image_id, "uri": img.uri, "rank": img.rank, "reason": img.reason}
                               for img in partner[1]]} if partner else None,
        "night": _night_row(fdb, night) if (night := run_store.night_of_selection(fdb, selection_id)) else None,
    }


def decide(fdb: FeatureDB, selection_id: str, image_id: str, decision: str, by: str, note: str = "") -> dict:
    iid = parse_id(image_id, "image")
    decision = {"accept": "accepted", "reject": "rejected"}.get(decision, decision)
    try:
        result = selection_store.decide(fdb, selection_id, iid, decision, by, note)
    except selection_store.SelectionFrozen as exc:
        raise Conflict(str(exc)) from None
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    return {"selection_id": selection_id, "image_id": iid, **result}


def export(fdb: FeatureDB, selection_id: str, target: str, min_score: float | None = None,
           only_accepted: bool = False) -> dict:
    """Ship the selection's images that were not rejected (`only_accepted`: that were accepted) as a labelling
    batch under `target` (the app's)."""
    if selection_store.read_selection(fdb, selection_id) is None:
        raise NotFound(f"no selection {selection_id!r}")
    config = ExportConfig(only_accepted=only_accepted, **({} if min_score is None else {"min_score": float(min_score)}))
    try:
        result = export_batch(fdb, selection_id, target, config)
    except ExportError as exc:
        raise Conflict(str(exc)) from None
    return {"batch_id": result.batch_id, "location": result.location, "counts": result.counts,
            "files": len(result.files)}


# ---------------------------------------------------------------------------------------------------- nights
def _night_row(fdb: FeatureDB, night: HeldNight) -> dict:
    decided = selection_store.decisions(fdb, night.selection_id).values()
    return {"night_id": night.night_id, "status": night.status, "waiting": night.waiting,
            "selection_id": night.selection_id, "model_version": night.model_version, "images": night.selected,
            "accepted": sum(d["decision"] == "accepted" for d in decided),
            "rejected": sum(d["decision"] == "rejected" for d in decided),
            "target": night.target, "only_accepted": bool(night.export_config.get("only_accepted")),
            "min_score": night.export_config.get("min_score"), "held_at": night.held_at,
            "export_by": night.export_by, "export_started_at": night.export_started_at,
            "finished_at": night.finished_at, "batch_id": night.batch_id}


def nights(fdb: FeatureDB) -> dict:
    """The nights held for review (`dataengine nightly --hold-for-review`): the waiting ones first (no night mines
    while one waits), then the exported and rejected ones, newest first."""
    rows = [_night_row(fdb, n) for n in run_store.held_nights(fdb)]
    return {"waiting": sum(r["waiting"] for r in rows), "nights": rows}


def export_night(fdb: FeatureDB, night_id: str, by: str) -> dict:
    """Export a held night as its one batch, to the target and with the options the night recorded. Pressing
    again answers with the batch the first press made (`already_done`); while another press is exporting it,
    a Conflict."""
    from annotation_export.labelstudio_client import LabelStudioError
    from dataengine.config import labelstudio_access

    try:  # the access is used only if the night's recorded target is a labelstudio:// one
        done = export_held_night(fdb, night_id, by, labelstudio=labelstudio_access())
    except NightNotWaiting as exc:
        raise Conflict(str(exc)) from None
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    except (ExportError, LabelStudioError) as exc:  # the night waits again for the next press
        raise Conflict(str(exc)) from None
    result = done.export
    return {"night": _night_row(fdb, done.night), "already_done": done.already_done,
            "batch_id": result.batch_id if result else None, "location": result.location if result else None,
            "counts": result.counts if result else {}}


# ---------------------------------------------------------------------------------------------------- batches
def batches(fdb: FeatureDB) -> dict:
    return {"batches": [_batch_row(b) for b in export_store.list_batches(fdb)]}


def _batch_row(b: dict) -> dict:
    return {"batch_id": b["_id"], "kind": b.get("kind", "selection"), "selection_id": b.get("selection_id"),
            "status": b.get("status"), "target": b.get("target"), "model_version": b.get("model_version"),
            "images": b.get("n_images", len(b.get("images") or [])), "label_version": b.get("label_version"),
            "created_at": b.get("created_at"), "finished_at": b.get("finished_at"),
            "labelled_at": b.get("labelled_at"), "attempts": b.get("attempts"), "counts": b.get("counts") or {}}


def batch(fdb: FeatureDB, batch_id: str) -> dict:
    """A batch: where it went, its status, its label versions, and what the annotators changed against what it
    sent out (the pre-annotations of a labelling batch; the labels under review of a review batch)."""
    doc = export_store.get(fdb, batch_id)
    if doc is None:
        raise NotFound(f"no batch {batch_id!r}")
    kind = doc.get("kind", "selection")
    changes = batch_changes(fdb, batch_id) if kind != "review" else None
    review = None
    if kind == "review":
        applied = [v for v in labelled_sets.versions(fdb, doc.get("labelled_set"))
                   if batch_id in (v.get("source") or "")]
        review = {"labelled_set": doc.get("labelled_set"), "applied": applied}
    manifest_rejected = []
    if doc.get("selection_id"):
        manifest_rejected = [{"image_id": i, **d} for i, d in
                             selection_store.decisions(fdb, doc["selection_id"]).items() if d["decision"] == "rejected"]
    return {**_batch_row({**doc, "n_images": len(doc.get("images") or [])}),
            "files": doc.get("files") or [], "categories": doc.get("categories") or [],
            "min_score": doc.get("min_score"), "images_list": doc.get("images") or [],
            "label_versions": label_store.versions(fdb, batch_id), "changes": changes, "review": review,
            "rejected": manifest_rejected, "server": _server(doc)}


def _server(doc: dict) -> dict | None:
    """Where a batch pushed to an annotation server went, and its progress there: tasks with a completed
    annotation / tasks, read live with the app's token (`DATAENGINE_LABELSTUDIO_TOKEN`). When the server cannot be
    read, its error instead, so the page still shows."""
    pushed = doc.get("server")
    if not pushed:
        return None
    from annotation_export.labelstudio import progress
    from annotation_export.labelstudio_client import LabelStudioError
    from dataengine.config import labelstudio_access

    out = {k: pushed.get(k) for k in ("kind", "url", "project", "project_id")}
    out["link"] = f"{pushed.get('base_url')}/projects/{pushed.get('project_id')}/data"
    out["progress"], out["error"] = None, None
    try:
        out["progress"] = progress(doc, labelstudio_access(), timeout=5)
    except LabelStudioError as exc:
        out["error"] = str(exc)
    return out


# ---------------------------------------------------------------------------------------------------- images
def image(fdb: FeatureDB, image_id: str, model_version: str | None = None,
          min_score: float = IMAGE_MIN_SCORE) -> dict:
    """One image: its record, a model's detections on it (the production model's when it processed the image,
    else the last model that did), the errors found on it and the selections it is in."""
    doc = image_record(fdb, image_id)
    iid = doc["_id"]
    processed = image_store.models_done(doc)
    model_version = model_version or image_model(fdb, doc)
    detections = detection_store.read_detections(fdb, model_version, [iid], min_score=min_score, masks=False) if model_version else []
    errs, _ = error_store.find(fdb, model_version, image_id=iid, limit=200) if model_version else ([], 0)
    return {"image_id": iid, "uri": doc.get("uri"), "width": doc.get("width"), "height": doc.get("height"),
            "split": doc.get("split"), "labelled": doc.get("labelled", False), "status": doc.get("status"),
            "reason": doc.get("reason"), "sha256": doc.get("sha256"), "models_done": processed,
            "model_version": model_version, "min_score": min_score,
            "detections": [{"detection_id": d.id, "rank": d.rank, "bbox": d.bbox, "score": d.score,
                            "category": d.category_name} for d in detections],
            "errors": [{"error_id": e["_id"], "type": e["type"], "category": e.get("category_name"),
                        "bbox": e.get("bbox")} for e in errs],
            "selections": selection_store.selections_of_image(fdb, iid)}


