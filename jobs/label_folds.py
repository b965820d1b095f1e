"""Out-of-fold judges for a labelled set that is also the training set: k models, each trained without one fold,
each detecting (with taps, into fdb) over the fold it never saw. `mining.label_errors.find_label_errors` given
their versions then judges every image with the model that did not train on it ("k_fold" predictions).

A model that trained on a label has learned it, right or wrong: its predictions agree with the very mistakes
they are meant to find. Folds are drawn by a hash of the file name, so the same set always splits the same way."""

from __future__ import annotations

import json
from pathlib import Path

from detectors.checkpoint import load_checkpoint
from detectors.config import TrainConfig
from detectors.pipeline import train_detector
from fdb import FeatureDB
from jobs.context import register_checkpoint
from jobs.detect import detect_images
from records.coco import CocoSet, load_coco
from records.hashing import file_sha256, sha256_hex


def fold_of(file_name: str, folds: int) -> int:
    return int(sha256_hex(file_name), 16) % folds


def fold_judges_under(home: str | Path, fdb: FeatureDB, labelled: CocoSet, folds: int, train: TrainConfig,
                      preset: str = "small", progress: bool = False) -> list[str]:
    """`fold_models` in a work folder of the data `home` named by the labelled set's bytes and the recipe, so a
    re-run with the same set and recipe reuses the fold models it trained."""
    digest = file_sha256(labelled.path)[:12]
    work = Path(home) / "label_folds" / f"{digest}-{preset}-{train.steps}"
    return fold_models(fdb, labelled, folds, work, train, preset, progress=progress)


def fold_models(fdb: FeatureDB, labelled: CocoSet, folds: int, work_dir: str | Path,
                train: TrainConfig = TrainConfig(), preset: str = "small", progress: bool = False,
                **model_overrides) -> list[str]:
    """Train `folds` models, fold f's without the images of fold f, register them (as arms: never served) with
    the file they trained on, and run each over its held-out fold; returns their versions. A fold model already
    trained in `work_dir` is reused."""
    if folds < 2:
        raise ValueError(f"k-fold needs at least 2 folds, got {folds}")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    doc = json.loads(Path(labelled.path).read_text())
    fold = {im["id"]: fold_of(im["file_name"], folds) for im in doc["images"]}
    versions = []
    for f in range(folds):
        held_out = [i for i in labelled.images if fold[i] == f]
        if not held_out or len(held_out) == len(labelled.images):
            raise ValueError(f"fold {f} of {folds} holds {len(held_out)} of {len(labelled.images)} images: "
                             "too few images for that many folds")
        train_doc = {**doc, "images": [im for im in doc["images"] if fold[im["id"]] != f],
                     "annotations": [a for a in doc["annotations"] if fold[a["image_id"]] != f]}
        train_json = work / f"fold{f}-of-{folds}-train.json"
        train_json.write_text(json.dumps(train_doc))
        train_set = load_coco(train_json, image_dir=labelled.image_dir)
        out = work / f"fold{f}-of-{folds}.pt"
        if out.is_file():
            checkpoint = load_checkpoint(out)
        else:
            checkpoint, _, _ = train_detector(train_set, None, out, train, preset=preset, progress=progress,
                                              **model_overrides)
        register_checkpoint(fdb, checkpoint, role="arm", recipe={"preset": preset, "steps": train.steps},
                            training_data={"train": str(train_json), "images": str(labelled.image_dir),
                                           "fold": f, "folds": folds})
        uris = [str(labelled.image_path(i).resolve()) for i in held_out]
        detect_images(fdb, checkpoint, uris, split="val", labelled=True, progress=progress)
        versions.append(checkpoint.version)
    return versions
