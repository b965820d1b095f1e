"""Mine: the model's errors on the labelled set (less those a suspected label error explains) point at the pool's
hard cases; the label errors are judged by models that never trained on the images they judge."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from detectors.config import TrainConfig
from fdb import StoreConfig
from jobs.context import connection, newest_labels
from mining.config import LabelErrorConfig, MatchConfig, MiningConfig
from mining.label_errors import LabelErrorReport, find_label_errors
from mining.selection import MiningSummary, query_image_ids, select_hard_cases
from records.coco import LabelledSet, load_coco
from tasks.retries import IO_RETRIES


@task(name="read the labelled set", **IO_RETRIES)
def read_labelled_set(store: StoreConfig, gt_json: str, gt_images: str | None = None) -> LabelledSet:
    """The labelled set's newest version (`jobs.context.newest_labels`), read once for a run: the steps that
    detect on it, mine with its errors and name a night by it all take it from here."""
    return LabelledSet.read(newest_labels(store, gt_json), gt_images)


@task(name="mine hard cases", **IO_RETRIES)
def mine(store: StoreConfig, model_version: str, labelled: LabelledSet, mining: MiningConfig = MiningConfig(),
         match: MatchConfig = MatchConfig(), label_config: LabelErrorConfig = LabelErrorConfig()) -> MiningSummary:
    """Errors on the labelled set (less those a suspected label error explains) -> queries -> the pool's nearest
    images, recorded as a selection."""
    result = select_hard_cases(connection(store), model_version, labelled.coco, mining, match, out_dir=store.home,
                               label_config=label_config)
    return result.summary()


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


@task(name="query images of a selection", **IO_RETRIES)
def query_images(store: StoreConfig, batch_id: str, eval_json: str, image_dir: str | None = None) -> list[int]:
    """The evaluation set's ids of the images whose errors queried the batch's selection: the query subset."""
    evaluation = load_coco(newest_labels(store, eval_json), image_dir=image_dir)
    return query_image_ids(connection(store), batch_id, evaluation)
