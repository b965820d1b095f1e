"""The scheduled nightly flow: new imagery in, hard cases out.

ingest and detect the new images with the production model (feature taps into fdb) -> rebuild the pool index
and mine it with the known errors of the labelled set -> a selection (and its random arm) for the labelling queue.
Incremental: only images this model has not processed cost anything; a second run the same night is a no-op
for detection and returns the same selection; a crash is finished by the next run without duplicates.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks import detect, list_new_images, load_model, mine


@flow(name="nightly", log_prints=True)
def nightly(images: str, gt_json: str, gt_images: str | None = None, model_version: str | None = None,
            pattern: str = "*", k: int = 20, budget: int = 200) -> dict:
    logger = get_run_logger()
    checkpoint = load_model(model_version)
    new = list_new_images(images, pattern, checkpoint.version)
    logger.info("%d new images under %s for model %s", len(new), images, checkpoint.version)
    detected = detect(checkpoint, new) if new else {"processed": 0, "skipped": 0, "detections": 0, "features": 0,
                                                    "quarantined": []}
    mined = mine(checkpoint, gt_json, gt_images, k=k, budget=budget)
    create_markdown_artifact(
        key="nightly-selection",
        markdown=_summary(checkpoint.version, detected, mined),
        description="Nightly hard-case selection")
    return {"model_version": checkpoint.version, "detect": detected, "mine": mined}


def _summary(version: str, detected: dict, mined: dict) -> str:
    lines = [f"# Nightly run, model `{version}`", "",
             f"Detected {detected['processed']} new images ({len(detected['quarantined'])} quarantined), "
             f"{detected['detections']} detections.", "", "## Errors on the labelled set", "",
             "```", mined["error_table"], "```", "",
             f"Selection `{mined['selection_id']}`: {mined['selected']} images from {mined['queries']} queries; "
             f"random arm `{mined['random_selection_id']}`.", "", "| image | why |", "|---|---|"]
    lines += [f"| {uri} | {reason} |" for uri, reason in mined["top"]]
    return "\n".join(lines)
