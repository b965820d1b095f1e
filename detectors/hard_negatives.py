"""Hard-negative mining for the box head: make unlabelled look-alikes count in training.

torchvision's RoI sampler draws the background proposals of an image at random. An image full of sign-like
distractors then yields only one to three proposals on them per step, because most of an image's ~2000
proposals are empty road and sky, so a mined batch of such images teaches the box head little (the probe in
../shared/README.md: no fall in distractor false positives after fine-tuning). With this hook, part of each
image's background quota goes to the proposals the box head currently scores highest as some class:
online hard-example mining (Shrivastava et al., 2016) restricted, for cost, to the proposals the RPN ranks
highest and, to target background false positives, to proposals that do not overlap any labelled object.

It is a hook, not a subclass: `enable(model)` swaps the RoI heads' sampler for one that looks at the current
step's features and proposals, and returns a handle whose `remove()` restores the model as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torchvision.ops import box_iou


@dataclass
class _Step:
    """What the sampler needs from the current step, captured by the hooks."""
    features: dict | None = None
    image_shapes: list | None = None
    targets: list | None = None
    proposals: list | None = None  # with the ground-truth boxes appended, as the sampler's labels are


@dataclass
class HardNegativeSampler:
    """Positives as torchvision samples them; of the negative quota, `hard_fraction` goes to the highest-scoring
    background proposals among the RPN's top `candidates` that overlap no labelled object by more than
    `background_iou`, and the rest is drawn at random from the remaining negatives."""
    roi_heads: torch.nn.Module
    batch_size_per_image: int
    positive_fraction: float
    hard_fraction: float = 0.5
    candidates: int = 128
    background_iou: float = 0.1
    step: _Step = field(default_factory=_Step)
    last_hard: list[torch.Tensor] = field(default_factory=list)  # per image, the hard negatives of the last step

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hard = self._hard_candidates(matched_idxs)
        pos_masks, neg_masks = [], []
        self.last_hard = []
        for i, labels in enumerate(matched_idxs):
            positive = torch.where(labels >= 1)[0]
            negative = torch.where(labels == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos = positive[torch.randperm(positive.numel(), device=labels.device)[:num_pos]]
            chosen_hard = hard[i][: int(num_neg * self.hard_fraction)] if hard is not None else labels.new_empty(0)
            rest = negative[~torch.isin(negative, chosen_hard)]
            rest = rest[torch.randperm(rest.numel(), device=labels.device)[: num_neg - chosen_hard.numel()]]
            pos_mask = torch.zeros_like(labels, dtype=torch.uint8)
            neg_mask = torch.zeros_like(labels, dtype=torch.uint8)
            pos_mask[pos] = 1
            neg_mask[torch.cat([chosen_hard, rest])] = 1
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
            self.last_hard.append(chosen_hard)
        return pos_masks, neg_masks

    @torch.no_grad()
    def _hard_candidates(self, matched_idxs: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """Per image, indices of background proposals sorted by the box head's foreground score, highest first."""
        step = self.step
        if step.features is None or step.proposals is None or step.targets is None:
            return None
        picked = []
        for labels, boxes, target in zip(matched_idxs, step.proposals, step.targets):
            background = labels == 0
            gt = target["boxes"]
            if gt.numel():
                background &= box_iou(boxes, gt).max(dim=1).values <= self.background_iou
            # Proposals come out of the RPN sorted by objectness, so the first background ones are its top picks.
            picked.append(torch.where(background)[0][: self.candidates])
        if not any(p.numel() for p in picked):
            return picked
        heads = self.roi_heads
        pooled = heads.box_roi_pool(step.features, [b[p] for b, p in zip(step.proposals, picked)], step.image_shapes)
        logits, _ = heads.box_predictor(heads.box_head(pooled))
        foreground = 1 - logits.softmax(-1)[:, 0]
        out, start = [], 0
        for p in picked:
            scores = foreground[start:start + p.numel()]
            start += p.numel()
            out.append(p[scores.argsort(descending=True)])
        return out


class HardNegativeHandle:
    def __init__(self, roi_heads, original_sampler, hooks):
        self._roi_heads, self._sampler, self._hooks = roi_heads, original_sampler, hooks

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._roi_heads.fg_bg_sampler = self._sampler
        if "add_gt_proposals" in vars(self._roi_heads):
            del self._roi_heads.add_gt_proposals  # the class's method shows through again


def enable(model: torch.nn.Module, hard_fraction: float = 0.5, candidates: int = 128,
           background_iou: float = 0.1) -> HardNegativeHandle:
    """Turn hard-negative mining on for `model`'s box head (training only; inference is untouched)."""
    heads = model.roi_heads
    original = heads.fg_bg_sampler
    sampler = HardNegativeSampler(heads, original.batch_size_per_image, original.positive_fraction,
                                  hard_fraction, candidates, background_iou)

    def capture_inputs(module, args, kwargs):
        features, _proposals, image_shapes = args[:3]
        targets = args[3] if len(args) > 3 else kwargs.get("targets")
        sampler.step = _Step(features, image_shapes, targets)

    original_add_gt = heads.add_gt_proposals

    def add_gt_proposals(proposals, gt_boxes):
        with_gt = original_add_gt(proposals, gt_boxes)
        sampler.step.proposals = list(with_gt)  # the heads replace these entries with the sampled subsets
        return with_gt

    hook = heads.register_forward_pre_hook(capture_inputs, with_kwargs=True)
    heads.add_gt_proposals = add_gt_proposals
    heads.fg_bg_sampler = sampler
    return HardNegativeHandle(heads, original, [hook])
