"""The re-annotation queue: labelled images whose labels are suspected, sent back to the team to correct.

A review batch has the layout of a labelling batch (`annotation_export.export`): CVAT for images 1.1 XML, COCO 1.0,
the images, a manifest and `_DONE`. Each image carries its current labels *and* the model's predictions that
disagree with them, told apart twice over: CVAT's `source` ("manual" for a label, "auto" for a prediction) and an
`origin` attribute ("label" / "prediction"); a `suspect` attribute names what is suspected of the object. The
annotators fix the labels and delete the predictions that are wrong; whatever the returned file holds is the
truth for those images (a kept prediction is an accepted one, as with any pre-annotation).

The corrections come back through the usual import (`importer.import_labels`, a new label version of the batch),
then `apply_review` writes the next version of the labelled set: a new COCO file beside the reviewed one, where
the reviewed images' annotations are replaced, every other image kept as it was. The old file is never changed.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from annotation_export.changes import label_changes
from annotation_export.batch import (
    COCO_JSON,
    CVAT_XML,
    ExportError,
    ExportResult,
    batch_location,
    ship_batch,
)
from annotation_export.formats import (
    BatchImage,
    BatchObject,
    coco_json,
    cvat_xml,
    export_categories,
    unique_file_names,
)
from fdb import FeatureDB, labelled_sets
from fdb import exports as export_store
from fdb import images as image_store
from fdb import label_errors as suspect_store
from fdb import labels as label_store
from records.coco import CocoSet
from records.hashing import file_sha256, sha256_hex
from storage import s3 as s3mod

MANIFEST_COLUMNS = ["file_name", "uri", "coco_image_id", "suspects", "labelled_set", "labels_sha256",
                    "model_version", "predictions"]


def review_batch_id(labels_sha256: str, suspect_ids: list) -> str:
    key = "\x1f".join([labels_sha256, *sorted(map(str, suspect_ids))])
    return "review-" + sha256_hex(key)[:12]


def export_review_batch(fdb: FeatureDB, ground_truth: CocoSet, model_version: str | list[str], target: str | Path,
                        params_key: str | None = None, s3_client=None) -> ExportResult:
    """Export the images of `ground_truth` with suspected label errors (judged by `model_version`, or by its
    fold models, on this very version of the file, with the judgment `params_key` names when given; recorded in
    fdb) as a review batch under `target` (a folder or s3:// prefix)."""
    labels_sha = file_sha256(ground_truth.path)
    suspects = suspect_store.read_suspects(fdb, model_version, labels_sha256=labels_sha, params_key=params_key)
    if not suspects:
        raise ExportError(f"no suspected label errors of {ground_truth.path} (sha256 {labels_sha[:12]}) judged "
                          f"by {model_version} in fdb: judge the labelled set first")
    by_image: dict[int, list[dict]] = {}
    for s in suspects:
        by_image.setdefault(int(s["coco_image_id"]), []).append(s)
    cats, mapping = export_categories(ground_truth.categories)
    batch, rows, docs = _review_images(fdb, ground_truth, by_image, cats, mapping, labels_sha)

    batch_id = review_batch_id(labels_sha, [s["_id"] for s in suspects])
    target = str(target)
    location = batch_location(fdb, target, batch_id, "review batch {} was already corrected")
    is_s3 = location.startswith("s3://")
    judges = sorted({s["model_version"] for s in suspects})
    export_store.start(fdb, batch_id, None, " + ".join(judges), None, location, kind="review", extra={
        "labelled_set": str(Path(ground_truth.path).resolve()), "image_dir": str(ground_truth.image_dir),
        "labels_sha256": labels_sha})
    client = (s3_client or s3mod.s3_client()) if is_s3 else None
    files, digests = ship_batch(batch_id, target, location, _review_files(batch_id, batch, cats, rows),
                                {im.file_name: im.uri for im in batch}, client)
    counts = {"images": len(batch), "labels": sum(o.source == "manual" for im in batch for o in im.objects),
              "predictions": sum(o.source == "auto" for im in batch for o in im.objects),
              "suspects": len(suspects)}
    export_store.finish(fdb, batch_id, files=[{"path": f, "sha256": digests[f]} for f in files], counts=counts,
                        categories=cats, category_map=mapping,
                        images=[{"image_id": docs[im.uri]["_id"], "uri": im.uri, "file_name": im.file_name,
                                 "width": im.width, "height": im.height, "coco_image_id": row["coco_image_id"]}
                                for im, row in zip(batch, rows)])
    return ExportResult(batch_id, location, files, counts)


def _review_images(fdb: FeatureDB, ground_truth: CocoSet, by_image: dict[int, list[dict]], cats: list[dict],
                   mapping: dict, labels_sha: str) -> tuple[list[BatchImage], list[dict], dict]:
    """(the batch's images, their manifest rows, fdb's image records by uri) of every image with suspects, in the
    order of their file names."""
    name_of = {c["id"]: c["name"] for c in cats}
    uris = {cid: str(ground_truth.image_path(cid).resolve()) for cid in by_image}
    names = unique_file_names(list(uris.values()))
    docs = image_store.by_uri(fdb, uris.values())
    batch, rows = [], []
    for cid in sorted(by_image, key=lambda c: names[uris[c]]):
        image = _review_image(ground_truth, cid, by_image[cid], str(docs[uris[cid]]["_id"]), uris[cid],
                              names[uris[cid]], mapping, name_of)
        batch.append(image)
        rows.append(_manifest_row(image, cid, by_image[cid], ground_truth, labels_sha))
    return batch, rows, docs


def _review_image(ground_truth: CocoSet, cid: int, suspects: list[dict], image_id: str, uri: str, file_name: str,
                  mapping: dict, name_of: dict) -> BatchImage:
    """One image to review: its current labels ("manual", origin=label, with what each is suspected of), then the
    model's predictions that disagree with them ("auto", origin=prediction)."""
    im = ground_truth.images[cid]
    accused: dict = {}
    for s in suspects:
        if s.get("gt_id") is not None:
            accused.setdefault(s["gt_id"], []).append(s["type"])
    image = BatchImage(image_id, uri, file_name, int(im["width"]), int(im["height"]))
    for rank, ann in enumerate(ground_truth.annotations_by_image[cid]):
        seg = ann.get("segmentation")
        polygons = [list(map(float, p)) for p in seg] if isinstance(seg, list) else []
        image.objects.append(BatchObject(
            rank, mapping[ann["category_id"]], name_of[mapping[ann["category_id"]]], list(map(float, ann["bbox"])),
            None, polygons, float(ann.get("area") or ann["bbox"][2] * ann["bbox"][3]), source="manual",
            attributes={"origin": "label", "suspect": ";".join(sorted(set(accused.get(ann["id"], []))))}))
    predictions = [s for s in suspects if s.get("detection_id") is not None]
    for rank, s in enumerate(predictions, start=len(image.objects)):
        _, _, w, h = s["bbox"]
        image.objects.append(BatchObject(
            rank, mapping[s["category_id"]], name_of[mapping[s["category_id"]]], [float(v) for v in s["bbox"]],
            float(s["score"]), [], float(w * h), source="auto",
            attributes={"origin": "prediction", "suspect": s["type"]}))
    return image


def _manifest_row(image: BatchImage, cid: int, suspects: list[dict], ground_truth: CocoSet, labels_sha: str) -> dict:
    """One image's manifest row: what is suspected there and why, and the labelled set and judge it came from."""
    return {"file_name": image.file_name, "uri": image.uri, "coco_image_id": cid,
            "suspects": [{"type": s["type"], "suspicion": round(float(s["suspicion"]), 4), "why": s["why"],
                          "label_id": s.get("gt_id"), "label_class": s.get("gt_category_name"),
                          "predicted_class": s.get("category_name") if s.get("detection_id") is not None
                          else None, "score": s.get("score"), "iou": round(float(s["iou"]), 3)}
                         for s in suspects],
            "labelled_set": str(Path(ground_truth.path).resolve()), "labels_sha256": labels_sha,
            "model_version": suspects[0]["model_version"],
            "predictions": suspects[0].get("predictions")}


def _review_files(batch_id: str, batch: list[BatchImage], cats: list[dict], rows: list[dict]) -> dict[str, bytes]:
    """The batch's label files by name: CVAT XML, COCO JSON and the manifest (JSON and CSV)."""
    return {CVAT_XML: cvat_xml(batch, cats, task_name=f"{batch_id} (review of suspected label errors)"),
            COCO_JSON: coco_json(batch, cats), "manifest.json": _manifest_json(rows),
            "manifest.csv": _manifest_csv(rows)}


def _manifest_json(rows: list[dict]) -> bytes:
    return (json.dumps({"how_to_review": "Fix the labels (origin=label) and delete every prediction (origin="
                                         "prediction) that is wrong: what the returned file holds is the truth.",
                        "images": rows}, sort_keys=True, indent=1, default=str) + "\n").encode()


def _manifest_csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "suspects": ";".join(f"{s['type']}:{s['suspicion']}" for s in row["suspects"])})
    return buf.getvalue().encode()


# ---------------------------------------------------------------------------------------------------- back
def apply_review(fdb: FeatureDB, batch_id: str) -> dict:
    """The corrected labels of review batch `batch_id` (its newest label version) as the next version of the
    labelled set it was cut from: a new COCO file `<stem>.v<N>.json` beside it, recorded in `labelled_sets`.
    Returns that record (`path`, `version`, `changes`). Applying the same labels again changes nothing."""
    export = export_store.get(fdb, batch_id)
    if export is None or export.get("kind") != "review":
        raise LookupError(f"no review batch {batch_id!r} in fdb")
    label_version = label_store.latest_version(fdb, batch_id)
    if label_version is None:
        raise LookupError(f"review batch {batch_id}: no corrected labels imported yet")
    reviewed = export["labelled_set"]
    base = labelled_sets.newest_path(fdb, reviewed)  # corrections of another review may have landed meanwhile
    coco = json.loads(Path(base).read_text())
    by_image_id = {str(im["image_id"]): im for im in export["images"]}
    corrected = {by_image_id[str(d["image_id"])]["coco_image_id"]: d
                 for d in label_store.read_version(fdb, batch_id, label_version)}
    known_ids = {im["id"] for im in coco["images"]}
    lost = sorted(set(corrected) - known_ids)
    if lost:
        raise ValueError(f"review batch {batch_id}: images {lost} are not in {base}")
    old = [a for a in coco["annotations"] if a["image_id"] in corrected]
    kept = [a for a in coco["annotations"] if a["image_id"] not in corrected]
    next_id = max((a["id"] for a in coco["annotations"]), default=0) + 1
    new, changes = [], {"images": len(corrected), "kept": 0, "moved": 0, "relabelled": 0, "removed": 0,
                        "added": 0}
    for cid in sorted(corrected):
        anns = []
        for ann in corrected[cid]["annotations"]:
            anns.append({"id": next_id, "image_id": cid, "category_id": int(ann["category_id"]),
                         "bbox": [float(v) for v in ann["bbox"]], "area": float(ann.get("area") or 0.0),
                         "segmentation": ann.get("segmentation") or [], "iscrowd": int(ann.get("iscrowd", 0))})
            next_id += 1
        for key, n in label_changes([a for a in old if a["image_id"] == cid], anns).items():
            changes[key] += n
        new += anns
    coco["annotations"] = sorted(kept + new, key=lambda a: (a["image_id"], a["id"]))
    data = (json.dumps(coco, indent=1) + "\n").encode()
    versions = labelled_sets.versions(fdb, reviewed)
    sha = sha256_hex(data)
    same = next((v for v in versions if v["sha256"] == sha), None)
    if same is not None:
        return same
    out = Path(labelled_sets.next_path(fdb, reviewed))
    out.write_bytes(data)
    return labelled_sets.add_version(fdb, reviewed, out, source=f"review {batch_id}, labels v{label_version}",
                                     changes=changes)

