"""Mine: the model's errors on the labelled set (less those a suspected label error explains) point at the pool's
hard cases. (Reviewing the labelled set's own errors is `flows.review_labels`.)"""

from __future__ import annotations

from prefect import task

from fdb import StoreConfig
from jobs.context import connection, newest_labels
from mining.config import LabelErrorConfig, MatchConfig, MiningConfig
from mining.selection import MiningSummary, select_hard_cases
from records.coco import LabelledSet
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
