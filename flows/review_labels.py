"""The labelled set's own errors sent back to the team: judged by a model on the images it never trained on (or by
k fold models, each on the fold it never saw), recorded, and the suspected images exported as a review batch whose
corrections become the set's next version (`flows.labelling.import_batch_labels`). Plain functions, no Prefect
run: what `dataengine review-labels` calls, step by step or whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotation_export.export import ExportResult
from annotation_export.review import export_review_batch
from detectors.config import TrainConfig
from fdb import StoreConfig
from jobs.context import checkpoint_of, connection, newest_labels, resolve_version
from jobs.detect import detect_labelled_set
from mining.config import LabelErrorConfig, MatchConfig
from mining.label_errors import LabelErrorReport, find_label_errors
from records.coco import CocoSet, load_coco


@dataclass(frozen=True)
class LabelReview:
    judges: str | list[str]  # the model version, or the k fold models
    labelled_set: str  # the version of the labelled set judged: its newest
    report: LabelErrorReport
    exported: ExportResult | None  # None: nothing suspected, or a dry run


def review_labels(store: StoreConfig, gt_json: str, gt_images: str | None = None,
                  config: LabelErrorConfig = LabelErrorConfig(), match: MatchConfig = MatchConfig(),
                  model_version: str | None = None, checkpoint: str | None = None, folds: int = 0,
                  fold_train: TrainConfig = TrainConfig(), preset: str = "small", target: str | None = None,
                  dry_run: bool = False) -> LabelReview:
    """The newest version of the labelled set judged by the model (a checkpoint file, registered on the way; a
    version; default production), or with `folds` by k models trained without one fold each (`preset`,
    `fold_train`); the suspects exported to `target` (default: exports/ in the data home) unless none or
    `dry_run`."""
    ground_truth = _newest(store, gt_json, gt_images)
    if folds:
        from jobs.label_folds import fold_judges_under  # torch training, only for k-fold judges

        judges = fold_judges_under(store.home, connection(store), ground_truth, folds, fold_train, preset,
                                   progress=True)
    else:
        judges = resolve_version(store, model_version, checkpoint)
        detect_labelled_set(connection(store), checkpoint_of(store, judges), ground_truth, progress=True)
    report = _judge(store, judges, ground_truth, config, match)
    exported = None
    if sum(report.counts().values()) and not dry_run:
        exported = _export(store, judges, ground_truth, target, report.params_key)
    return LabelReview(judges, str(ground_truth.path), report, exported)


def judge_labels(store: StoreConfig, judges: str | list[str], gt_json: str, gt_images: str | None = None,
                 config: LabelErrorConfig = LabelErrorConfig(), match: MatchConfig = MatchConfig()
                 ) -> LabelErrorReport:
    """Suspected label errors of the labelled set's newest version, judged by the stored predictions of `judges`
    on the images they never trained on, recorded in the store."""
    return _judge(store, judges, _newest(store, gt_json, gt_images), config, match)


def export_review(store: StoreConfig, judges: str | list[str], gt_json: str, gt_images: str | None = None,
                  target: str | None = None, params_key: str | None = None) -> ExportResult:
    """The labelled images with suspected label errors, their labels and the disagreeing predictions, as a
    CVAT + COCO batch for the team to correct (default: `exports/` in the data home)."""
    return _export(store, judges, _newest(store, gt_json, gt_images), target, params_key)


def _newest(store: StoreConfig, gt_json: str, gt_images: str | None) -> CocoSet:
    return load_coco(newest_labels(store, gt_json), image_dir=gt_images)


def _judge(store: StoreConfig, judges: str | list[str], ground_truth: CocoSet, config: LabelErrorConfig,
           match: MatchConfig) -> LabelErrorReport:
    return find_label_errors(connection(store), judges, ground_truth, config, match)


def _export(store: StoreConfig, judges: str | list[str], ground_truth: CocoSet, target: str | None,
            params_key: str | None) -> ExportResult:
    return export_review_batch(connection(store), ground_truth, judges, target or Path(store.home) / "exports",
                               params_key=params_key)
