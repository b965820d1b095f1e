"""Labelling: a selection goes to the team as a batch (a folder, s3:// or Label Studio), and its labels come back
as label versions. (A review batch of suspected label errors goes and comes back through `flows.review_labels`
and `flows.labelling`.)"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from annotation_export.config import ExportConfig
from annotation_export.export import ExportResult, export_batch
from annotation_export.importer import import_labels, labels_as_coco
from fdb import StoreConfig
from fdb import labels as label_store
from jobs.context import connection
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
