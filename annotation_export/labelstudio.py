"""A batch in a Label Studio project, and its labels back: the annotation team's server as an export target.

Push (`dataengine export --selection S --to labelstudio://HOST:PORT/PROJECT`):
- the batch is prepared exactly as for a folder (`batch.prepare_batch`): same images, predictions, batch id and
  manifest, and it is recorded the same way (`exports`: `in_progress` with `attempts`, then `done`);
- its files (CVAT, COCO, manifest, images, `_DONE`) are staged as a normal batch folder under
  `<document root>/dataengine/<batch>/`, the folder the server serves local files from
  (`LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`, `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`), and the project
  gets a local-files storage on `<document root>/dataengine` (never synced: it only lets the server serve those
  files to the project). Images on S3 are copied there too; an S3 storage on the engine's own endpoint is not made;
- the project is created if no project has that title, with a labelling config made from the model's classes
  (`RectangleLabels`; `PolygonLabels` too when the batch has masks); an existing one made by the engine gets the
  classes or the polygon tool it lacks;
- one task per image: the image, the manifest's reason (shown above the image), and `batch_id` / `image_id`, which
  make a push idempotent: the tasks of the batch already in the project are read first and skipped;
- the model's detections are the task's prediction (`model_version`, the mean score, and each region's score).
  A detection with a mask is pre-annotated as the polygon of its mask's largest part (Label Studio's polygons have
  no holes and no second part, and a box beside it would be a second object to the annotator); one without, as a
  rectangle. Label Studio's coordinates are percentages of the image's width and height.

Pull (`dataengine import-labels --from labelstudio://HOST:PORT/PROJECT --batch B`): each task's completed
annotation (not skipped; the ground-truth one, else the newest) is turned into the records `importer._parse_coco`
makes, and goes through the same validation and the same durable, transactional import as a file
(`importer.import_records`). Tasks nobody has completed are reported and wait for the next pull; a pull that finds
exactly what the last one imported writes nothing.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from annotation_export.batch import ExportError, ExportResult, PreparedBatch, batch_location, ship_batch
from annotation_export.formats import BatchImage, BatchObject
from annotation_export.importer import ImportReport, LabelImportError, exported_batch, import_records
from annotation_export.labelstudio_client import (LabelStudioClient, LabelStudioError, ServerTarget,
                                                  parse_target)
from annotation_export.manifest import manifest_rows
from fdb import FeatureDB
from fdb import exports as export_store
from fdb import labels as label_store
from fdb import selections as selection_store
from records.hashing import sha256_hex

STAGING = "dataengine"  # under the document root: the folder the project's local-files storage points at
IMPORT_CHUNK = 200  # tasks per import request: one request per chunk, each a transaction on the server
IMAGE, BOX, POLYGON = "image", "box", "polygon"  # the names of the config's object and control tags


@dataclass(frozen=True)
class LabelStudioAccess:
    """How the engine reaches a Label Studio server, from the environment (`dataengine.config.labelstudio_access`):
    the token (`DATAENGINE_LABELSTUDIO_TOKEN`, never shown) and the server's local-files document root as the
    engine sees it (`DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT`, else `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`)."""

    token: str | None = field(default=None, repr=False)
    document_root: str | None = None


# ---------------------------------------------------------------------------------------------------- the config
def labeling_config(classes: list[str], polygons: bool) -> str:
    """The project's labelling config: the reason above the image, rectangles (not rotatable: the engine stores
    axis-aligned boxes) and, when the batch has masks, polygons, each with the model's classes."""
    view = ET.Element("View")
    ET.SubElement(view, "Header", value="$reason", size="6")
    ET.SubElement(view, "Image", name=IMAGE, value="$image", zoom="true")
    controls = [("RectangleLabels", BOX, {"canRotate": "false"})]
    if polygons:
        controls.append(("PolygonLabels", POLYGON, {}))
    for tag, name, extra in controls:
        control = ET.SubElement(view, tag, name=name, toName=IMAGE, **extra)
        for cls in classes:
            ET.SubElement(control, "Label", value=cls)
    return ET.tostring(view, encoding="unicode")


def _config_shape(config: str) -> tuple[list[str], bool] | None:
    """(the classes, whether it has the polygon tool) of a config the engine made; None for any other config."""
    try:
        view = ET.fromstring(config)
    except ET.ParseError:
        return None
    tags = {el.get("name"): el for el in view.iter() if el.get("name")}
    image, box = tags.get(IMAGE), tags.get(BOX)
    if image is None or image.tag != "Image" or box is None or box.tag != "RectangleLabels" \
            or box.get("toName") != IMAGE:
        return None
    poly = tags.get(POLYGON)
    return [lab.get("value") for lab in box.iter("Label")], poly is not None and poly.tag == "PolygonLabels"


def _ensure_project(client: LabelStudioClient, server: ServerTarget, classes: list[str], polygons: bool) -> dict:
    """The project titled `server.project`, created if missing; one the engine made gets what this batch needs."""
    project = client.find_project(server.project)
    if project is None:
        return client.create_project(server.project, labeling_config(classes, polygons),
                                     description="Batches from the gaze data engine: the model's detections as "
                                                 "predictions; why each image was chosen is shown above it.")
    shape = _config_shape(project.get("label_config") or "")
    if shape is None:
        raise ExportError(f"project {server.project!r} on {server.base_url} (id {project['id']}) has a labelling "
                          f"config the engine did not make (no RectangleLabels {BOX!r} on an Image {IMAGE!r}); push "
                          "to a new project title instead")
    have, has_polygons = shape
    missing = [c for c in classes if c not in have]
    if missing or (polygons and not has_polygons):
        project = client.update_project(project["id"], label_config=labeling_config(have + missing,
                                                                                     polygons or has_polygons))
    return project


def _ensure_storage(client: LabelStudioClient, project_id: int, folder: Path) -> None:
    """A local-files storage of the project on `folder`, so the server serves the staged images to it."""
    wanted = os.path.normpath(str(folder))
    if any(os.path.normpath(s.get("path") or "") == wanted for s in client.local_storages(project_id)):
        return
    client.create_local_storage(project_id, wanted, title="gaze data engine batches")


# ---------------------------------------------------------------------------------------------------- the tasks
def _pct(value: float, size: int) -> float:
    return round(100.0 * float(value) / size, 4)


def prediction_region(obj: BatchObject, im: BatchImage) -> dict:
    """One detection as a Label Studio region: its mask's largest polygon, or its box; in percent."""
    region = {"id": f"d{obj.rank}", "to_name": IMAGE, "original_width": im.width, "original_height": im.height,
              "image_rotation": 0, "score": round(float(obj.score or 0.0), 4)}
    if obj.polygons:
        poly = obj.polygons[0]  # largest first (formats.mask_polygons)
        points = [[_pct(poly[k], im.width), _pct(poly[k + 1], im.height)] for k in range(0, len(poly), 2)]
        return {**region, "from_name": POLYGON, "type": "polygonlabels",
                "value": {"points": points, "closed": True, "polygonlabels": [obj.category_name]}}
    x, y, w, h = obj.box
    return {**region, "from_name": BOX, "type": "rectanglelabels",
            "value": {"x": _pct(x, im.width), "y": _pct(y, im.height), "width": _pct(w, im.width),
                      "height": _pct(h, im.height), "rotation": 0, "rectanglelabels": [obj.category_name]}}


def task_for(prepared: PreparedBatch, im: BatchImage, row: dict) -> dict:
    """The task of one batch image: what the annotator sees (the image, the reason) and what ties it back (batch
    and image ids), with the model's detections as its prediction."""
    image_url = "/data/local-files/?d=" + quote(f"{STAGING}/{prepared.batch_id}/images/{im.file_name}")
    data = {"image": image_url, "reason": row.get("reason") or "", "batch_id": prepared.batch_id,
            "image_id": im.image_id, "file_name": im.file_name, "uri": im.uri, "rank": row.get("rank"),
            "error_types": ";".join(row.get("error_types") or []), "classes": ";".join(row.get("classes") or []),
            "selection_id": prepared.selection_id, "arm": prepared.info.arm}
    task: dict = {"data": data}
    if im.objects:
        scores = [float(o.score) for o in im.objects if o.score is not None]
        # The task's score is the mean of its regions': Label Studio orders by it ("prediction score" sampling).
        task["predictions"] = [{"model_version": prepared.model_version,
                                "score": round(sum(scores) / len(scores), 4) if scores else 0.0,
                                "result": [prediction_region(o, im) for o in im.objects]}]
    return task


def push_batch(fdb: FeatureDB, prepared: PreparedBatch, target: str, access: LabelStudioAccess) -> ExportResult:
    """Push a prepared batch to the Label Studio project `target` names (see the module's docstring). Refused
    before anything is recorded when the target, the token or the document root is wrong, or the server does not
    answer; a failure after the export started leaves it `in_progress`, and running it again completes it without
    a second task for any image."""
    try:
        server = parse_target(target)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    batch_id = prepared.batch_id
    batch_location(fdb, server.url, batch_id, "batch {} was already labelled")  # its refusal only
    staging = _staging_folder(access)
    with LabelStudioClient(server.base_url, access.token) as client:
        client.whoami()  # a dead server or a refused token fails here, with nothing recorded
        project = _ensure_project(client, server, [c["name"] for c in prepared.categories],
                                  any(o.polygons for im in prepared.images for o in im.objects))
        recorded = {"kind": "labelstudio", "url": server.url, "base_url": server.base_url,
                    "project": server.project, "project_id": project["id"], "staged": str(staging / batch_id)}
        export_store.start(fdb, batch_id, prepared.selection_id, prepared.model_version, prepared.min_score,
                           server.url, extra={"server": recorded})
        rows = manifest_rows(prepared.info, prepared.selected, {im.uri: im.file_name for im in prepared.images},
                             None, prepared.decisions)
        files, digests = ship_batch(batch_id, str(staging), str(staging / batch_id), prepared.documents(rows),
                                    {im.file_name: im.uri for im in prepared.images})
        _ensure_storage(client, project["id"], staging)
        present = {str((t.get("data") or {}).get("image_id"))
                   for t in client.tasks(project["id"], {"batch_id": batch_id})}
        row_of = {r["file_name"]: r for r in rows}
        new = [task_for(prepared, im, row_of[im.file_name]) for im in prepared.images if im.image_id not in present]
        added = 0
        for k in range(0, len(new), IMPORT_CHUNK):
            added += len(client.import_tasks(project["id"], new[k:k + IMPORT_CHUNK]))
    pushed = {**recorded, "tasks": len(prepared.images)}
    export_store.finish(fdb, batch_id, files=[{"path": f, "sha256": digests[f]} for f in files],
                        counts=prepared.counts, categories=prepared.categories, category_map=prepared.category_map,
                        images=prepared.image_records(), extra={"server": pushed})
    selection_store.mark_exported(fdb, prepared.selection_id, batch_id, prepared.image_ids)
    return ExportResult(batch_id, server.url, files, prepared.counts,
                        server={**pushed, "tasks_added": added, "tasks_present": len(present)})


def _staging_folder(access: LabelStudioAccess) -> Path:
    """`<document root>/dataengine`: where batches are staged for the server to serve."""
    root = access.document_root
    if not root or not Path(root).is_dir():
        raise ExportError(
            "pushing to Label Studio needs the folder its server serves local files from "
            + (f"({root!r} is not a folder)" if root else "(none set)")
            + ": set DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT to the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
              "as this machine sees it, and start the server with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true")
    staging = Path(root).resolve() / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    return staging


# ---------------------------------------------------------------------------------------------------- the pull
@dataclass
class Pulled:
    """What a pull read from the server: the label records (as `_parse_coco` makes them), the batch images
    without a completed annotation, and the canonical bytes of what was read (its sha256 names the version)."""

    records: list[dict]
    waiting: list[str]
    data: bytes
    problems: list[str] = field(default_factory=list)


def _chosen_annotation(task: dict) -> dict | None:
    """The task's completed annotation: skipped ones do not count; the ground truth wins, else the newest."""
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not done:
        return None
    return max(done, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or ""), a.get("id", 0)))


def _region_label(region: dict, im: dict, where: str) -> tuple[dict | None, str | None]:
    """(one region as an annotation record, or None when it is no instance label; a problem, or None)."""
    kind, value = region.get("type"), region.get("value") or {}
    if kind not in ("rectanglelabels", "polygonlabels"):
        return None, None  # relations, text areas, choices: not instance labels
    labels = value.get(kind) or []
    category = labels[0] if len(labels) == 1 else f"<{len(labels)} labels: {labels}>"
    width, height = im["width"], im["height"]
    ann = {"where": where, "category": category, "iscrowd": 0,
           "attributes": {"origin": region.get("origin") or "", "region": str(region.get("id") or "")}}
    try:
        if kind == "rectanglelabels":
            if abs(float(value.get("rotation") or 0.0)) > 1e-6:
                return None, f"{where}: a rectangle rotated by {value['rotation']} degrees (the engine stores " \
                             "axis-aligned boxes: turn it back, or draw a polygon)"
            x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
            w, h = float(value["width"]) * width / 100, float(value["height"]) * height / 100
            return {**ann, "bbox": [x, y, w, h], "segmentation": []}, None
        flat = [float(c) for p in value["points"] for c in (p[0] * width / 100, p[1] * height / 100)]
    except (KeyError, TypeError, ValueError, IndexError):
        return {**ann, "bbox": None, "segmentation": []}, None  # reported by the import's validation
    xs, ys = flat[0::2], flat[1::2]
    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)] if xs else None
    return {**ann, "bbox": bbox, "segmentation": [flat]}, None


def records_from_tasks(tasks: list[dict], export: dict) -> Pulled:
    """The batch's completed annotations as label records, the images still waiting, and what was read."""
    batch_id = export["_id"]
    image_of = {str(im["image_id"]): im for im in export.get("images", [])}
    records, problems, read, labelled = [], [], [], set()
    for task in sorted(tasks, key=lambda t: t["id"]):
        image_id = str((task.get("data") or {}).get("image_id"))
        im = image_of.get(image_id)
        if im is None:
            problems.append(f"task {task['id']}: image_id {image_id!r} is not in batch {batch_id}")
            continue
        ann = _chosen_annotation(task)
        if ann is None:
            continue
        rec = {"file_name": im["file_name"], "width": im["width"], "height": im["height"], "annotations": []}
        for region in ann.get("result") or []:
            where = f"task {task['id']} ({im['file_name']}), annotation {ann.get('id')}, region {region.get('id')}"
            label, problem = _region_label(region, im, where)
            if problem:
                problems.append(problem)
            if label is not None:
                label["attributes"]["annotation"] = str(ann.get("id"))
                label["attributes"]["annotator"] = str(ann.get("completed_by") or "")
                rec["annotations"].append(label)
        records.append(rec)
        labelled.add(im["file_name"])
        read.append({"task": task["id"], "annotation": ann.get("id"), "updated_at": ann.get("updated_at"),
                     "result": ann.get("result") or []})
    waiting = sorted({im["file_name"] for im in image_of.values()} - labelled)
    data = (json.dumps({"batch_id": batch_id, "annotations": read}, sort_keys=True, default=str) + "\n").encode()
    return Pulled(records, waiting, data, problems)


def pull_labels(fdb: FeatureDB, source: str, batch_id: str, access: LabelStudioAccess) -> ImportReport:
    """Import the completed annotations of batch `batch_id` from the Label Studio project `source` names as its
    next label version (see the module's docstring). `report.unlabelled`: the images still waiting."""
    try:
        server = parse_target(source)
    except ValueError as exc:
        raise LabelImportError(str(source).split("@")[-1], [str(exc)]) from None
    export = exported_batch(fdb, server.url, batch_id)
    pushed = export.get("server") or {}
    if pushed.get("kind") != "labelstudio":
        raise LabelImportError(server.url, [f"batch {batch_id} was not pushed to a Label Studio project (it went "
                                            f"to {export.get('target')!r}); import its label file instead"])
    if (pushed.get("base_url"), pushed.get("project")) != (server.base_url, server.project):
        raise LabelImportError(server.url, [f"batch {batch_id} was pushed to {pushed.get('url')}, not here"])
    with LabelStudioClient(server.base_url, access.token) as client:
        tasks = client.tasks(pushed["project_id"], {"batch_id": batch_id})
    pulled = records_from_tasks(tasks, export)
    if pulled.problems:
        raise LabelImportError(server.url, pulled.problems)
    if not pulled.records:
        raise LabelImportError(server.url, [f"no task of batch {batch_id} has a completed annotation yet "
                                            f"({len(pulled.waiting)} images waiting); nothing imported"])
    latest = label_store.latest_version(fdb, batch_id)
    if latest is not None and label_store.version_sha256(fdb, batch_id, latest) == sha256_hex(pulled.data):
        done = label_store.read_version(fdb, batch_id, latest)
        return ImportReport(batch_id, latest, len(done), sum(len(d["annotations"]) for d in done),
                            pulled.waiting, unchanged=True)
    report = import_records(fdb, export, pulled.records, pulled.data, server.url)
    report.unlabelled = pulled.waiting
    return report


def progress(export: dict, access: LabelStudioAccess, timeout: float = 60.0) -> dict:
    """A pushed batch's progress on its server: tasks with a completed annotation / tasks (a live read)."""
    pushed = export.get("server") or {}
    with LabelStudioClient(pushed["base_url"], access.token, timeout=timeout) as client:
        tasks = client.tasks(pushed["project_id"], {"batch_id": export["_id"]})
    return {"done": sum(1 for t in tasks if _chosen_annotation(t) is not None), "total": len(tasks)}


__all__ = ["LabelStudioAccess", "LabelStudioError", "labeling_config", "progress", "pull_labels", "push_batch",
           "records_from_tasks", "task_for"]
