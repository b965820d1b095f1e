"""Tasks only the demo and the benchmarks need: synthetic scenes, a seed model, and the generator's ground truth
playing the annotation team."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from detectors.config import TrainConfig
from detectors.pipeline import dataset_split, train_detector
from detectors.synthetic import generate, hard_case_share, oracle_labels
from detectors.weights import describe_start
from fdb import StoreConfig
from jobs.context import connection, register_checkpoint


@task(name="generate synthetic street scenes", cache_policy=NONE)
def generate_scenes(data_dir: str, sizes: dict, progress: bool = True) -> str:
    """The demo's scenes (train from the suburbs only, val and pool with the markets), unless already there."""
    annotations = Path(data_dir) / "annotations"
    if not (annotations / "pool.json").is_file() or (sizes.get("test") and not (annotations / "test.json").is_file()):
        generate(data_dir, sizes["train"], sizes["val"], sizes["pool"], seed=sizes.get("data_seed", 0),
                 width=sizes["width"], height=sizes["height"], progress=progress,
                 train_districts=sizes["train_districts"], n_test=sizes.get("test", 0),
                 hard_share=sizes.get("hard_share"), n_test_tail=sizes.get("test_tail"))
    return data_dir


@task(name="train the seed model", cache_policy=NONE)
def train_seed(store: StoreConfig, data_dir: str, out: str, train: TrainConfig, progress: bool = True,
               **model_overrides) -> dict:
    """A model trained from scratch on the train split, evaluated on val, saved to `out` and registered; an
    existing checkpoint at `out` is registered and reused (a re-run resumes)."""
    from detectors.checkpoint import load_checkpoint  # noqa: PLC0415
    from detectors.evaluate import format_table  # noqa: PLC0415

    if Path(out).is_file():
        checkpoint, summary = load_checkpoint(out), "already trained"
    else:
        checkpoint, result, metrics = train_detector(dataset_split(data_dir, "train"), dataset_split(data_dir, "val"),
                                                     out, train, progress=progress, **model_overrides)
        summary = f"{result.seconds / 60:.1f} min; val " + format_table(metrics["val"]).splitlines()[0]
    register_checkpoint(connection(store), checkpoint, first_is_production=True,
                        training_data={"train": str(Path(data_dir) / "annotations" / "train.json")},
                        recipe={"preset": checkpoint.config.preset, **asdict(train)})
    return {"version": checkpoint.version, "path": str(checkpoint.path), "summary": summary,
            "started_from": describe_start(checkpoint.config.started_from)}


@task(name="the oracle labels a batch", cache_policy=NONE)
def oracle_label_batch(batch_location: str, pool_json: str, out: str) -> str:
    return str(oracle_labels(Path(batch_location) / "manifest.json", Path(pool_json), Path(out)))


@task(name="share of hard cases", cache_policy=NONE)
def hard_cases(batches: dict[str, list[str]], pool_json: str) -> dict:
    return {name: hard_case_share(uris, Path(pool_json)) for name, uris in batches.items()}
