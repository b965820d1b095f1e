"""The `retrain_and_compare` flow: labels back -> fine-tune a mined, a random and a control arm from the same seed
-> pycocotools on the superset, the subset without the query images, the query subset -> report + artifacts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from dataengine.config import store_config
from detectors.config import FinetuneConfig
from fdb import StoreConfig
from jobs.context import connection, newest_labels, resolve_checkpoint
from mining.config import EvaluationConfig
from mining.report import errors_markdown, map_markdown, test_verdict_markdown, verdict_markdown
from mining.selection import query_image_ids
from records import QUERIED_FP_TYPES
from records.coco import load_coco
from tasks.labelling import batch_labels
from tasks.retrain import compare_arms, write_comparison_report


@flow(name="retrain_and_compare")
def retrain_and_compare(seed_checkpoint: str, data_dir: str, mined_batch: str, random_batch: str,
                        query_images: list[int] | None = None, recipe: FinetuneConfig = FinetuneConfig(),
                        queried_types: list[str] | None = None, train_split: str = "train",
                        eval_split: str = "val", test_split: str | None = None,
                        evaluation: EvaluationConfig = EvaluationConfig()) -> str:
    """`data_dir` holds the seed's train split and the val split (COCO, `annotations/` + `images/`) the queries
    came from. Every arm is reported on `test_split` when given (a split that fed nothing: refused otherwise), else
    on the val split. Each arm is trained with every seed of the recipe; `queried_types` are the error types the
    batch was mined for (default fp_background and fp_wrong_class), whose counts the report follows."""
    store = store_config()
    queried_types = queried_types or list(QUERIED_FP_TYPES)
    annotations, images = Path(data_dir) / "annotations", str(Path(data_dir) / "images")
    batches = {"mined": batch_labels(store, mined_batch, images), "random": batch_labels(store, random_batch, images)}
    work = Path(store.home) / "compare" / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    comparison = compare_arms(store, seed_checkpoint, str(annotations / f"{train_split}.json"),
                              str(annotations / f"{eval_split}.json"), images, batches, query_images or [], str(work),
                              recipe, test_json=str(annotations / f"{test_split}.json") if test_split else None,
                              queried_types=queried_types, evaluation=evaluation)
    report = write_comparison_report(
        comparison, str(work / "report"), "retrain and compare: mined vs random vs control",
        {"seed": Path(seed_checkpoint).name, "mined batch": mined_batch, "random batch": random_batch,
         "steps per arm": recipe.steps, "training seeds": list(recipe.seeds), "lr": recipe.lr,
         "oversampling of new images": recipe.oversample, "hard-negative share": recipe.hard_negatives,
         "reported on": f"{test_split} (test split)" if test_split else f"{eval_split} (the split the queries came from)"},
        queried_types=queried_types, store=store)
    create_markdown_artifact(key="retrain-and-compare", description="mAP by arm and subset, errors by type",
                             markdown=(test_verdict_markdown(comparison) or verdict_markdown(comparison, queried_types))
                             + "\n\n" +
                             map_markdown(comparison) + "\n\n" + errors_markdown(comparison))
    get_run_logger().info("report: %s", report["html"])
    return report["html"]


@dataclass(frozen=True)
class ComparisonRun:
    seed_checkpoint: str  # the checkpoint every arm was fine-tuned from
    query_images: list[int]  # the evaluation set's images whose errors queried the mined batch
    report: str  # the report's HTML


def compare_batches(store: StoreConfig, data_dir: str, mined_batch: str, random_batch: str,
                    seed_checkpoint: str | None = None, model_version: str | None = None,
                    recipe: FinetuneConfig = FinetuneConfig(), train_split: str = "train", eval_split: str = "val",
                    test_split: str | None = None, evaluation: EvaluationConfig = EvaluationConfig()
                    ) -> ComparisonRun:
    """`retrain_and_compare` from `seed_checkpoint`, else from `model_version`'s checkpoint (default:
    production), with the query subset read from the mined batch's selection and the eval split's newest
    labels."""
    seed = seed_checkpoint or str(resolve_checkpoint(connection(store), model_version).path)
    eval_json = str(Path(data_dir) / "annotations" / f"{eval_split}.json")
    evaluation_set = load_coco(newest_labels(store, eval_json), image_dir=str(Path(data_dir) / "images"))
    queries = query_image_ids(connection(store), mined_batch, evaluation_set)
    report = retrain_and_compare(seed_checkpoint=seed, data_dir=data_dir, mined_batch=mined_batch,
                                 random_batch=random_batch, query_images=queries, recipe=recipe,
                                 train_split=train_split, eval_split=eval_split, test_split=test_split,
                                 evaluation=evaluation)
    return ComparisonRun(seed, queries, report)
