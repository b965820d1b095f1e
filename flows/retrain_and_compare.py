"""The `retrain_and_compare` flow: labels back -> fine-tune a mined, a random and a control arm from the same seed
-> pycocotools on the superset, the subset without the query images, the query subset -> report + artifacts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from annotation_export.importer import labels_as_coco
from dataengine import config
from detectors.compare import retrain_and_compare as compare_arms
from detectors.pipeline import dataset_split
from fdb.store import connect
from flows.report import errors_markdown, map_markdown, verdict_markdown, write_report


@task(name="labels of a batch", retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE)
def batch_labels(batch_id: str, image_dir: str) -> tuple[list, list]:
    return labels_as_coco(connect(), batch_id, image_dir)


@task(name="fine-tune and evaluate the arms", cache_policy=NONE)
def fine_tune_arms(seed_checkpoint: str, data_dir: str, batches: dict, query_images: list[int], steps: int,
                   work_dir: str, seeds: list[int], oversample: float, hard_negatives: float, lr: float):
    train, val = dataset_split(data_dir, "train"), dataset_split(data_dir, "val")
    return compare_arms(seed_checkpoint, train, batches, val, query_images, steps=steps, work_dir=work_dir,
                        seeds=tuple(seeds), oversample=oversample, hard_negatives=hard_negatives, lr=lr, fdb=connect(),
                        progress=False)


@flow(name="retrain_and_compare")
def retrain_and_compare(seed_checkpoint: str, data_dir: str, mined_batch: str, random_batch: str,
                        query_images: list[int] | None = None, steps: int = 60, seeds: list[int] | None = None,
                        oversample: float = 4.0, hard_negatives: float = 0.25, lr: float = 2e-4,
                        queried_types: list[str] | None = None) -> str:
    """`data_dir` holds the seed's train split and the val split (COCO) that every arm is scored on. Each arm is
    trained with every seed in `seeds` (default 0, 1, 2); `queried_types` are the error types the batch was mined
    for (default fp_background and fp_wrong_class), whose counts the report follows before and after."""
    seeds = seeds or [0, 1, 2]
    queried_types = queried_types or ["fp_background", "fp_wrong_class"]
    image_dir = str(dataset_split(data_dir, "train").image_dir)
    batches = {"mined": batch_labels(mined_batch, image_dir), "random": batch_labels(random_batch, image_dir)}
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    work = config.data_home() / "compare" / stamp
    comparison = fine_tune_arms(seed_checkpoint, data_dir, batches, query_images or [], steps, str(work), seeds,
                                oversample, hard_negatives, lr)
    report = write_report(comparison, work / "report", "retrain and compare: mined vs random vs control",
                          {"seed": Path(seed_checkpoint).name, "mined batch": mined_batch,
                           "random batch": random_batch, "steps per arm": steps, "training seeds": seeds,
                           "lr": lr, "oversampling of new images": oversample,
                           "hard-negative share": hard_negatives},
                          queried_types=queried_types)
    create_markdown_artifact(key="retrain-and-compare", description="mAP by arm and subset, errors by type",
                             markdown=verdict_markdown(comparison, queried_types) + "\n\n" +
                             map_markdown(comparison) + "\n\n" + errors_markdown(comparison))
    get_run_logger().info("report: %s", report["html"])
    return str(report["html"])
