"""The plain functions behind `dataengine train / evaluate / detect`: datasets on disk, checkpoints, fdb.

A COCO dataset directory holds `annotations/<split>.json` and `images/` (the layout `detectors.synthetic` and
`convert_pennfudan` write, and COCO's own); coco128's `annotations/instances.json` is read as split `instances`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dataengine import config
from detectors.checkpoint import Checkpoint, data_hash, load_checkpoint, new_version, save_checkpoint
from detectors.coco import CocoDetection, CocoSet, load_coco, pennfudan_to_coco
from detectors.evaluate import evaluate_predictions, predict
from detectors.model import build_model, preset_config
from detectors.train import TrainConfig, TrainResult, seed_everything, train_model


def dataset_split(data_dir: str | Path, split: str, image_dir: str | Path | None = None) -> CocoSet:
    data_dir = Path(data_dir)
    path = data_dir / "annotations" / f"{split}.json"
    if not path.is_file():
        available = sorted(p.stem for p in (data_dir / "annotations").glob("*.json"))
        raise FileNotFoundError(f"no split {split!r} in {data_dir} (expected {path}); available: {available}")
    return load_coco(path, image_dir=image_dir or data_dir / "images")


def models_dir() -> Path:
    path = config.data_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def train_detector(train_set: CocoSet, val_set: CocoSet | None, preset: str = "small", steps: int = 300,
                   batch_size: int = 4, lr: float = 1e-3, seed: int = 0, max_minutes: float | None = None,
                   out: str | Path | None = None, fdb=None, progress: bool = True, init: Checkpoint | None = None,
                   **model_overrides) -> tuple[Checkpoint, TrainResult, dict]:
    """Train on `train_set` from scratch, or fine-tune `init` (a project checkpoint with the same classes);
    evaluate on `val_set`, save, and (with `fdb`) register the new version."""
    seed_everything(seed)
    category_ids = [train_set.category_of[label] for label in sorted(train_set.category_of)]
    if init is not None:
        if (init.class_names, init.config.category_ids) != (train_set.class_names, category_ids):
            raise ValueError(f"checkpoint {init.version} has classes {init.class_names} (ids "
                             f"{init.config.category_ids}); the training set has {train_set.class_names} "
                             f"(ids {category_ids})")
        cfg, model = init.config, init.model
    else:
        cfg = preset_config(preset, train_set.class_names, category_ids, **model_overrides)
        model = build_model(cfg)
    train_cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, max_minutes=max_minutes,
                            warmup_steps=min(50, steps // 5))
    result = train_model(model, CocoDetection(train_set, train=True), train_cfg, progress=progress)
    metrics = {"train": {"steps": result.steps, "seconds": round(result.seconds, 1),
                         "final_loss": round(sum(result.losses[-20:]) / len(result.losses[-20:]), 4)}}
    if val_set is not None:
        metrics["val"] = evaluate_predictions(val_set, predict(model, val_set, progress=progress))
    digest = data_hash(Path(train_set.path).read_bytes(), sorted(train_set.images), seed, steps)
    version = new_version(cfg, digest)
    path = Path(out) if out else models_dir() / f"{version}.pt"
    save_checkpoint(path, model, cfg, version, digest, metrics=_summary(metrics),
                    parent=init.version if init is not None else None)
    checkpoint = load_checkpoint(path)
    if fdb is not None:
        register(fdb, checkpoint)
    return checkpoint, result, metrics


def _summary(metrics: dict) -> dict:
    """The metrics worth keeping with a checkpoint: no curves or tables."""
    out = {"train": metrics.get("train", {})}
    for split in ("val",):
        if split in metrics:
            out[split] = {t: {k: m[k] for k in ("mAP", "mAP50", "mAP75", "per_class_AP")}
                          for t, m in metrics[split].items() if isinstance(m, dict) and "mAP" in m}
    return out


def register(fdb, checkpoint: Checkpoint) -> None:
    fdb.register_model(checkpoint.version, str(checkpoint.path.resolve()), checkpoint.class_names,
                       checkpoint.config.to_dict(), metrics=checkpoint.metrics, parent=checkpoint.parent)


def resolve_checkpoint(fdb, model: str | None = None, checkpoint: str | None = None) -> Checkpoint:
    """A checkpoint from a file, or from a model version registered in fdb (default: the newest)."""
    if checkpoint:
        loaded = load_checkpoint(checkpoint)
        if fdb is not None:
            register(fdb, loaded)
        return loaded
    doc = fdb.models.find_one({"_id": model}) if model else fdb.latest_model()
    if doc is None:
        known = [d["_id"] for d in fdb.models.find({}, {"_id": 1})]
        raise LookupError(f"no model {model!r} registered in fdb; known: {known}" if model else
                          "no model registered in fdb yet: train one with `dataengine train` first")
    return load_checkpoint(doc["checkpoint"])


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
