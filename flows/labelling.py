"""A selection sent to the labelling team by hand, and the team's labels brought back: what `dataengine export`,
`dataengine import-labels` and `dataengine review-labels --import` do. Plain functions, no Prefect run."""

from __future__ import annotations

from dataclasses import dataclass

from annotation_export.config import ExportConfig
from annotation_export.export import ExportError, ExportResult, export_batch
from annotation_export.importer import ImportReport, LabelImportError, import_labels
from annotation_export.labelstudio_client import LabelStudioError
from annotation_export.review import apply_review
from dataengine.config import labelstudio_access, labelstudio_access_for
from fdb import StoreConfig, exports
from jobs.context import connection

# How the commands tell the refusals apart: the Label Studio server's (exit 3), a batch that cannot be made and
# labels that are not valid (exit 2).
SERVER_REFUSALS = (LabelStudioError,)
EXPORT_REFUSALS = (ExportError,)
IMPORT_REFUSALS = (LabelImportError,)


@dataclass(frozen=True)
class LabelsImported:
    report: ImportReport
    review: dict | None  # a review batch's corrections as the labelled set's next version (path, version, changes)


def export_selection(store: StoreConfig, selection_id: str, target: str, config: ExportConfig = ExportConfig(),
                     model_version: str | None = None) -> ExportResult:
    """The selection as a labelling batch under `target` (a folder, s3://bucket/prefix, or a Label Studio project
    reached with the environment's token), pre-annotated by `model_version` (default: production if it processed
    every image, else the selection's model)."""
    return export_batch(connection(store), selection_id, target, config, model_version=model_version,
                        labelstudio=labelstudio_access_for(target))


def import_batch_labels(store: StoreConfig, batch_id: str, labels: str | None = None,
                        source: str | None = None) -> LabelsImported:
    """The team's labels for an exported batch, from a file (`labels`: COCO json, CVAT xml or zip) or pulled from
    the Label Studio project it was pushed to (`source`), as its next label version. A review batch's
    corrections also become the next version of the labelled set it was cut from."""
    fdb = connection(store)
    if source is not None:
        from annotation_export.labelstudio import pull_labels  # the server's client: only for a pull

        report = pull_labels(fdb, source, batch_id, labelstudio_access())
    else:
        report = import_labels(fdb, labels, batch_id)
    return LabelsImported(report, apply_review(fdb, batch_id) if exports.is_review(fdb, batch_id) else None)
