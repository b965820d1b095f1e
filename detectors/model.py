"""Building the Mask R-CNN: torchvision's implementation of detectron2's `mask_rcnn_R_50_FPN`, in two presets.

- `r50`: ResNet-50-FPN, the standard configuration (800 px images), for users with a GPU.
- `small`: ResNet-18-FPN for the CPU, with real BatchNorm (trained from scratch, FrozenBatchNorm would freeze
  random statistics) and fewer proposals, at 240-320 px.

Starting weights: `none` (from scratch), or `coco` (torchvision's COCO weights, r50 only; needs the internet
once, then they are cached under $TORCH_HOME). Project checkpoints are loaded by `detectors.checkpoint`.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor


@dataclass
class ModelConfig:
    preset: str = "small"
    num_classes: int = 5  # including background
    class_names: list[str] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)  # the dataset's category id of each label 1..K
    min_size: int = 240
    max_size: int = 320
    weights: str = "none"
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 500
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_test: int = 300
    box_batch_size_per_image: int = 256
    box_score_thresh: float = 0.05
    box_detections_per_img: int = 100
    fpn_channels: int = 256
    # A mask head: trained on instance masks, it predicts them. A model built from a box-only dataset has none
    # (torchvision then skips the mask loss and mask inference); a checkpoint from before this field had one.
    masks: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "small": dict(min_size=240, max_size=320, fpn_channels=128, box_batch_size_per_image=128),
    "r50": dict(min_size=800, max_size=1333, rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=2000,
                rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000, box_batch_size_per_image=512),
}


def preset_config(preset: str, class_names: list[str], category_ids: list[int] | None = None,
                  **overrides) -> ModelConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[preset], **overrides}
    return ModelConfig(preset=preset, num_classes=len(class_names) + 1, class_names=list(class_names),
                       category_ids=list(category_ids or range(1, len(class_names) + 1)), **values)


class OfflineWeightsError(RuntimeError):
    pass


def build_model(cfg: ModelConfig) -> MaskRCNN:
    model = _build(cfg)
    if not cfg.masks:
        _drop_mask_branch(model.roi_heads)
    return model


def _drop_mask_branch(roi_heads) -> None:
    roi_heads.mask_roi_pool = roi_heads.mask_head = roi_heads.mask_predictor = None


@contextlib.contextmanager
def without_masks(model: MaskRCNN):
    """The model with its mask branch switched off for the duration: a box-only dataset trains the rest of a
    Mask R-CNN (backbone, RPN, box head) without a mask loss, and the mask branch comes back unchanged."""
    heads = model.roi_heads
    saved = (heads.mask_roi_pool, heads.mask_head, heads.mask_predictor)
    _drop_mask_branch(heads)
    try:
        yield model
    finally:
        heads.mask_roi_pool, heads.mask_head, heads.mask_predictor = saved


def _build(cfg: ModelConfig) -> MaskRCNN:
    kwargs = dict(
        min_size=cfg.min_size, max_size=cfg.max_size,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        box_batch_size_per_image=cfg.box_batch_size_per_image, box_score_thresh=cfg.box_score_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
    )
    if cfg.preset == "small":
        if cfg.weights not in ("none", None):
            raise ValueError("the small preset trains from scratch (weights 'none') or loads a project checkpoint")
        # 128 FPN channels instead of 256: on two CPU cores RoIAlign's backward and the head convolutions
        # dominate a training step, and both scale with the channels. The box head still gives 1024-d vectors.
        body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
        backbone = BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                                   in_channels_list=[64, 128, 256, 512], out_channels=cfg.fpn_channels)
        mask_head = MaskRCNNHeads(cfg.fpn_channels, (cfg.fpn_channels,) * 4, dilation=1)
        mask_predictor = MaskRCNNPredictor(cfg.fpn_channels, cfg.fpn_channels, cfg.num_classes)
        box_predictor = FastRCNNPredictor(1024, cfg.num_classes)
        return MaskRCNN(backbone, num_classes=None, box_predictor=box_predictor, mask_head=mask_head,
                        mask_predictor=mask_predictor, **kwargs)
    if cfg.preset == "r50":
        if cfg.weights == "coco":
            model = _coco_r50(**kwargs)
            _replace_heads(model, cfg.num_classes)
            return model
        # Without pretrained weights torchvision uses real BatchNorm, as training from scratch needs.
        return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=cfg.num_classes, **kwargs)
    raise ValueError(f"unknown preset {cfg.preset!r}")


def _coco_r50(**kwargs) -> MaskRCNN:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    weights = MaskRCNN_ResNet50_FPN_Weights.COCO_V1
    try:
        return maskrcnn_resnet50_fpn(weights=weights, **kwargs)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise OfflineWeightsError(
            f"could not load torchvision's COCO weights ({weights.url}): {exc}. This machine may be offline. "
            f"Either train from scratch (--weights none), or download the file elsewhere and place it in "
            f"{torch.hub.get_dir()}/checkpoints/ so torchvision finds it in its cache.") from exc


def _replace_heads(model: MaskRCNN, num_classes: int) -> None:
    """New class-specific layers for our classes; the rest keeps the COCO weights (standard fine-tuning)."""
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    in_channels = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(in_channels, 256, num_classes)
