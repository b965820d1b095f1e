"""The manual "mine hard cases" flow: mining and export with the parameters a person chooses.

errors of the chosen model on the labelled set (IoU and score thresholds; error types and classes to keep) ->
queries -> nearest pool images (k per query, up to the budget) -> export to a folder or an s3:// prefix.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks import export, load_model, mine


@flow(name="mine_hard_cases")
def mine_hard_cases(gt_json: str, gt_images: str | None = None, model_version: str | None = None, k: int = 20,
                    budget: int = 200, iou: float = 0.5, score: float = 0.5, types: list[str] | None = None,
                    classes: list[str] | None = None, level: str = "detection", backend: str = "auto",
                    export_to: str | None = None, export_min_score: float = 0.5, dry_run: bool = False) -> dict:
    """`dry_run` mines and records the selection but queues nothing for labelling."""
    checkpoint = load_model(model_version)
    mined = mine(checkpoint, gt_json, gt_images, k=k, budget=budget, iou=iou, score=score, types=types,
                 classes=classes, level=level, backend=backend)
    exported = None
    if mined["selected"] and not dry_run:
        exported = export(mined["selection_id"], export_to, min_score=export_min_score)
    where = (f"exported as batch `{exported['batch_id']}` ({exported['images']} images, {exported['objects']} "
             f"pre-annotations) to `{exported['location']}`" if exported else "not exported")
    create_markdown_artifact(key="mine-hard-cases", description="Errors and selection",
                             markdown=f"```\n{mined['error_table']}\n```\n\nselection `{mined['selection_id']}`: "
                                      f"{mined['selected']} images from {mined['queries']} queries; {where}.")
    logger = get_run_logger()
    logger.info("errors of %s on the labelled set:\n%s", checkpoint.version, mined["error_table"])
    logger.info(f"selection {mined['selection_id']}: {mined['selected']} images; {where}")
    return {**mined, "export": exported}
