"""The `retrain` flow: labels back -> a candidate on everything labelled so far -> the gate against production ->
promoted or not, with the decision in fdb, in a report and as a Prefect artifact. The next nightly then runs
whichever model is in production."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from dataengine.config import store_config
from detectors.config import FinetuneConfig
from mining.config import EvaluationConfig
from tasks.retrain import retrain_candidate
from jobs.retrain import RetrainResult


@flow(name="retrain")
def retrain(data_dir: str, recipe: FinetuneConfig = FinetuneConfig(), promote: str = "auto",
            base_model: str | None = None, train_split: str = "train", eval_split: str = "val",
            test_split: str | None = None, evaluation: EvaluationConfig = EvaluationConfig()) -> RetrainResult:
    """`data_dir` holds the labelled set (`annotations/<train_split>.json`), the fixed evaluation set
    (`annotations/<eval_split>.json`) and `images/`. `promote`: "auto" (switch when the gate passes) or "never"
    (judge and report only). `base_model`: fine-tune this version instead of production. `test_split`: a split
    that fed nothing, on which production and the candidate are also reported (never gated on)."""
    annotations = Path(data_dir) / "annotations"
    result = retrain_candidate(store_config(), str(annotations / f"{train_split}.json"),
                               str(annotations / f"{eval_split}.json"), str(Path(data_dir) / "images"), recipe,
                               promote, base_model,
                               test_json=str(annotations / f"{test_split}.json") if test_split else None,
                               evaluation=evaluation)
    create_markdown_artifact(key="retrain-decision", description="the promotion gate's decision",
                             markdown=Path(result.report).read_text())
    get_run_logger().info("candidate %s: %s; production %s; report %s", result.candidate,
                          "promoted" if result.promoted else "not promoted", result.production_after, result.report)
    return result
