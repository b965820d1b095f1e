"""Thin Prefect tasks over the plain functions of fdb/, detectors/ and annotation_export/.

Tasks take plain values (paths, ids, model versions), not open connections or loaded models, and each process
opens its own connection (`fdb.connect()`: the embedded server, or DATAENGINE_MONGODB_URI) and loads a model
once: so tasks can run in other processes or on other machines (Dask workers, see flows/runners.py). Retries with
backoff cover database, S3 and file I/O; every task is idempotent, so a retry or a re-run never duplicates a
record.
"""

from __future__ import annotations

import functools
import os
import socket

from prefect import task
from prefect.cache_policies import NONE

from dataengine import config
from detectors.checkpoint import Checkpoint
from detectors.errors import MatchParams
from fdb.store import FeatureDB
from fdb.store import connect as _open


@functools.lru_cache(maxsize=8)
def _connection(uri: str | None, db_name: str, home: str) -> FeatureDB:
    return _open(uri, db_name)


def connect() -> FeatureDB:
    """This process's connection to the feature database the environment names (one client per process)."""
    return _connection(config.mongodb_uri(), config.database_name(), str(config.data_home()))


@functools.lru_cache(maxsize=2)
def _checkpoint(model_version: str, uri: str | None, db_name: str, home: str) -> Checkpoint:
    from detectors.pipeline import resolve_checkpoint

    return resolve_checkpoint(connect(), model_version)


def checkpoint_of(model_version: str) -> Checkpoint:
    """The registered model `model_version`, loaded once per process (a Dask worker loads it on first use)."""
    return _checkpoint(model_version, config.mongodb_uri(), config.database_name(), str(config.data_home()))


# No input caching: inputs include models, and every task is idempotent against fdb anyway.
IO_RETRIES = dict(retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE)


@task(name="list new images", tags=["io"], **IO_RETRIES)
def list_new_images(folder: str, pattern: str = "*", model_version: str | None = None) -> list[str]:
    """Images under `folder` not yet processed by `model_version`: the nightly cost follows new images only."""
    from fdb.images import list_images

    uris = list_images(folder, pattern)
    if model_version is None:
        return uris
    done = set(connect().images.distinct("uri", {"uri": {"$in": uris}, "processed_by": model_version}))
    return [u for u in uris if u not in done]


@task(name="load model", tags=["model"], **IO_RETRIES)
def load_model(model_version: str | None = None, checkpoint: str | None = None) -> Checkpoint:
    """A checkpoint file, or a registered version (default: the newest) through this process's model cache, so
    the detect tasks that run here reuse it instead of loading the weights again."""
    from detectors.pipeline import resolve_checkpoint

    if checkpoint:
        return resolve_checkpoint(connect(), model_version, checkpoint)
    version = model_version or (connect().latest_model() or {}).get("_id")
    if version is None:
        return resolve_checkpoint(connect(), None)  # raises the "no model registered yet" error
    return checkpoint_of(version)


@task(name="detect with feature taps", tags=["model", "fdb"], **IO_RETRIES)
def detect(model_version: str, uris: list[str], split: str = "pool", source: str = "nightly",
           batch_size: int = 4, min_score: float = 0.25) -> dict:
    """One chunk of images through the detector into fdb; `worker` says which host and process ran it."""
    from detectors.inference import detect_images

    report = detect_images(connect(), checkpoint_of(model_version), uris, split=split, source=source,
                           batch_size=batch_size, min_score=min_score, progress=False)
    return {"processed": report.images_processed, "skipped": report.images_skipped,
            "detections": report.detections, "features": report.features, "quarantined": report.quarantined,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


@task(name="mine hard cases", tags=["fdb", "index"], **IO_RETRIES)
def mine(checkpoint: Checkpoint, gt_json: str, images: str | None = None, k: int = 20, budget: int = 200,
         iou: float = 0.5, score: float = 0.5, types: list[str] | None = None, classes: list[str] | None = None,
         level: str = "detection", backend: str = "auto", random_arm: bool = True, seed: int = 0) -> dict:
    from detectors.coco import load_coco
    from fdb.mining import mine_hard_cases

    result = mine_hard_cases(connect(), checkpoint, load_coco(gt_json, image_dir=images), k=k, budget=budget,
                             params=MatchParams(iou_threshold=iou, score_threshold=score), types=types,
                             classes=classes, level=level, backend=backend, random_arm=random_arm, seed=seed,
                             out_dir=config.data_home(), progress=False)
    return {"errors": result.errors.counts, "error_table": result.errors.table(), "queries": len(result.queries),
            "selection_id": result.selection.selection_id, "selected": len(result.selection),
            "random_selection_id": result.random.selection_id if result.random else None,
            "montage": str(result.montage) if result.montage else None,
            "top": [(img["uri"], img["reason"]) for img in result.selection.images[:20]]}


@task(name="export to the labelling queue", tags=["io", "s3"], **IO_RETRIES)
def export(selection_id: str, target: str | None = None, min_score: float = 0.5) -> dict:
    """The selection as a CVAT + COCO batch with pre-annotations and a manifest, under a folder or s3:// prefix
    (default: `exports/` in the data home). Idempotent: the batch id derives from the selection."""
    from annotation_export.export import export_batch

    result = export_batch(connect(), selection_id, target or config.data_home() / "exports", min_score=min_score)
    return {"batch_id": result.batch_id, "location": result.location, **result.counts}


@task(name="what changed since the last night", tags=["fdb"], **IO_RETRIES)
def nightly_state(model_version: str, gt_json: str, params: dict) -> tuple[str, dict | None]:
    """(state key, the finished run with that key or None): a second run with nothing new is a no-op."""
    from fdb.mining import finished_scheduled_run, pool_state

    fdb = connect()
    state = pool_state(fdb, model_version, gt_json, params)
    previous = finished_scheduled_run(fdb, state)
    return state, (previous or {}).get("result")


@task(name="record the night", tags=["fdb"], **IO_RETRIES)
def record_night(state: str, result: dict) -> None:
    from fdb.mining import record_scheduled_run

    record_scheduled_run(connect(), state, result)
