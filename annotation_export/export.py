"""Export a selection as a labelling batch, to where it is going: a folder, an S3 prefix, or a Label Studio
project. The batch itself is made and shipped in `annotation_export.batch` (its layout and the `_DONE` protocol are
described there); the server's push in `annotation_export.labelstudio`.

A selection held by a night waiting for its review is refused here, whoever asks (the CLI, the app, a flow): its one
batch goes where the night was told, when a person presses Export (`held_nights.export_held_night`).
"""

from __future__ import annotations

from pathlib import Path

from annotation_export.batch import (DONE, ExportError, ExportResult, NothingToExport, batch_location, prepare_batch,
                                     ship_batch)
from annotation_export.config import ExportConfig
from annotation_export.labelstudio import LabelStudioAccess, push_batch
from annotation_export.labelstudio_client import is_labelstudio
from annotation_export.manifest import manifest_rows
from fdb import FeatureDB
from fdb import exports as export_store
from fdb import runs as run_store
from fdb import selections as selection_store
from storage import s3 as s3mod

__all__ = ["DONE", "ExportError", "ExportResult", "HeldForReview", "NothingToExport", "export_batch"]


class HeldForReview(ExportError):
    """The selection is a held night's, still waiting for its review: only the night's own export ships it."""

    def __init__(self, night: run_store.HeldNight):
        self.night = night
        super().__init__(f"selection {night.selection_id} is night {night.night_id}, held for review "
                         f"({night.status}): export the night (the review app's Nights, `dataengine ui`), which "
                         f"ships it to {night.target}")


def refuse_held_selection(fdb: FeatureDB, selection_id: str, held_night: str | None = None) -> None:
    """Raises HeldForReview when `selection_id` is a waiting night's, unless this export is that night's own."""
    night = run_store.night_of_selection(fdb, selection_id)
    if night is not None and night.waiting and night.night_id != held_night:
        raise HeldForReview(night)


def export_batch(fdb: FeatureDB, selection_id: str, target: str | Path, config: ExportConfig = ExportConfig(),
                 model_version: str | None = None, s3_client=None, labelstudio=None,
                 held_night: str | None = None) -> ExportResult:
    """Export the images of `selection_id` with the model's predictions (score >= `config.min_score`) as a batch
    under `target` (a folder, `s3://bucket/prefix`, or a Label Studio project `labelstudio://HOST:PORT/PROJECT`,
    reached with `labelstudio`, an `annotation_export.labelstudio.LabelStudioAccess`). Images a person rejected
    (`fdb.selections.decide`) are left out, and listed with who rejected them and when under `rejected` in
    manifest.json; with `config.only_accepted`, so are the images nobody accepted (under `not_accepted`). From the
    start of the export on, the selection's decisions are final. Safe to run again after a failure or a success.
    A held night's selection is refused (HeldForReview) unless `held_night` names that night (its own export)."""
    target = str(target)
    refuse_held_selection(fdb, selection_id, held_night)
    if is_labelstudio(target):
        return push_batch(fdb, prepare_batch(fdb, selection_id, config, model_version), target,
                          labelstudio or LabelStudioAccess())
    prepared = prepare_batch(fdb, selection_id, config, model_version)
    batch, batch_id = prepared.images, prepared.batch_id
    location = batch_location(fdb, target, batch_id, "batch {} was already labelled")
    is_s3 = location.startswith("s3://")
    export_store.start(fdb, batch_id, selection_id, prepared.model_version, prepared.min_score, location)

    file_names = {im.uri: im.file_name for im in batch}
    client = (s3_client or s3mod.s3_client()) if is_s3 else None
    presigned = ({im.file_name: s3mod.presign_get(f"{location}/images/{im.file_name}", config.presign_expires,
                                                  client)
                  for im in batch} if is_s3 else None)
    rows = manifest_rows(prepared.info, prepared.selected, file_names, presigned, prepared.decisions)
    files, digests = ship_batch(batch_id, target, location, prepared.documents(rows),
                                {im.file_name: im.uri for im in batch}, client)
    export_store.finish(fdb, batch_id, files=[{"path": f, "sha256": digests[f]} for f in files],
                        counts=prepared.counts, categories=prepared.categories, category_map=prepared.category_map,
                        images=prepared.image_records())
    selection_store.mark_exported(fdb, selection_id, batch_id, prepared.image_ids)
    return ExportResult(batch_id, location, files, prepared.counts)
