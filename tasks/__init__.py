"""Thin Prefect tasks over the plain functions of fdb/, detectors/ and annotation_export/.

Each task opens its own connection (`fdb.connect()`: the embedded server, or DATAENGINE_MONGODB_URI), so tasks
can run in other processes or on other machines (Dask workers). Retries with backoff cover database and file
I/O; every task is idempotent, so a retry or a re-run never duplicates a record.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from detectors.checkpoint import Checkpoint
from detectors.errors import MatchParams
from fdb.store import connect

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
    from detectors.pipeline import resolve_checkpoint

    return resolve_checkpoint(connect(), model_version, checkpoint)


@task(name="detect with feature taps", tags=["model", "fdb"], **IO_RETRIES)
def detect(checkpoint: Checkpoint, uris: list[str], split: str = "pool", source: str = "nightly",
           batch_size: int = 4, min_score: float = 0.25) -> dict:
    from detectors.inference import detect_images

    report = detect_images(connect(), checkpoint, uris, split=split, source=source, batch_size=batch_size,
                           min_score=min_score)
    return {"processed": report.images_processed, "skipped": report.images_skipped,
            "detections": report.detections, "features": report.features, "quarantined": report.quarantined}


@task(name="mine hard cases", tags=["fdb", "index"], **IO_RETRIES)
def mine(checkpoint: Checkpoint, gt_json: str, images: str | None = None, k: int = 20, budget: int = 200,
         iou: float = 0.5, score: float = 0.5, types: list[str] | None = None, classes: list[str] | None = None,
         level: str = "detection", backend: str = "auto", random_arm: bool = True, seed: int = 0) -> dict:
    from dataengine import config
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
