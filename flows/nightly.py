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

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact

from annotation_export.config import ExportConfig
from dataengine.config import store_config
from detectors.config import DetectConfig
from flows.runners import build_task_runner, check_workers
from mining.config import MatchConfig, MiningConfig
from tasks import (detect, detect_labelled, export, list_new_images, mine, nightly_state, record_export_intent,
                   record_listing, record_night, resolve_model)


@flow(name="nightly", task_runner=build_task_runner())
def nightly(images: str, gt_json: str, gt_images: str | None = None, model_version: str | None = None,
            pattern: str = "*", mining: MiningConfig = MiningConfig(), match: MatchConfig = MatchConfig(),
            detection: DetectConfig = DetectConfig(), export_config: ExportConfig = ExportConfig(),
            export_to: str | None = None, chunk_size: int = 64, allow_links_out: bool = False,
            full_listing: bool = False) -> dict:
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
    new = listing["uris"]
    logger.info("%d new images under %s for model %s (%d listed%s)", len(new), images, version, listing["listed"],
                "" if listing["since"] is None else " since the last night's mark")
    chunks = [new[i:i + chunk_size] for i in range(0, len(new), chunk_size)]
    detected = {"processed": 0, "skipped": 0, "detections": 0, "features": 0, "quarantined": [], "workers": []}
    for n, future in enumerate(detect.map(unmapped(store), unmapped(version), chunks, unmapped(detection)), start=1):
        part = future.result()
        for key in ("processed", "skipped", "detections", "features", "quarantined"):
            detected[key] += part[key]
        detected["workers"] = sorted(set(detected["workers"]) | {part["worker"]})
        logger.info("detection: %d/%d chunks, %d/%d images", n, len(chunks), detected["processed"], len(new))
    record_listing(store, listing)  # every listed image is detected (or quarantined): list from here next time
    state, night = nightly_state(store, version, gt_json, {"mining": mining.as_dict(), "match": match.as_dict(),
                                                           "pattern": pattern, "export_to": export_to})
    if night is not None and night["status"] == "done":
        previous = night["result"]
        logger.info("nothing new since selection %s (batch %s): no new mining or export",
                    previous["mine"]["selection_id"], (previous["export"] or {}).get("batch_id"))
        return {**previous, "detect": detected}
    if night is not None:  # an earlier run recorded this night's selection and stopped before the end
        mined = night["mine"]
        logger.info("finishing the night of selection %s: exporting it (idempotent)", mined["selection_id"])
    else:
        detect_labelled(store, version, gt_json, gt_images, detection)
        mined = record_export_intent(store, state, mine(store, version, gt_json, gt_images, mining, match))
    exported = export(store, mined["selection_id"], export_to, export_config) if mined["selected"] else None
    create_markdown_artifact(key="nightly-selection", markdown=_summary(version, detected, mined, exported),
                             description="Nightly hard-case selection")
    result = {"model_version": version, "detect": detected, "mine": mined, "export": exported}
    record_night(store, state, result)
    return result


def _summary(version: str, detected: dict, mined: dict, exported: dict | None) -> str:
    lines = [f"# Nightly run, model `{version}`", "",
             f"Detected {detected['processed']} new images ({len(detected['quarantined'])} quarantined), "
             f"{detected['detections']} detections.", "", "## Errors on the labelled set", "",
             "```", mined["error_table"], "```", "",
             f"Selection `{mined['selection_id']}`: {mined['selected']} images from {mined['queries']} queries; "
             f"random arm `{mined['random_selection_id']}`.", "",
             (f"Exported as batch `{exported['batch_id']}` ({exported['images']} images, {exported['objects']} "
              f"pre-annotations) to `{exported['location']}`." if exported else "Nothing to export."), "",
             "| image | why |", "|---|---|"]
    lines += [f"| {uri} | {reason} |" for uri, reason in mined["top"]]
    return "\n".join(lines)
