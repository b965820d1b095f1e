"""`dataengine train`: a detector trained (or a project checkpoint fine-tuned) on a COCO dataset directory,
evaluated on its val split and registered. Plain functions, no Prefect run: the plan is read first, so the
command can say what it starts before the minutes of training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from detectors.checkpoint import Checkpoint, load_checkpoint
from detectors.coco import CocoSet
from detectors.config import TrainConfig
from detectors.evaluate import format_table
from detectors.pipeline import dataset_split, train_detector
from detectors.train import TrainResult
from detectors.weights import describe_start
from fdb import StoreConfig
from jobs.context import connection, models_dir, register_checkpoint


@dataclass
class TrainingPlan:
    train_set: CocoSet
    val_set: CocoSet | None  # None: no evaluation
    config: TrainConfig
    preset: str
    init: Checkpoint | None = None  # the project checkpoint fine-tuned, if any
    starting: dict = field(default_factory=dict)  # `weights` / `backbone_weights` files a new model starts from

    def description(self) -> str:
        start = f"fine-tuning {self.init.version}" if self.init else f"training preset {self.preset!r}"
        return (f"{start} on {len(self.train_set)} images ({', '.join(self.train_set.class_names)}), "
                f"{self.config.steps} steps of batch {self.config.batch_size}")


@dataclass(frozen=True)
class TrainedModel:
    checkpoint: Checkpoint
    result: TrainResult
    started_from: str  # which files its weights started from, in words
    val_table: str | None  # the pycocotools table on the val split, when it was evaluated


def plan_training(data_dir: str, config: TrainConfig, image_dir: str | None = None, train_split: str = "train",
                  val_split: str = "val", preset: str = "small", init: str | None = None, weights: str | None = None,
                  backbone_weights: str | None = None) -> TrainingPlan:
    """The splits read and the checkpoint to fine-tune loaded (`val_split` '': no evaluation)."""
    starting = {k: v for k, v in (("weights", weights), ("backbone_weights", backbone_weights)) if v}
    return TrainingPlan(dataset_split(data_dir, train_split, image_dir),
                        dataset_split(data_dir, val_split, image_dir) if val_split else None, config,
                        preset, load_checkpoint(init) if init else None, starting)


def train_model(store: StoreConfig, plan: TrainingPlan, out: str | None = None, register: bool = True
                ) -> TrainedModel:
    """Trains as planned, saves the checkpoint to `out` (default: models/ in the data home) and registers it,
    unless not `register` (the first model registered becomes production)."""
    train_set, init = plan.train_set, plan.init
    checkpoint, result, metrics = train_detector(train_set, plan.val_set, out or models_dir(store), plan.config,
                                                 preset=plan.preset, init=init, **plan.starting)
    if register:
        register_checkpoint(connection(store), checkpoint, first_is_production=True,
                            training_data={"train": str(train_set.path), "images": str(train_set.image_dir)},
                            recipe={"preset": plan.preset, **dataclasses.asdict(plan.config),
                                    "init": init.version if init else None})
    return TrainedModel(checkpoint, result, describe_start(checkpoint.config.started_from),
                        format_table(metrics["val"]) if "val" in metrics else None)
