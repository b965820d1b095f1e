"""Inference with feature taps: detections, each with its own box-head FC vector, and one vector per image.

torchvision's `RoIHeads.postprocess_detections` flattens (proposal, class) pairs, filters and NMS-es them, and
returns boxes without saying which proposal each came from. `detect_with_features` runs the same steps with the
proposal index carried along, so every kept detection gets the 1024-d `box_head` (fc7) vector of its own proposal
— the vector the box predictor scored it from. Re-running the predictor on it reproduces the detection's score.

The image vector is the mean of each FPN level (P2-P5) over the image's own area, leaving out the zero padding
that batching adds, concatenated: 4 x 256 = 1024 values for the standard FPN.

Everything else follows torchvision's `GeneralizedRCNN.forward` in eval mode, so the taps cost only the pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.ops import boxes as box_ops

from records import BOX_LAYER, IMAGE_LAYER

__all__ = ["BOX_LAYER", "IMAGE_LAYER", "TappedDetections", "detect_with_features", "image_vectors"]


@dataclass
class TappedDetections:
    """One image's detections, in the original image's pixel coordinates."""

    boxes: torch.Tensor  # (N, 4) xyxy
    scores: torch.Tensor  # (N,)
    labels: torch.Tensor  # (N,) contiguous labels, 1..K
    masks: torch.Tensor | None  # (N, 1, H, W) probabilities
    box_features: torch.Tensor  # (N, 1024) fc7 vector of each detection's proposal
    proposal_index: torch.Tensor  # (N,) index of that proposal among the image's proposals
    image_feature: torch.Tensor  # (1024,)


def _postprocess_with_index(roi_heads, class_logits, box_regression, proposals, image_shapes):
    """torchvision's postprocess_detections, also returning each kept detection's proposal index."""
    num_classes = class_logits.shape[-1]
    boxes_per_image = [p.shape[0] for p in proposals]
    pred_boxes = roi_heads.box_coder.decode(box_regression, proposals)
    pred_scores = F.softmax(class_logits, -1)
    out = []
    for boxes, scores, image_shape in zip(pred_boxes.split(boxes_per_image, 0),
                                          pred_scores.split(boxes_per_image, 0), image_shapes):
        boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
        n = scores.shape[0]
        labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
        proposal = torch.arange(n, device=scores.device).view(-1, 1).expand_as(scores)
        boxes, scores = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1)
        labels, proposal = labels[:, 1:].reshape(-1), proposal[:, 1:].reshape(-1)
        inds = torch.where(scores > roi_heads.score_thresh)[0]
        boxes, scores, labels, proposal = boxes[inds], scores[inds], labels[inds], proposal[inds]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels, proposal = boxes[keep], scores[keep], labels[keep], proposal[keep]
        keep = box_ops.batched_nms(boxes, scores, labels, roi_heads.nms_thresh)[: roi_heads.detections_per_img]
        out.append((boxes[keep], scores[keep], labels[keep], proposal[keep]))
    return out


def image_vectors(features: dict[str, torch.Tensor], image_sizes: list[tuple[int, int]], padded: tuple[int, int],
                  levels=("0", "1", "2", "3")) -> torch.Tensor:
    """(B, 256 * len(levels)): per image, the mean of each FPN level over the image's unpadded area."""
    out = []
    for i, (h, w) in enumerate(image_sizes):
        parts = []
        for level in levels:
            fmap = features[level][i]
            fh = max(1, round(fmap.shape[-2] * h / padded[0]))
            fw = max(1, round(fmap.shape[-1] * w / padded[1]))
            parts.append(fmap[:, :fh, :fw].mean(dim=(1, 2)))
        out.append(torch.cat(parts))
    return torch.stack(out)


@torch.inference_mode()
def detect_with_features(model: MaskRCNN, images: list[torch.Tensor]) -> list[TappedDetections]:
    """Run the model (which must be in eval mode) on CHW float images in [0, 1], with taps."""
    if model.training:
        raise RuntimeError("detect_with_features needs the model in eval mode (model.eval())")
    original_sizes = [tuple(img.shape[-2:]) for img in images]
    image_list, _ = model.transform(images)
    features = model.backbone(image_list.tensors)
    proposals, _ = model.rpn(image_list, features)
    heads = model.roi_heads
    pooled = heads.box_roi_pool(features, proposals, image_list.image_sizes)
    box_features = heads.box_head(pooled)
    class_logits, box_regression = heads.box_predictor(box_features)
    kept = _postprocess_with_index(heads, class_logits, box_regression, proposals, image_list.image_sizes)

    offsets = torch.tensor([0] + [p.shape[0] for p in proposals]).cumsum(0)
    detections = [{"boxes": b, "scores": s, "labels": lab} for b, s, lab, _ in kept]
    if heads.has_mask():
        mask_features = heads.mask_roi_pool(features, [d["boxes"] for d in detections], image_list.image_sizes)
        mask_logits = heads.mask_predictor(heads.mask_head(mask_features))
        for det, prob in zip(detections, maskrcnn_inference(mask_logits, [d["labels"] for d in detections])):
            det["masks"] = prob
    detections = model.transform.postprocess(detections, image_list.image_sizes, original_sizes)
    vectors = image_vectors(features, image_list.image_sizes, tuple(image_list.tensors.shape[-2:]))

    out = []
    for i, (det, (_, _, _, proposal)) in enumerate(zip(detections, kept)):
        out.append(TappedDetections(
            boxes=det["boxes"], scores=det["scores"], labels=det["labels"], masks=det.get("masks"),
            box_features=box_features[offsets[i] + proposal], proposal_index=proposal, image_feature=vectors[i]))
    return out


@torch.inference_mode()
def box_vectors(model: MaskRCNN, image: torch.Tensor, boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """(n, d): the box head's vector of each given box (pixels of the original image, xyxy), pooled from the
    model's features as if the box were one of its proposals: for a ground-truth box the model missed, what it
    should have seen there, in the same space as its detections' vectors."""
    if model.training:
        raise RuntimeError("box_vectors needs the model in eval mode (model.eval())")
    height, width = image.shape[-2:]
    image_list, _ = model.transform([image])
    features = model.backbone(image_list.tensors)
    new_h, new_w = image_list.image_sizes[0]
    scale = torch.tensor([new_w / width, new_h / height, new_w / width, new_h / height], dtype=boxes_xyxy.dtype)
    pooled = model.roi_heads.box_roi_pool(features, [boxes_xyxy * scale], image_list.image_sizes)
    return model.roi_heads.box_head(pooled)
