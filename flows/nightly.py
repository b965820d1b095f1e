"""The scheduled nightly flow: new imagery in, hard cases out.

ingest and detect the new images (a folder or an s3:// prefix) with the production model (feature taps into fdb)
-> detect on the labelled set, bring the pool index up to date, and mine the pool with the model's errors on the
labelled set -> export the selection (CVAT + COCO with pre-annotations, a manifest of why) to the labelling queue,
a folder or an s3:// prefix.
Incremental: the images root is listed from the last complete night's mark (fdb.listings), the pool index is brought
up to date with the night's vectors before mining (fdb.pool_index), and only images this model has not processed
cost anything; a second run with nothing new (same images, labels, model and parameters) is a no-op that returns
the night's batch; a crash is finished by the next run without duplicates. One batch per night however a run
ends: the night's selection is recorded before its export, and a run that finds it recorded exports that selection
(the idempotent step) instead of mining again.
With `hold_for_review` the night records its selection `awaiting_review` (with its target and export options) and
exports nothing: a person curates it in the review app and presses Export there (annotation_export.held_nights).
While a night waits, later nights still detect their images but do not mine: the waiting selection's images are
still in the pool, so a new selection would overlap it (and a second batch would be queued behind the review).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact

from annotation_export.config import ExportConfig
from annotation_export.export import ExportResult
from dataengine.config import labelstudio_access_for, store_config
from detectors.config import DetectConfig
from fdb import StoreConfig
from fdb.listings import NewImages
from fdb.runs import HeldNight, NightHold
from flows.runners import build_task_runner, check_workers
from jobs.detect import DetectReport
from mining.config import MatchConfig, MiningConfig
from mining.selection import MiningSummary
from tasks.detect import detect, detect_labelled, list_new_images, record_listing
from tasks.index import update_pool_index
from tasks.labelling import export
from tasks.mine import mine, read_labelled_set
from tasks.models import resolve_model
from tasks.night import nightly_state, record_export_intent, record_night

@dataclass
class NightReport:
    """What a night did: its detection (every chunk added up), its selection (None: it did not mine, because
    `review` names a night still waiting for its review), and its batch (None: nothing exported). `review`: the
    night held for review, this one (its selection waits for a person) or an earlier one (this night did not mine).
    Recorded in fdb as `as_doc` writes it; a second run with nothing new returns the recorded one."""

    model_version: str
    detect: DetectReport
    mine: MiningSummary | None
    export: ExportResult | None
    review: HeldNight | None = None

    @property
    def held(self) -> bool:
        """This night's own selection waits for a review."""
        return self.review is not None and self.mine is not None and self.review.selection_id == self.mine.selection_id

    def as_doc(self) -> dict:
        return {"model_version": self.model_version, "detect": self.detect.as_doc(),
                "mine": self.mine.as_doc() if self.mine else None,
                "export": self.export.as_doc() if self.export else None}

    @classmethod
    def from_doc(cls, doc: dict) -> "NightReport":
        detected = DetectReport.from_doc({"model_version": doc["model_version"], **doc["detect"]})
        return cls(doc["model_version"], detected, MiningSummary.from_doc(doc["mine"]) if doc.get("mine") else None,
                   ExportResult.from_doc(doc["export"]) if doc.get("export") else None)


@flow(name="nightly", task_runner=build_task_runner())
def nightly(images: str, gt_json: str, gt_images: str | None = None, model_version: str | None = None,
            pattern: str = "*", mining: MiningConfig = MiningConfig(), match: MatchConfig = MatchConfig(),
            detection: DetectConfig = DetectConfig(), export_config: ExportConfig = ExportConfig(),
            export_to: str | None = None, chunk_size: int = 64, allow_links_out: bool = False,
            full_listing: bool = False, hold_for_review: bool = False) -> NightReport:
    """Detection runs in chunks of `chunk_size` images, one task each: the unit a Dask worker takes, and the
    unit of progress in the logs. Only files under `images` are read (`allow_links_out` follows links out).
    `images` is listed from where the last complete night left off; `full_listing` lists all of it (the weekly
    reconciliation: S3 objects written under keys that sort before the mark). `hold_for_review`: the selection
    waits, `awaiting_review`, for a person to curate and export it in the review app (to `export_to`)."""
    check_workers()  # on a Dask cluster: every worker imports the project, or the run fails now
    store = store_config()
    version = resolve_model(store, model_version)
    listing = list_new_images(store, images, pattern, version, allow_links_out, full_listing)
    detected = detect_in_chunks(store, version, listing, detection, chunk_size)
    record_listing(store, listing)  # every listed image is detected (or quarantined): list from here next time
    labelled = read_labelled_set(store, gt_json, gt_images)
    night = nightly_state(store, version, labelled, {"mining": mining.as_dict(), "match": match.as_dict(),
                                                     "pattern": pattern, "export_to": export_to})
    if night.done is not None:  # nothing new since that night: no new mining or export
        return _done_already(night.done, detected)
    if night.waiting is not None:  # its images are still in the pool: mining now would select them again
        return _reported(NightReport(version, detected, None, None, review=night.waiting))
    mined, held = night.selection, None  # an earlier run recorded tonight's selection and stopped: export it
    if mined is None:
        detect_labelled(store, version, labelled, detection)
        update_pool_index(store, version, mining)
        mined = mine(store, version, labelled, mining, match)
        hold = _hold(NightReport(version, detected, mined, None), export_to, export_config) if hold_for_review else None
        mined, held = record_export_intent(store, night.key, mined, hold)
    if held is not None:  # tonight's selection waits for a person: nothing is exported
        return _reported(NightReport(version, detected, mined, None, review=held))
    exported = export(store, mined.selection_id, export_to, export_config,
                      labelstudio_access_for(export_to)) if mined.selected else None
    report = _reported(NightReport(version, detected, mined, exported))
    record_night(store, night.key, report.as_doc())
    return report


def detect_in_chunks(store: StoreConfig, version: str, listing: NewImages, detection: DetectConfig,
                     chunk_size: int) -> DetectReport:
    """The listed images through the detect task in chunks of `chunk_size` (on Dask workers when the flow runs
    there), every chunk's report added up, with a log line per chunk."""
    logger = get_run_logger()
    new = listing.uris
    chunks = [new[i:i + chunk_size] for i in range(0, len(new), chunk_size)]
    detected = DetectReport(version)
    for n, future in enumerate(detect.map(unmapped(store), unmapped(version), chunks, unmapped(detection)), start=1):
        detected += future.result()
        logger.info("detection: %d/%d chunks, %d/%d images", n, len(chunks), detected.images_processed, len(new))
    return detected


def _hold(report: NightReport, export_to: str | None, export_config: ExportConfig) -> NightHold | None:
    """What a night held for review records beside its selection (None for an empty selection: there is nothing
    to review, and it ships, empty, now)."""
    if not report.mine.selected:
        return None
    return NightHold(export_to, asdict(export_config), report.as_doc())


def _done_already(result: dict, detected: DetectReport) -> NightReport:
    """The finished night's report, with tonight's detection."""
    previous = NightReport.from_doc(result)
    get_run_logger().info("nothing new since selection %s (batch %s): no new mining or export",
                          previous.mine.selection_id if previous.mine else None,
                          previous.export.batch_id if previous.export else None)
    return replace(previous, detect=detected)


def _reported(night: NightReport) -> NightReport:
    """The night's summary as a Prefect artifact; a night that stopped before its export says why in the log."""
    logger, review = get_run_logger(), night.review
    if night.mine is None:
        logger.warning("not mining: night %s (selection %s, held %s) is %s; export it in the review app "
                       "(dataengine ui, /nights)", review.night_id, review.selection_id, review.held_at,
                       review.status.replace("_", " "))
    elif night.held:
        logger.info("selection %s (%d images) held for review: nothing exported; its batch goes to %s when a "
                    "person exports it in the review app", night.mine.selection_id, night.mine.selected,
                    review.target)
    create_markdown_artifact(key="nightly-selection", markdown=_summary(night), description="Nightly hard-case selection")
    return night


def _summary(night: NightReport) -> str:
    detected, mined, exported, review = night.detect, night.mine, night.export, night.review
    lines = [f"# Nightly run, model `{night.model_version}`", "",
             f"Detected {detected.images_processed} new images ({len(detected.quarantined)} quarantined), "
             f"{detected.detections} detections.", ""]
    if mined is None:
        return "\n".join(lines + [
            f"**Not mined**: night `{review.night_id}` (selection `{review.selection_id}`, held {review.held_at}) is "
            f"{review.status.replace('_', ' ')}. Its images are still in the pool, so no night mines until a person "
            "exports or rejects it in the review app (`dataengine ui`, Nights)."])
    lines += ["## Errors on the labelled set", "", "```", mined.error_table, "```", "",
              f"Selection `{mined.selection_id}`: {mined.selected} images from {mined.queries} queries; "
              f"random arm `{mined.random_selection_id}`.", ""]
    if night.held:
        lines.append(f"**Held for review** (night `{review.night_id}`): nothing exported. A person accepts or rejects "
                     f"its images in the review app (`dataengine ui`, Nights) and exports it to `{review.target}`.")
    elif exported:
        lines.append(f"Exported as batch `{exported.batch_id}` ({exported.images} images, "
                     f"{exported.counts.get('objects')} pre-annotations) to `{exported.location}`.")
    else:
        lines.append("Nothing to export.")
    lines += ["", "| image | why |", "|---|---|"]
    lines += [f"| {uri} | {reason} |" for uri, reason in mined.top]
    return "\n".join(lines)
