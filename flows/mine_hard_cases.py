"""The manual "mine hard cases" flow: mining with the parameters a person chooses."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from tasks import load_model, mine


@flow(name="mine_hard_cases", log_prints=True)
def mine_hard_cases(gt_json: str, gt_images: str | None = None, model_version: str | None = None, k: int = 20,
                    budget: int = 200, iou: float = 0.5, score: float = 0.5, types: list[str] | None = None,
                    classes: list[str] | None = None, level: str = "detection", backend: str = "auto") -> dict:
    checkpoint = load_model(model_version)
    mined = mine(checkpoint, gt_json, gt_images, k=k, budget=budget, iou=iou, score=score, types=types,
                 classes=classes, level=level, backend=backend)
    create_markdown_artifact(key="mine-hard-cases", description="Errors and selection",
                             markdown=f"```\n{mined['error_table']}\n```\n\nselection `{mined['selection_id']}`: "
                                      f"{mined['selected']} images from {mined['queries']} queries")
    print(mined["error_table"])
    return mined
