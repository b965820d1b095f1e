"""Early stopping on a held-out slice of the labelled data: train to the plateau, keep the best weights.

A training hook (`train_model(..., hooks=[...])`): before the first step and every `every` steps it scores the model
with pycocotools (bbox mAP) on labelled images the run does not train on, keeps a copy of the best weights, stops
after `patience` checks without improvement, and puts the best weights back at the end. The weights the run
started from are the first check, so a fine-tuning run never ends worse on the held-out slice than it began: if
every step hurts, the run returns its starting model.

The slice must be out of sample for the starting model too, or the first check wins by memory: measured on the
demo (benchmarks/results/finetune.json), a slice of the seed's own training images scored the seed 0.78-0.84 and
every fine-tuned model lower, so early stopping kept the seed in 14 of 18 runs. So fine-tuning holds out a share
of the *new* images only (`holdout_ids(..., among=new)`), which no earlier model trained on. Which images are held
out is decided by their file names, so every arm, training seed and round holds out the same ones, and a labelled
image held out once is never trained on by any later round either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from detectors.evaluate import CocoEvaluator, dataset_labels
from detectors.inference import run_inference
from records.coco import CocoSet
from records.hashing import sha256_hex


def holdout_ids(coco: CocoSet, share: float, among: set[str] | None = None) -> list[int]:
    """The ids of about `share` of the set's images (of those whose file names are in `among`, when given), chosen
    by a hash of each file name: stable across runs, arms and rounds, no random state. None when `share` is 0 or
    fewer than two images are eligible; at least one otherwise, and never every eligible image."""
    eligible = [i for i in coco.images if among is None or coco.images[i]["file_name"] in among]
    if share <= 0 or len(eligible) < 2:
        return []
    ranked = sorted(eligible, key=lambda i: sha256_hex(coco.images[i]["file_name"]))
    count = min(len(ranked) - 1, max(1, round(share * len(ranked))))
    return sorted(ranked[:count])


@dataclass
class HoldoutCurve:
    """What the hook saw: (step, bbox mAP on the held-out slice) per check, and the step whose weights were kept."""

    checks: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0
    best_map: float = float("-inf")
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"checks": [[s, round(m, 4)] for s, m in self.checks], "best_step": self.best_step,
                "best_map": round(self.best_map, 4), "seconds": round(self.seconds, 1)}


class BestOnHoldout:
    """Training hook: check every `every` steps on the held-out images, keep the best weights, stop after `patience`
    checks without an improvement of more than `min_delta` (None: never stop early, only keep the best)."""

    def __init__(self, coco: CocoSet, image_ids: list[int], every: int, patience: int | None = 2,
                 min_delta: float = 0.0, check_start: bool = True):
        if not image_ids:
            raise ValueError("early stopping needs at least one held-out image")
        if every < 1:
            raise ValueError(f"every must be at least 1 step, got {every}")
        self.coco, self.image_ids, self.every = coco, list(image_ids), every
        self.patience, self.min_delta = patience, min_delta
        # A run from random weights has nothing worth keeping at step 0: its first check would only cost time.
        self.check_start = check_start
        self.curve = HoldoutCurve()
        self._best_state: dict[str, torch.Tensor] | None = None
        self._since_best = 0

    def score(self, model: torch.nn.Module) -> float:
        start = time.monotonic()
        was_training = model.training
        [metrics] = run_inference(model, dataset_labels(self.coco),
                                  [(i, self.coco.image_path(i)) for i in self.image_ids],
                                  [CocoEvaluator(self.coco, {"holdout": self.image_ids})], progress=False)
        model.train(was_training)
        self.curve.seconds += time.monotonic() - start
        return metrics["holdout"]["bbox"]["mAP"]

    def _check(self, step: int, model: torch.nn.Module) -> None:
        value = self.score(model)
        self.curve.checks.append((step, value))
        if value > self.curve.best_map + self.min_delta or self._best_state is None:
            self.curve.best_step, self.curve.best_map = step, value
            self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self._since_best = 0
        else:
            self._since_best += 1

    def before_train(self, model: torch.nn.Module) -> None:
        if self.check_start:
            self._check(0, model)

    def after_step(self, step: int, model: torch.nn.Module) -> bool:
        """`step` counts finished steps; True asks the loop to stop."""
        if step % self.every:
            return False
        self._check(step, model)
        return self.patience is not None and self._since_best >= self.patience

    def after_train(self, model: torch.nn.Module, steps: int) -> None:
        if steps % self.every:
            self._check(steps, model)  # the last steps since the last check count too
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
