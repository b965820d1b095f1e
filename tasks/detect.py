"""Detect: the night's new images listed and run through the model into fdb (detections, feature vectors,
processed marks), a rollout's backlog, and the labelled set the model's errors are typed on."""

from __future__ import annotations

import os
import socket

from prefect import task

from detectors.config import DetectConfig
from fdb import StoreConfig, listings
from fdb import images as image_store
from jobs.context import checkpoint_of, connection
from jobs.detect import DetectReport, detect_images, detect_labelled_set
from records.coco import LabelledSet
from storage import list_images_since
from tasks.logs import run_logger
from tasks.retries import IO_RETRIES


@task(name="list new images", **IO_RETRIES)
def list_new_images(store: StoreConfig, folder: str, pattern: str = "*", model_version: str | None = None,
                    allow_links_out: bool = False, full_listing: bool = False) -> listings.NewImages:
    """Images under `folder` not yet processed by `model_version`, listed from where the last complete night of
    this model left off (`fdb.listings`; `full_listing` lists everything): the cost follows the night's images,
    and the database is asked only about those. Links out of the folder are refused (and logged) unless
    `allow_links_out`. Returns the `uris`, and the `mark` that `record_listing` stores once they are detected."""
    refused: list[tuple[str, str]] = []
    fdb = connection(store) if model_version is not None else None
    key = listings.listing_key(str(folder), pattern, model_version or "")
    since = None if fdb is None or full_listing else listings.since(fdb, key)
    listing = list_images_since(folder, pattern, since, allow_links_out=allow_links_out, refused=refused)
    for path, reason in refused:
        run_logger().warning("not read: %s: %s", path, reason)
    uris = listing.uris
    if fdb is not None:
        done = image_store.processed_uris(fdb, uris, model_version)
        uris = [u for u in uris if u not in done]
    run_logger().info("%d new images under %s for model %s (%d listed%s)", len(uris), folder, model_version,
                      len(listing.uris), "" if since is None else " since the last night's mark")
    return listings.NewImages(uris, len(listing.uris), listing.scanned, key, since, listing.mark)


@task(name="record where the listing ends", **IO_RETRIES)
def record_listing(store: StoreConfig, listing: listings.NewImages) -> None:
    """After the listed images were all detected: the next night lists from here."""
    listings.advance(connection(store), listing.key, listing.mark, listing.listed, listing.scanned)


@task(name="detect with feature taps", **IO_RETRIES)
def detect(store: StoreConfig, model_version: str, uris: list[str], config: DetectConfig = DetectConfig(),
           split: str = "pool", source: str = "nightly", progress: bool = False) -> DetectReport:
    """One chunk of images through the detector into fdb; its `workers` say which host and process ran it."""
    report = detect_images(connection(store), checkpoint_of(store, model_version), uris, config, split=split,
                           source=source, progress=progress)
    report.workers = [f"{socket.gethostname()}:{os.getpid()}"]
    return report


@task(name="list the archive's backlog", **IO_RETRIES)
def archive_backlog(store: StoreConfig, model_version: str) -> list[str]:
    """Every readable image in the store that `model_version` has not processed yet (a rollout's work)."""
    return image_store.backlog(connection(store), model_version)


@task(name="carry the listing marks", **IO_RETRIES)
def carry_listing_marks(store: StoreConfig, from_version: str, to_version: str) -> int:
    """The serving model's listing marks, given to the model that replaces it (`fdb.listings.carry_marks`)."""
    return listings.carry_marks(connection(store), from_version, to_version)


@task(name="detect on the labelled set", **IO_RETRIES)
def detect_labelled(store: StoreConfig, model_version: str, labelled: LabelledSet,
                    config: DetectConfig = DetectConfig(), progress: bool = False) -> dict:
    """The labelled set through the detector (incrementally), so its errors can be typed from the store. Images
    with ground truth are labelled, whatever an earlier ingest called them: never mined."""
    report, tapped = detect_labelled_set(connection(store), checkpoint_of(store, model_version), labelled.coco,
                                         config, progress=progress)
    return {"processed": report.images_processed, "skipped": report.images_skipped,
            "quarantined": report.quarantined, "ground_truth_vectors": tapped, "summary": str(report)}
