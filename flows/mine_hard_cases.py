"""The manual "mine hard cases" flow: mining and export with the parameters a person chooses.

the chosen model over the labelled set -> the pool index brought up to date -> its errors there (IoU and score
thresholds; error types and classes to keep) -> queries -> nearest pool images (k per query, up to the budget) ->
export to a folder or an s3:// prefix.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from annotation_export.config import ExportConfig
from annotation_export.export import ExportResult
from dataengine.config import labelstudio_access_for, store_config
from detectors.config import DetectConfig
from mining.config import MatchConfig, MiningConfig
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
    version = resolve_model(store, model_version)
    labelled = read_labelled_set(store, gt_json, gt_images)
    detect_labelled(store, version, labelled, detection)
    if mining.exemplars:  # a targeted run's own exemplars, pooled through the box head like the labelled boxes
        detect_labelled(store, version, read_labelled_set(store, mining.exemplars), detection)
    update_pool_index(store, version, mining)
    mined = mine(store, version, labelled, mining, match)
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
