"""`dataengine evaluate`: a model scored with pycocotools on a dataset split. A plain function, no Prefect run."""

from __future__ import annotations

from dataclasses import dataclass

from detectors.checkpoint import load_checkpoint
from detectors.evaluate import evaluate_predictions, format_table, predict
from detectors.pipeline import dataset_split
from fdb import StoreConfig
from jobs.context import connection, newest_labels, resolve_checkpoint
from records.coco import load_coco


@dataclass(frozen=True)
class Evaluation:
    model_version: str
    images: int  # images of the split scored
    labels: str  # the labels scored against: the split's file, or its newest version once a review corrected it
    corrected: bool  # a review corrected the split's labels
    metrics: dict  # per IoU type: mAP, mAP50, mAP75, per-class AP, PR curves (`detectors.evaluate`)
    table: str  # the metrics as the table the commands print


def evaluate_model(store: StoreConfig, data_dir: str, split: str = "val", image_dir: str | None = None,
                   model_version: str | None = None, checkpoint: str | None = None) -> Evaluation:
    """The model (a checkpoint file, not registered; a registered version; default production) on `split` of the
    COCO dataset directory, against the split's newest labels."""
    loaded = load_checkpoint(checkpoint) if checkpoint else resolve_checkpoint(connection(store), model_version)
    dataset = dataset_split(data_dir, split, image_dir)
    newest = newest_labels(store, dataset.path)
    corrected = str(newest) != str(dataset.path)
    if corrected:
        dataset = load_coco(newest, image_dir=dataset.image_dir)
    metrics = evaluate_predictions(dataset, predict(loaded.model, dataset))
    return Evaluation(loaded.version, len(dataset), str(newest), corrected, metrics, format_table(metrics))
