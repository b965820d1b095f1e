"""Retrain: a candidate retrained on everything labelled so far and judged by the gate, and the mined / random /
control arms fine-tuned from one seed, compared and reported."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NONE

from detectors.config import FinetuneConfig
from fdb import StoreConfig
from fdb import runs as run_store
from jobs.context import connection, newest_labels
from mining.config import EvaluationConfig, MatchConfig
from records.coco import load_coco

if TYPE_CHECKING:
    from jobs.retrain import RetrainResult


@task(name="fine-tune and score the arms", cache_policy=NONE)
def compare_arms(store: StoreConfig, seed_checkpoint: str, train_json: str, eval_json: str, image_dir: str,
                 batches: dict, query_images: list[int], work_dir: str, recipe: FinetuneConfig = FinetuneConfig(),
                 progress: bool = False, test_json: str | None = None, queried_types: list[str] | None = None,
                 evaluation: EvaluationConfig = EvaluationConfig()):
    """The mined / random / control experiment (`jobs.experiment`), its arm models registered in fdb; reported
    on the test split `test_json` when given (refused if it fed anything), else on the val split."""
    from jobs.experiment import run_experiment  # noqa: PLC0415 - torch training, only for this task

    test = load_coco(test_json, image_dir=image_dir) if test_json else None
    return run_experiment(seed_checkpoint, load_coco(newest_labels(store, train_json), image_dir=image_dir),
                          batches, load_coco(newest_labels(store, eval_json), image_dir=image_dir),
                          query_images, work_dir, recipe, fdb=connection(store), progress=progress, test=test,
                          config=evaluation, queried_types=queried_types)


@task(name="retrain a candidate and judge it", cache_policy=NONE)
def retrain_candidate(store: StoreConfig, train_json: str, eval_json: str, image_dir: str,
                      recipe: FinetuneConfig = FinetuneConfig(), promote: str = "auto", base: str | None = None,
                      match: MatchConfig = MatchConfig(), progress: bool = False,
                      query_images: list[int] | None = None, allow_no_batches: bool = False,
                      test_json: str | None = None, evaluation: EvaluationConfig = EvaluationConfig()
                      ) -> RetrainResult:
    """A candidate on everything labelled so far, the gate against production, a promotion if it passes."""
    from jobs.retrain import RetrainSets, RetrainSettings, retrain_and_gate  # noqa: PLC0415 - torch training

    sets = RetrainSets(newest_labels(store, train_json), newest_labels(store, eval_json), image_dir, test_json)
    settings = RetrainSettings(recipe, promote, base, match, evaluation, tuple(query_images or ()), allow_no_batches)
    work = Path(store.home) / "retrain" / store.db_name / dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return retrain_and_gate(connection(store), sets, work, settings, progress)


@task(name="write the comparison report", cache_policy=NONE)
def write_comparison_report(comparison, out_dir: str, title: str, facts: dict, montage: str | None = None,
                            hard_case_precision: dict | None = None, queried_types: list[str] | None = None,
                            store: StoreConfig | None = None, model_version: str | None = None) -> dict:
    """The report's files (`html`, `markdown`, `json`, plots); with `store`, also recorded as a `compare` run of
    `model_version` (the seed the arms started from), so the review app can link it."""
    from mining.report import write_report  # noqa: PLC0415 - matplotlib, only for this task

    report = {k: str(v) for k, v in write_report(comparison, out_dir, title, facts, montage=montage,
                                                 hard_case_precision=hard_case_precision,
                                                 queried_types=queried_types).items()}
    if store is not None:
        run_store.record_report(connection(store), "compare", {"title": title, "facts": facts}, report,
                                model_version=model_version)
    return report
