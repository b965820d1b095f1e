"""The plain functions behind `dataengine train / evaluate`: datasets on disk in, checkpoints out.

A COCO dataset directory holds `annotations/<split>.json` and `images/` (the layout `detectors.synthetic` and
`convert_pennfudan` write, and COCO's own); coco128's `annotations/instances.json` is read as split `instances`.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from detectors.checkpoint import Checkpoint, data_hash, load_checkpoint, new_version, save_checkpoint
from detectors.coco import CocoDetection, CocoSet, load_coco, pennfudan_to_coco
from detectors.early_stopping import BestOnHoldout
from detectors.config import TrainConfig
from detectors.evaluate import evaluate_predictions, predict
from detectors.model import build_model, preset_config
from detectors.train import TrainResult, seed_everything, train_model


def dataset_split(data_dir: str | Path, split: str, image_dir: str | Path | None = None) -> CocoSet:
    data_dir = Path(data_dir)
    path = data_dir / "annotations" / f"{split}.json"
    if not path.is_file():
        available = sorted(p.stem for p in (data_dir / "annotations").glob("*.json"))
        raise FileNotFoundError(f"no split {split!r} in {data_dir} (expected {path}); available: {available}")
    return load_coco(path, image_dir=image_dir or data_dir / "images")


def train_detector(train_set: CocoSet, val_set: CocoSet | None, out: str | Path,
                   train: TrainConfig = TrainConfig(), preset: str = "small", progress: bool = True,
                   init: Checkpoint | None = None, **model_overrides) -> tuple[Checkpoint, TrainResult, dict]:
    """Train on `train_set` from scratch, or fine-tune `init` (a project checkpoint with the same classes);
    evaluate on `val_set`, and save to `out` (a file, or a folder to hold `<version>.pt`)."""
    steps, seed = train.steps, train.seed
    seed_everything(seed)
    category_ids = [train_set.category_of[label] for label in sorted(train_set.category_of)]
    if init is not None:
        if (init.class_names, init.config.category_ids) != (train_set.class_names, category_ids):
            raise ValueError(f"checkpoint {init.version} has classes {init.class_names} (ids "
                             f"{init.config.category_ids}); the training set has {train_set.class_names} "
                             f"(ids {category_ids})")
        cfg, model = init.config, init.model
    else:
        # A box-only dataset builds a model without a mask head: nothing could train it.
        cfg = preset_config(preset, train_set.class_names, category_ids,
                            **{"masks": train_set.has_masks, **model_overrides})
        model = build_model(cfg)
    # Short runs warm up for a fifth of their steps at most.
    train_cfg = replace(train, warmup_steps=min(train.warmup_steps, steps // 5))
    # To the plateau: early stopping on val (the split that may choose things), never on a test split.
    hooks = ()
    if train.patience is not None and val_set is not None:
        hooks = (BestOnHoldout(val_set, sorted(val_set.images), train.check_every, train.patience,
                               check_start=init is not None),)
    result = train_model(model, CocoDetection(train_set, train=True), train_cfg, progress=progress, hooks=hooks)
    metrics = {"train": {"steps": result.steps, "seconds": round(result.seconds, 1),
                         "final_loss": round(sum(result.losses[-20:]) / len(result.losses[-20:]), 4),
                         **({"plateau": result.holdout} if result.holdout else {})}}
    if val_set is not None:
        metrics["val"] = evaluate_predictions(val_set, predict(model, val_set, progress=progress))
    digest = data_hash(Path(train_set.path).read_bytes(), sorted(train_set.images), seed, steps)
    version = new_version(cfg, digest)
    path = Path(out)
    if path.suffix != ".pt":
        path = path / f"{version}.pt"
    save_checkpoint(path, model, cfg, version, digest, metrics=_summary(metrics),
                    parent=init.version if init is not None else None)
    return load_checkpoint(path), result, metrics


def _summary(metrics: dict) -> dict:
    """The metrics worth keeping with a checkpoint: no curves or tables."""
    out = {"train": metrics.get("train", {})}
    for split in ("val",):
        if split in metrics:
            out[split] = {t: {k: m[k] for k in ("mAP", "mAP50", "mAP75", "per_class_AP")}
                          for t, m in metrics[split].items() if isinstance(m, dict) and "mAP" in m}
    return out


def convert_pennfudan(src: str | Path, out_dir: str | Path, n_train: int = 120, seed: int = 0) -> dict[str, Path]:
    """PennFudanPed -> a COCO dataset directory with a seeded train / val split; images are linked, not copied."""
    out = Path(out_dir)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    full = pennfudan_to_coco(src, out / "annotations" / "all.json")
    data = json.loads(full.read_text())
    ids = [im["id"] for im in data["images"]]
    random.Random(seed).shuffle(ids)
    splits = {"train": set(ids[:n_train]), "val": set(ids[n_train:])}
    paths = {}
    for name, keep in splits.items():
        subset = {**data, "images": [im for im in data["images"] if im["id"] in keep],
                  "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
        paths[name] = out / "annotations" / f"{name}.json"
        paths[name].write_text(json.dumps(subset))
    link = out / "images"
    if not link.exists():
        link.symlink_to(Path(src).resolve() / "PNGImages")
    return paths
