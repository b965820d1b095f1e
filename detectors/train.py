"""Training and fine-tuning: AdamW (or SGD with momentum) with linear warm-up and cosine decay.

One loop serves training from scratch, fine-tuning a checkpoint, and the retrain arms of the comparison:
`train_model(model, dataset, steps)`. `oversample` weights images (the mined batch can be drawn more often);
`hooks` watch the run (detectron2's way: `before_train(model)`, `after_step(step, model) -> stop?`,
`after_train(model, steps)`), e.g. `detectors.early_stopping.BestOnHoldout`.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler
from tqdm import tqdm

from detectors.coco import CocoDetection, collate_fn
from detectors.config import TrainConfig
from detectors.model import without_masks


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False
    holdout: dict | None = None  # the early-stopping hook's curve, when there was one


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return 0.001 + (1 - 0.001) * step / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adamw or sgd")


def _batches(dataset, cfg: TrainConfig, weights):
    generator = torch.Generator().manual_seed(cfg.seed)
    if weights is not None:
        sampler = WeightedRandomSampler(weights, num_samples=len(dataset), replacement=True, generator=generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_fn, drop_last=True,
                        num_workers=0)
    while True:
        yield from loader


def train_model(model: torch.nn.Module, dataset: CocoDetection, cfg: TrainConfig,
                oversample: list[float] | None = None, progress: bool = True, hooks: tuple = ()) -> TrainResult:
    """Train `model` in place for `cfg.steps` steps (or until `cfg.max_minutes`, or until a hook asks to stop). A
    box-only dataset trains a Mask R-CNN without its mask branch (no mask loss), which is left as it was."""
    heads = getattr(model, "roi_heads", None)
    if heads is not None and heads.has_mask() and not dataset.coco.has_masks:
        with without_masks(model):
            return _train(model, dataset, cfg, oversample, progress, hooks)
    return _train(model, dataset, cfg, oversample, progress, hooks)


def _train(model: torch.nn.Module, dataset: CocoDetection, cfg: TrainConfig, oversample: list[float] | None,
           progress: bool, hooks: tuple) -> TrainResult:
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"{len(dataset)} training images, fewer than one batch of {cfg.batch_size}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    result = TrainResult(steps=0, seconds=0.0)
    start = time.monotonic()
    for hook in hooks:
        hook.before_train(model)
    bar = tqdm(total=cfg.steps, desc="training", unit="step", disable=not progress)
    for step, (images, targets) in zip(range(cfg.steps), _batches(dataset, cfg, oversample)):
        losses = model(list(images), list(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}: {({k: v.item() for k, v in losses.items()})}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        result.losses.append(loss.item())
        result.steps = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(result.losses[-20:]):.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
        stop = [hook.after_step(step + 1, model) for hook in hooks]
        if any(stop) or (cfg.max_minutes and time.monotonic() - start > cfg.max_minutes * 60):
            result.stopped_early = step + 1 < cfg.steps
            break
    bar.close()
    for hook in hooks:
        hook.after_train(model, result.steps)
        if hasattr(hook, "curve"):
            result.holdout = hook.curve.as_dict()
    result.seconds = time.monotonic() - start
    model.eval()
    return result
