"""What the demo and the loop share about their synthetic scenes: the pool's image paths and the seed model the
sizes ask for (preset, steps, checks on val, the scenes' image size)."""

from __future__ import annotations

import json
from pathlib import Path

from detectors.config import TrainConfig
from fdb import StoreConfig
from tasks.demo import train_seed


def pool_uris(data_dir: Path) -> list[str]:
    """The pool's images, as absolute paths, in the order of its COCO file."""
    pool = json.loads((data_dir / "annotations" / "pool.json").read_text())
    return [str((data_dir / "images" / im["file_name"]).resolve()) for im in pool["images"]]


def train_seed_for(store: StoreConfig, data_dir: Path, out: str, sizes: dict, progress: bool) -> dict:
    """The seed Mask R-CNN on the scenes' train split as `sizes` asks (`preset`, `seed_steps`, `seed_patience`,
    `seed_check_every`), at the scenes' size up to 320 x 240. `detections_per_image` caps what the model keeps per
    image (default 100): a seed of a few steps keeps all 100 at a score threshold of 0, and the mask head runs on
    each, which is most of a tiny test loop's time."""
    capped = {"box_detections_per_img": sizes["detections_per_image"]} if "detections_per_image" in sizes else {}
    return train_seed(store, str(data_dir), out, seed_train_config(sizes), progress=progress,
                      preset=sizes.get("preset", "small"), min_size=min(sizes["height"], 240),
                      max_size=min(sizes["width"], 320), **capped)


def seed_train_config(sizes: dict) -> TrainConfig:
    return TrainConfig(steps=sizes["seed_steps"], patience=sizes.get("seed_patience"),
                       check_every=sizes.get("seed_check_every", TrainConfig.check_every))
