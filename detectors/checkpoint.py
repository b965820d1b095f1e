"""Checkpoints: weights with everything needed to use them (classes, config, training data hash, metrics).

Saved with plain types only, so they load with `torch.load(..., weights_only=True)`: a checkpoint from elsewhere
cannot run code on load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models.detection import MaskRCNN

from detectors.model import ModelConfig, build_model
from records.hashing import sha256_hex


@dataclass
class Checkpoint:
    model: MaskRCNN
    config: ModelConfig
    version: str
    data_hash: str
    metrics: dict
    parent: str | None
    path: Path

    @property
    def class_names(self) -> list[str]:
        return self.config.class_names


def new_version(cfg: ModelConfig, data_hash: str) -> str:
    """A readable, unique model version: preset, training data, time."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{cfg.preset}-{data_hash[:8]}-{stamp}"


def data_hash(*parts) -> str:
    """A hash of what a model was trained on (annotation file bytes, image ids, ...)."""
    return sha256_hex(b"".join((part if isinstance(part, bytes) else repr(part).encode()) + b"\x1f" for part in parts))


def save_checkpoint(path: str | Path, model: MaskRCNN, cfg: ModelConfig, version: str, data_hash: str,
                    metrics: dict | None = None, parent: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "gaze-data-engine/maskrcnn/1",
        "version": version,
        "config": cfg.to_dict(),
        "data_hash": data_hash,
        "metrics": metrics or {},
        "parent": parent,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_suffix(path.suffix + ".partial")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash mid-save never leaves a half-written checkpoint under the real name
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if payload.get("format") != "gaze-data-engine/maskrcnn/1":
        raise ValueError(f"{path} is not a gaze-data-engine checkpoint (format {payload.get('format')!r})")
    cfg = ModelConfig(**payload["config"])
    model = build_model(cfg, load_weights=False)  # the architecture only: the checkpoint holds every weight
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return Checkpoint(model, cfg, payload["version"], payload["data_hash"], payload["metrics"], payload["parent"],
                      path)
