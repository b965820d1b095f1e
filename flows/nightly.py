"""The scheduled nightly flow: new imagery in, hard cases out.

ingest and detect the new images (a folder or an s3:// prefix) with the production model (feature taps into fdb)
-> detect on the labelled set and mine the pool with the model's errors there -> export the selection (CVAT +
COCO with pre-annotations, a manifest of why) to the labelling queue, a folder or an s3:// prefix.
Incremental: the images root is listed from the last complete night's mark (fdb.listings), the pool index grows by
the night's vectors (fdb.pool_index), and only images this model has not processed cost anything; a second run with nothing new (same images,
labels, model and parameters) is a no-op that returns the night's batch; a crash is finished by the next run
without duplicates. One batch per night however a run ends: the night's selection is recorded before its export,
and a run that finds it recorded exports that selection (the idempotent step) instead of mining again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact

from annotation_export.config import ExportConfig
from annotation_export.export import ExportResult
from dataengine.config import store_config
from detectors.config import DetectConfig
from flows.runners import build_task_runner, check_workers
from mining.config import MatchConfig, MiningConfig
from mining.selection import MiningSummary
from tasks import (detect, detect_labelled, export, list_new_images, mine, nightly_state, record_export_intent,
                   record_listing, record_night, resolve_model)
from jobs.detect import DetectReport


@dataclass
class NightReport:
    """What a night did: its detection (every chunk added up), its selection, and its batch (None: nothing to
    export). Recorded in fdb as `as_doc` writes it; a second run with nothing new returns the recorded one."""

    model_version: str
    detect: DetectReport
    mine: MiningSummary
    export: ExportResult | None

    def as_doc(self) -> dict:
        return {"model_version": self.model_version, "detect": self.detect.as_dict(), "mine": self.mine.as_dict(),
                "export": self.export.summary() if self.export else None}

    @classmethod
    def from_doc(cls, doc: dict) -> "NightReport":
        detected = DetectReport.from_dict({"model_version": doc["model_version"], **doc["detect"]})
        return cls(doc["model_version"], detected, MiningSummary.from_dict(doc["mine"]),
                   ExportResult.from_summary(doc["export"]) if doc.get("export") else None)


@flow(name="nightly", task_runner=build_task_runner())
def nightly(images: str, gt_json: str, gt_images: str | None = None, model_version: str | None = None,
            pattern: str = "*", mining: MiningConfig = MiningConfig(), match: MatchConfig = MatchConfig(),
            detection: DetectConfig = DetectConfig(), export_config: ExportConfig = ExportConfig(),
            export_to: str | None = None, chunk_size: int = 64, allow_links_out: bool = False,
            full_listing: bool = False) -> NightReport:
    """Detection runs in chunks of `chunk_size` images, one task each: the unit a Dask worker takes, and the
    unit of progress in the logs. Only files under `images` are read (`allow_links_out` follows links out).
    `images` is listed from where the last complete night left off; `full_listing` lists all of it (the weekly
    reconciliation: S3 objects written under keys that sort before the mark)."""
    logger = get_run_logger()
    workers = check_workers()  # on a Dask cluster: every worker imports the project, or the run fails now
    if workers:
        logger.info("Dask cluster: %d workers can run the tasks", len(workers))
    store = store_config()
    version = resolve_model(store, model_version)
    listing = list_new_images(store, images, pattern, version, allow_links_out, full_listing)
    new = listing.uris
    logger.info("%d new images under %s for model %s (%d listed%s)", len(new), images, version, listing.listed,
                "" if listing.since is None else " since the last night's mark")
    chunks = [new[i:i + chunk_size] for i in range(0, len(new), chunk_size)]
    detected = DetectReport(version)
    for n, future in enumerate(detect.map(unmapped(store), unmapped(version), chunks, unmapped(detection)), start=1):
        detected += future.result()
        logger.info("detection: %d/%d chunks, %d/%d images", n, len(chunks), detected.images_processed, len(new))
    record_listing(store, listing)  # every listed image is detected (or quarantined): list from here next time
    state, night = nightly_state(store, version, gt_json, {"mining": mining.as_dict(), "match": match.as_dict(),
                                                           "pattern": pattern, "export_to": export_to})
    if night is not None and night["status"] == "done":
        previous = NightReport.from_doc(night["result"])
        logger.info("nothing new since selection %s (batch %s): no new mining or export", previous.mine.selection_id,
                    previous.export.batch_id if previous.export else None)
        return replace(previous, detect=detected)
    if night is not None:  # an earlier run recorded this night's selection and stopped before the end
        mined = MiningSummary.from_dict(night["mine"])
        logger.info("finishing the night of selection %s: exporting it (idempotent)", mined.selection_id)
    else:
        detect_labelled(store, version, gt_json, gt_images, detection)
        mined = record_export_intent(store, state, mine(store, version, gt_json, gt_images, mining, match))
    exported = export(store, mined.selection_id, export_to, export_config) if mined.selected else None
    create_markdown_artifact(key="nightly-selection", markdown=_summary(version, detected, mined, exported),
                             description="Nightly hard-case selection")
    result = NightReport(version, detected, mined, exported)
    record_night(store, state, result.as_doc())
    return result


def _summary(version: str, detected: DetectReport, mined: MiningSummary, exported: ExportResult | None) -> str:
    lines = [f"# Nightly run, model `{version}`", "",
             f"Detected {detected.images_processed} new images ({len(detected.quarantined)} quarantined), "
             f"{detected.detections} detections.", "", "## Errors on the labelled set", "",
             "```", mined.error_table, "```", "",
             f"Selection `{mined.selection_id}`: {mined.selected} images from {mined.queries} queries; "
             f"random arm `{mined.random_selection_id}`.", "",
             (f"Exported as batch `{exported.batch_id}` ({exported.images} images, {exported.counts.get('objects')} "
              f"pre-annotations) to `{exported.location}`." if exported else "Nothing to export."), "",
             "| image | why |", "|---|---|"]
    lines += [f"| {uri} | {reason} |" for uri, reason in mined.top]
    return "\n".join(lines)
