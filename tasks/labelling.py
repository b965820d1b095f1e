"""Labelling: a selection goes to the team as a batch (a folder, s3:// or Label Studio), a review batch of
suspected label errors too, and their labels come back as label versions."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from annotation_export.config import ExportConfig
from annotation_export.export import ExportResult, export_batch
from annotation_export.importer import ImportReport, import_labels, labels_as_coco
from annotation_export.review import apply_review, export_review_batch
from fdb import StoreConfig
from fdb import labels as label_store
from jobs.context import connection, newest_labels
from records.coco import load_coco
from tasks.retries import IO_RETRIES


@task(name="export to the labelling queue", **IO_RETRIES)
def export(store: StoreConfig, selection_id: str, target: str | None = None,
           config: ExportConfig = ExportConfig(), labelstudio=None) -> ExportResult:
    """The selection as a CVAT + COCO batch with pre-annotations and a manifest, under a folder or s3:// prefix
    (default: `exports/` in the data home), or as tasks in a Label Studio project (`labelstudio://`, reached with
    `labelstudio`, from `dataengine.config.labelstudio_access`). Idempotent: the batch id derives from the
    selection."""
    return export_batch(connection(store), selection_id, target or Path(store.home) / "exports", config,
                        labelstudio=labelstudio)


@task(name="export the review batch", **IO_RETRIES)
def export_review(store: StoreConfig, model_version: str | list[str], gt_json: str, gt_images: str | None = None,
                  target: str | None = None, params_key: str | None = None) -> ExportResult:
    """The labelled images with suspected label errors, their labels and the disagreeing predictions, as a
    CVAT + COCO batch for the team to correct (default: `exports/` in the data home)."""
    ground_truth = load_coco(newest_labels(store, gt_json), image_dir=gt_images)
    return export_review_batch(connection(store), ground_truth, model_version,
                               target or Path(store.home) / "exports", params_key=params_key)


@task(name="import the corrected labels", **IO_RETRIES)
def import_review(store: StoreConfig, labels_path: str, batch_id: str) -> tuple[ImportReport, dict]:
    """The team's corrections of a review batch: a label version of the batch, then the next version of the
    labelled set it came from (what evaluation, mining and retraining read from then on): the import's report
    and the labelled set's new version (`path`, `version`, `changes`)."""
    fdb = connection(store)
    report = import_labels(fdb, labels_path, batch_id)
    return report, apply_review(fdb, batch_id)


@task(name="import the team's labels", **IO_RETRIES)
def import_batch_labels(store: StoreConfig, labels_path: str, batch_id: str, skip_if_labelled: bool = False) -> dict:
    """Labels for an exported batch become its next label version (nothing is written unless all are valid).
    `skip_if_labelled` keeps a batch that already has labels as it is (a resumed run)."""
    fdb = connection(store)
    existing = label_store.latest_version(fdb, batch_id) if skip_if_labelled else None
    if existing is not None:
        return {"batch_id": batch_id, "label_version": existing, "skipped": True}
    report = import_labels(fdb, labels_path, batch_id)
    return {"batch_id": report.batch_id, "label_version": report.label_version, "images": report.images,
            "annotations": report.annotations}


@task(name="labels of a batch", **IO_RETRIES)
def batch_labels(store: StoreConfig, batch_id: str, image_dir: str) -> tuple[list, list]:
    """A batch's newest labels as COCO images and annotations, ready to be merged into a training set."""
    return labels_as_coco(connection(store), batch_id, image_dir)
