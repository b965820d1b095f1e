"""A night held for review ships from here, when a person presses Export (`dataengine ui`).

The nightly flow with `hold_for_review` records its selection `awaiting_review` with the target and export
options it was given (`fdb.runs`), and exports nothing. A person accepts or rejects its images in the review app,
then exports: the batch goes to the night's recorded target with the night's options, never the app's. One batch
per night: the export is claimed atomically first, so a second press (or a concurrent one) answers with the batch
the first made, or that it is being made; and the batch id derives from the selection's decisions, which the
export freezes. A night whose images were all rejected ends `rejected`, with no batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from annotation_export.config import ExportConfig
from annotation_export.export import ExportResult, NothingToExport, export_batch
from fdb import FeatureDB
from fdb import runs as run_store
from fdb.runs import HeldNight, NightNotWaiting

__all__ = ["HeldNight", "NightExport", "NightNotWaiting", "export_held_night"]


@dataclass(frozen=True)
class NightExport:
    """What pressing Export did: the night as it now stands, its batch (None: every image was rejected), and
    whether an earlier press had already finished it (this one then made nothing)."""

    night: HeldNight
    export: ExportResult | None
    already_done: bool


def export_held_night(fdb: FeatureDB, night_id: str, by: str, s3_client=None, labelstudio=None) -> NightExport:
    """Export the held night `night_id` as its one batch, to its recorded target with its recorded options
    (`labelstudio`, a `LabelStudioAccess`, reaches a `labelstudio://` target).
    Raises LookupError (no such held night) or NightNotWaiting (another press is exporting it); an export that
    fails (ExportError, a storage error) leaves the night waiting for the next press, and raises."""
    night = run_store.claim_held_export(fdb, night_id, by)
    if night.status != run_store.EXPORTING:  # finished by an earlier press: answer with what it made
        batch = (night.result or {}).get("export")
        return NightExport(night, ExportResult.from_doc(batch) if batch else None, already_done=True)
    config = recorded_config(night)
    try:
        result = export_batch(fdb, night.selection_id, night.target, config, s3_client=s3_client,
                              labelstudio=labelstudio, held_night=night_id)
    except NothingToExport:
        result = None
    except BaseException:
        run_store.release_held_export(fdb, night)
        raise
    status = run_store.EXPORTED if result is not None else run_store.REJECTED
    record = {**(night.report or {}), "export": result.as_doc() if result is not None else None}
    return NightExport(run_store.finish_held_export(fdb, night_id, status, record), result, already_done=False)


def recorded_config(night: HeldNight) -> ExportConfig:
    """The export options the night was given (options a newer version added keep their defaults)."""
    known = {f.name for f in fields(ExportConfig)}
    return ExportConfig(**{k: v for k, v in night.export_config.items() if k in known})
