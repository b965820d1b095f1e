"""Thin Prefect tasks over the plain functions of jobs/, detectors/, fdb/, mining/ and annotation_export/.

This is where a model's output meets the store (detect -> write -> mark processed, `jobs.detect`), and where
every other step of the loop becomes a task the flows call. Tasks take and return plain or typed values (a
`StoreConfig`, model versions, paths, stage configs), never an open connection or a loaded model: each process
opens one connection and loads a model once (`jobs.context`), so tasks can run in other processes or on other
machines (Dask workers, see flows/runners.py). Retries with backoff cover database, S3 and file I/O; every task
is idempotent, so a retry or a re-run never duplicates a record.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from annotation_export.config import ExportConfig
from annotation_export.export import ExportResult, export_batch
from annotation_export.importer import ImportReport, import_labels, labels_as_coco
from annotation_export.review import apply_review, export_review_batch
from detectors.config import DetectConfig, FinetuneConfig, TrainConfig
from fdb import StoreConfig, StoreUnavailable, listings
from fdb import images as image_store
from fdb import labels as label_store
from fdb import models as model_registry
from fdb import runs as run_store
from fdb.pool_index import merge_recent_indexes, rebuild_pool_indexes
from fdb.runs import HeldNight, NightHold
from mining.config import EvaluationConfig, LabelErrorConfig, MatchConfig, MiningConfig
from mining.label_errors import LabelErrorReport, find_label_errors
from mining.selection import MiningSummary, pool_state, query_image_ids, select_hard_cases
from records import BOX_LAYER, IMAGE_LAYER
from records.coco import load_coco
from storage import list_images_since
from jobs.context import checkpoint_of, connection, newest_labels, registered_model, resolve_version
from jobs.detect import DetectReport, detect_images, detect_labelled_set

if TYPE_CHECKING:
    from jobs.retrain import RetrainResult


def _worth_retrying(task, task_run, state) -> bool:
    """Transient errors are retried; a database that did not answer for the client's whole server-selection
    window (30 s, longer than a replica-set election or an embedded restart), or an external one that does not
    answer at all, is gone: fail fast instead of waiting through three more such windows."""
    from pymongo.errors import ServerSelectionTimeoutError  # noqa: PLC0415

    try:
        state.result(raise_on_failure=True)
    except (ServerSelectionTimeoutError, StoreUnavailable, model_registry.PromotionConflict):
        return False  # (a conflict is a decision to make again, not a transient failure)
    except Exception:  # noqa: BLE001 - any other failure goes to the retry policy
        return True
    return True


# No input caching: every task is idempotent against fdb anyway.
# No tags: Prefect asks its server for the tags' concurrency slots before every tagged run, and after a detection
# chunk had both cores that write waited ~2 s behind the ephemeral server's SQLite: 40 % of a 64-image chunk on 2
# cores (benchmarks/nightly_bench.py's real night). GPU work is bounded by the Dask workers or a work pool instead.
IO_RETRIES = dict(retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE, retry_condition_fn=_worth_retrying)


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
        get_run_logger().warning("not read: %s: %s", path, reason)
    uris = listing.uris
    if fdb is not None:
        done = image_store.processed_uris(fdb, uris, model_version)
        uris = [u for u in uris if u not in done]
    return listings.NewImages(uris, len(listing.uris), listing.scanned, key, since, listing.mark)


@task(name="record where the listing ends", **IO_RETRIES)
def record_listing(store: StoreConfig, listing: listings.NewImages) -> None:
    """After the listed images were all detected: the next night lists from here."""
    listings.advance(connection(store), listing.key, listing.mark, listing.listed, listing.scanned)


@task(name="resolve the model", **IO_RETRIES)
def resolve_model(store: StoreConfig, model_version: str | None = None, checkpoint: str | None = None) -> str:
    """The model version to use: a checkpoint file (registered on the way), the given version, or the production
    model (`jobs.context.resolve_version`)."""
    return resolve_version(store, model_version, checkpoint)


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


@task(name="hand production over", **IO_RETRIES)
def take_over(store: StoreConfig, model_version: str, serving: str | None, why: str, numbers: dict) -> dict:
    """`model_version` becomes the production model, only if `serving` still is (`fdb.models.promote`). A retry
    that finds the switch made (its answer lost) is done, not a conflict."""
    fdb = connection(store)
    if model_registry.production_version(fdb) == model_version:
        return {"from": serving, "to": model_version, "why": why, "switched": False}
    switch = model_registry.promote(fdb, model_version, why, numbers, expected=serving)
    return {k: v for k, v in switch.items() if k != "at"}


@task(name="detect on the labelled set", **IO_RETRIES)
def detect_labelled(store: StoreConfig, model_version: str, gt_json: str, gt_images: str | None = None,
                    config: DetectConfig = DetectConfig(), progress: bool = False) -> dict:
    """The labelled set through the detector (incrementally), so its errors can be typed from the store. Images
    with ground truth are labelled, whatever an earlier ingest called them: never mined."""
    ground_truth = load_coco(newest_labels(store, gt_json), image_dir=gt_images)
    report, tapped = detect_labelled_set(connection(store), checkpoint_of(store, model_version), ground_truth, config,
                                         progress=progress)
    return {"processed": report.images_processed, "skipped": report.images_skipped,
            "quarantined": report.quarantined, "ground_truth_vectors": tapped, "summary": str(report)}


@task(name="mine hard cases", **IO_RETRIES)
def mine(store: StoreConfig, model_version: str, gt_json: str, gt_images: str | None = None,
         mining: MiningConfig = MiningConfig(), match: MatchConfig = MatchConfig(),
         label_config: LabelErrorConfig = LabelErrorConfig()) -> MiningSummary:
    """Errors on the labelled set (less those a suspected label error explains) -> queries -> the pool's nearest
    images, recorded as a selection."""
    ground_truth = load_coco(newest_labels(store, gt_json), image_dir=gt_images)
    result = select_hard_cases(connection(store), model_version, ground_truth, mining, match, out_dir=store.home,
                               label_config=label_config)
    return result.summary()


@task(name="rebuild the pool index", **IO_RETRIES)
def reindex_pool(store: StoreConfig, model_version: str, backend: str = "auto") -> dict:
    """The pool indexes mining uses (fdb.pool_index), built afresh from every pool vector: a new centre and
    projection for a pool that grew far from the vectors its index was first built on. Nights add to it again."""
    return _per_layer(rebuild_pool_indexes(connection(store), model_version, (BOX_LAYER, IMAGE_LAYER),
                                           Path(store.home) / "indexes", backend))


@task(name="merge the recent pool vectors", **IO_RETRIES)
def merge_recent_pool_index(store: StoreConfig, model_version: str | None = None, backend: str = "auto") -> dict:
    """Each layer's recent side index merged into its main pool index (fdb.pool_index.merge_recent_index): the
    weekly job that keeps nights from saving the graph. No weights are loaded: the index holds stored vectors."""
    fdb = connection(store)
    version = registered_model(fdb, model_version)["_id"]
    return _per_layer(merge_recent_indexes(fdb, version, (BOX_LAYER, IMAGE_LAYER), Path(store.home) / "indexes",
                                           backend))


def _per_layer(done: dict) -> dict:
    return {layer: None if pool is None else {**pool.summary(), "seconds": seconds}
            for layer, (pool, seconds) in done.items()}


@task(name="judge the labels", **IO_RETRIES)
def judge_labels(store: StoreConfig, model_version: str | list[str], gt_json: str, gt_images: str | None = None,
                 config: LabelErrorConfig = LabelErrorConfig(), match: MatchConfig = MatchConfig()
                 ) -> LabelErrorReport:
    """Suspected label errors of the labelled set's newest version, judged by the model's stored predictions
    on the images it never trained on, recorded in fdb."""
    path = newest_labels(store, gt_json)
    return find_label_errors(connection(store), model_version, load_coco(path, image_dir=gt_images), config, match)


@task(name="train out-of-fold judges", cache_policy=NONE)
def fold_judges(store: StoreConfig, gt_json: str, gt_images: str | None, folds: int, train: TrainConfig,
                preset: str = "small", progress: bool = False) -> list[str]:
    """k models, each trained on the labelled set without one fold and run over that fold (`jobs.label_folds`):
    judges for a labelled set that is also the training set."""
    from jobs.label_folds import fold_judges_under  # noqa: PLC0415 - torch training, only for this task

    labelled = load_coco(newest_labels(store, gt_json), image_dir=gt_images)
    return fold_judges_under(store.home, connection(store), labelled, folds, train, preset, progress=progress)


@task(name="export the review batch", **IO_RETRIES)
def export_review(store: StoreConfig, model_version: str | list[str], gt_json: str, gt_images: str | None = None,
                  target: str | None = None, params_key: str | None = None) -> ExportResult:
    """The labelled images with suspected label errors, their labels and the disagreeing predictions, as a
    CVAT + COCO batch for the team to correct (default: `exports/` in the data home)."""
    ground_truth = load_coco(newest_labels(store, gt_json), image_dir=gt_images)
    return export_review_batch(connection(store), ground_truth, model_version,
                               target or Path(store.home) / "exports", params_key=params_key)


@task(name="import the corrected labels", **IO_RETRIES)
def import_review(store: StoreConfig, labels_path: str, batch_id: str) -> tuple[ImportReport, dict]:
    """The team's corrections of a review batch: a label version of the batch, then the next version of the
    labelled set it came from (what evaluation, mining and retraining read from then on): the import's report
    and the labelled set's new version (`path`, `version`, `changes`)."""
    fdb = connection(store)
    report = import_labels(fdb, labels_path, batch_id)
    return report, apply_review(fdb, batch_id)


@task(name="export to the labelling queue", **IO_RETRIES)
def export(store: StoreConfig, selection_id: str, target: str | None = None,
           config: ExportConfig = ExportConfig(), labelstudio=None) -> ExportResult:
    """The selection as a CVAT + COCO batch with pre-annotations and a manifest, under a folder or s3:// prefix
    (default: `exports/` in the data home), or as tasks in a Label Studio project (`labelstudio://`, reached with
    `labelstudio`, from `dataengine.config.labelstudio_access`). Idempotent: the batch id derives from the
    selection."""
    return export_batch(connection(store), selection_id, target or Path(store.home) / "exports", config,
                        labelstudio=labelstudio)


@task(name="import the team's labels", **IO_RETRIES)
def import_batch_labels(store: StoreConfig, labels_path: str, batch_id: str, skip_if_labelled: bool = False) -> dict:
    """Labels for an exported batch become its next label version (nothing is written unless all are valid).
    `skip_if_labelled` keeps a batch that already has labels as it is (a resumed run)."""
    fdb = connection(store)
    existing = label_store.latest_version(fdb, batch_id) if skip_if_labelled else None
    if existing is not None:
        return {"batch_id": batch_id, "label_version": existing, "skipped": True}
    report = import_labels(fdb, labels_path, batch_id)
    return {"batch_id": report.batch_id, "label_version": report.label_version, "images": report.images,
            "annotations": report.annotations}


@task(name="labels of a batch", **IO_RETRIES)
def batch_labels(store: StoreConfig, batch_id: str, image_dir: str) -> tuple[list, list]:
    """A batch's newest labels as COCO images and annotations, ready to be merged into a training set."""
    return labels_as_coco(connection(store), batch_id, image_dir)


@task(name="what changed since the last night", **IO_RETRIES)
def nightly_state(store: StoreConfig, model_version: str, gt_json: str, params: dict) -> tuple[str, dict | None]:
    """(state key, the night with that key as far as it got, or None): `status` "done" with its `result` (a
    second run with nothing new is a no-op) or "exporting" with its recorded selection under `mine`."""
    fdb = connection(store)
    state = pool_state(fdb, model_version, newest_labels(store, gt_json), params)
    return state, run_store.scheduled_run(fdb, state)


@task(name="record what the night ships", **IO_RETRIES)
def record_export_intent(store: StoreConfig, state: str, mined: MiningSummary, hold: NightHold | None = None
                         ) -> tuple[MiningSummary, HeldNight | None]:
    """The night's selection, recorded before its export: (the one recorded first, see fdb.runs; the night held
    for review, or None when it ships now). With `hold` it is held (its `target` None: `exports/` in the data
    home, as `export` would resolve it)."""
    if hold is not None:
        hold = replace(hold, target=str(hold.target or Path(store.home) / "exports"))
    doc = run_store.record_export_intent(connection(store), state, mined.as_dict(), hold)
    return MiningSummary.from_dict(doc["mine"]), (HeldNight.from_doc(doc) if doc.get("held") else None)


@task(name="is a night waiting for review", **IO_RETRIES)
def waiting_night(store: StoreConfig) -> HeldNight | None:
    """The night held for review that no one has exported yet, if any: no night mines while one waits."""
    return run_store.waiting_night(connection(store))


@task(name="record the night", **IO_RETRIES)
def record_night(store: StoreConfig, state: str, result: dict) -> None:
    """The night done (`result`: its record as flows.nightly.NightReport.as_doc writes it)."""
    run_store.record_scheduled_run(connection(store), state, result)


@task(name="fine-tune and score the arms", cache_policy=NONE)
def compare_arms(store: StoreConfig, seed_checkpoint: str, train_json: str, eval_json: str, image_dir: str,
                 batches: dict, query_images: list[int], work_dir: str, recipe: FinetuneConfig = FinetuneConfig(),
                 progress: bool = False, test_json: str | None = None, queried_types: list[str] | None = None,
                 evaluation: EvaluationConfig = EvaluationConfig()):
    """The mined / random / control experiment (`jobs.experiment`), its arm models registered in fdb; reported
    on the test split `test_json` when given (refused if it fed anything), else on the val split."""
    from jobs.experiment import run_experiment  # noqa: PLC0415 - torch training, only for this task

    test = load_coco(test_json, image_dir=image_dir) if test_json else None
    return run_experiment(seed_checkpoint, load_coco(newest_labels(store, train_json), image_dir=image_dir),
                          batches, load_coco(newest_labels(store, eval_json), image_dir=image_dir),
                          query_images, work_dir, recipe, fdb=connection(store), progress=progress, test=test,
                          config=evaluation, queried_types=queried_types)


@task(name="retrain a candidate and judge it", cache_policy=NONE)
def retrain_candidate(store: StoreConfig, train_json: str, eval_json: str, image_dir: str,
                      recipe: FinetuneConfig = FinetuneConfig(), promote: str = "auto", base: str | None = None,
                      match: MatchConfig = MatchConfig(), progress: bool = False,
                      query_images: list[int] | None = None, allow_no_batches: bool = False,
                      test_json: str | None = None, evaluation: EvaluationConfig = EvaluationConfig()
                      ) -> RetrainResult:
    """A candidate on everything labelled so far, the gate against production, a promotion if it passes."""
    from jobs.retrain import retrain_and_gate  # noqa: PLC0415 - torch training, only for this task

    work = Path(store.home) / "retrain" / store.db_name / dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return retrain_and_gate(connection(store), newest_labels(store, train_json), newest_labels(store, eval_json),
                            image_dir, work, recipe, promote, base, match, progress=progress, query_images=query_images,
                            allow_no_batches=allow_no_batches, test_json=test_json, evaluation_config=evaluation)


@task(name="query images of a selection", **IO_RETRIES)
def query_images(store: StoreConfig, batch_id: str, eval_json: str, image_dir: str | None = None) -> list[int]:
    """The evaluation set's ids of the images whose errors queried the batch's selection: the query subset."""
    evaluation = load_coco(newest_labels(store, eval_json), image_dir=image_dir)
    return query_image_ids(connection(store), batch_id, evaluation)


@task(name="write the comparison report", cache_policy=NONE)
def write_comparison_report(comparison, out_dir: str, title: str, facts: dict, montage: str | None = None,
                            hard_case_precision: dict | None = None, queried_types: list[str] | None = None,
                            store: StoreConfig | None = None, model_version: str | None = None) -> dict:
    """The report's files (`html`, `markdown`, `json`, plots); with `store`, also recorded as a `compare` run of
    `model_version` (the seed the arms started from), so the review app can link it."""
    from mining.report import write_report  # noqa: PLC0415 - matplotlib, only for this task

    report = {k: str(v) for k, v in write_report(comparison, out_dir, title, facts, montage=montage,
                                                 hard_case_precision=hard_case_precision,
                                                 queried_types=queried_types).items()}
    if store is not None:
        run_store.record_report(connection(store), "compare", {"title": title, "facts": facts}, report,
                                model_version=model_version)
    return report


__all__ = [
    "archive_backlog",
    "batch_labels",
    "carry_listing_marks",
    "compare_arms",
    "detect",
    "detect_labelled",
    "export",
    "export_review",
    "fold_judges",
    "import_batch_labels",
    "import_review",
    "judge_labels",
    "list_new_images",
    "merge_recent_pool_index",
    "mine",
    "newest_labels",
    "nightly_state",
    "query_images",
    "record_export_intent",
    "record_listing",
    "record_night",
    "reindex_pool",
    "resolve_model",
    "retrain_candidate",
    "take_over",
    "waiting_night",
    "write_comparison_report",
]
