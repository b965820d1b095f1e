"""The manual "mine hard cases" flow: mining and export with the parameters a person chooses; and its mining
without Prefect, for `dataengine mine`.

the chosen model over the labelled set -> the pool index brought up to date -> its errors there (IoU and score
thresholds; error types and classes to keep) -> queries -> nearest pool images (k per query, up to the budget) ->
export to a folder or an s3:// prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from annotation_export.config import ExportConfig
from annotation_export.export import ExportResult
from dataengine.config import labelstudio_access_for, store_config
from detectors.config import DetectConfig
from fdb import StoreConfig
from mining.config import LabelErrorConfig, MatchConfig, MiningConfig
from mining.selection import MiningSummary
from tasks.detect import detect_labelled
from tasks.index import update_pool_index
from tasks.labelling import export
from tasks.mine import mine, read_labelled_set
from tasks.models import resolve_model


@flow(name="mine_hard_cases")
def mine_hard_cases(gt_json: str, gt_images: str | None = None, model_version: str | None = None,
                    mining: MiningConfig = MiningConfig(), match: MatchConfig = MatchConfig(),
                    detection: DetectConfig = DetectConfig(), export_config: ExportConfig = ExportConfig(),
                    export_to: str | None = None, dry_run: bool = False) -> tuple[MiningSummary, ExportResult | None]:
    """`dry_run` mines and records the selection but queues nothing for labelling. Returns what was mined, and its
    batch (None when nothing was exported)."""
    store = store_config()
    version, mined = _mine(_as_task, store, gt_json, gt_images, model_version, None, mining, match, detection,
                           LabelErrorConfig())
    exported = None
    if mined.selected and not dry_run:
        exported = export(store, mined.selection_id, export_to, export_config,
                          labelstudio_access_for(export_to))
    where = (f"exported as batch `{exported.batch_id}` ({exported.images} images, {exported.counts.get('objects')} "
             f"pre-annotations) to `{exported.location}`" if exported else "not exported")
    create_markdown_artifact(key="mine-hard-cases", description="Errors and selection",
                             markdown=f"```\n{mined.error_table}\n```\n\nselection `{mined.selection_id}`: "
                                      f"{mined.selected} images from {mined.queries} queries; {where}.")
    logger = get_run_logger()
    logger.info("errors of %s on the labelled set:\n%s", version, mined.error_table)
    logger.info(f"selection {mined.selection_id}: {mined.selected} images; {where}")
    return mined, exported


@dataclass(frozen=True)
class MinedLabelledSet:
    model_version: str
    mined: MiningSummary  # the errors on the labelled set, the queries and the selection


def mine_labelled_set(store: StoreConfig, gt_json: str, gt_images: str | None = None,
                      model_version: str | None = None, checkpoint: str | None = None,
                      mining: MiningConfig = MiningConfig(), match: MatchConfig = MatchConfig(),
                      detection: DetectConfig = DetectConfig(), label_errors: LabelErrorConfig = LabelErrorConfig(),
                      progress: bool = False) -> MinedLabelledSet:
    """The flow's mining, short of the export, as a plain call: the same steps, each its task's function. What
    `dataengine mine` runs: no Prefect server to start, and a refusal (no production model, a wrong path) is the
    command's one line, not a failed flow run's retries and tracebacks. `checkpoint`: a checkpoint file instead of
    `model_version` (registered on the way); `label_errors`: how the suspected label errors are judged, whose
    errors are left out of the queries; `progress`: progress bars while the labelled set is detected."""
    return MinedLabelledSet(*_mine(_as_function, store, gt_json, gt_images, model_version, checkpoint, mining, match,
                                   detection, label_errors, progress))


def _as_task(task):
    return task


_as_function = attrgetter("fn")  # a task's own function: no run record, no retries


def _mine(step, store: StoreConfig, gt_json: str, gt_images: str | None, model_version: str | None,
          checkpoint: str | None, mining: MiningConfig, match: MatchConfig, detection: DetectConfig,
          label_errors: LabelErrorConfig, progress: bool = False) -> tuple[str, MiningSummary]:
    """The model over the labelled set (and a targeted run's exemplars) -> the pool index brought up to date -> the
    pool mined with its errors. `step(task)` is what runs each step: the task inside the flow, its function
    outside."""
    version = step(resolve_model)(store, model_version, checkpoint)
    labelled = step(read_labelled_set)(store, gt_json, gt_images)
    step(detect_labelled)(store, version, labelled, detection, progress=progress)
    if mining.exemplars:  # a targeted run's own exemplars, pooled through the box head like the labelled boxes
        exemplars = step(read_labelled_set)(store, mining.exemplars)
        step(detect_labelled)(store, version, exemplars, detection, progress=progress)
    step(update_pool_index)(store, version, mining)
    return version, step(mine)(store, version, labelled, mining, match, label_errors)
