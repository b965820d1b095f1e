"""COCO sets as torchvision's Mask R-CNN takes them (in the style of torchvision's ``references/detection``).

`CocoDetection` turns a validated `records.coco.CocoSet` into (image, target) pairs: crowd regions and degenerate
boxes are left out of training targets and images stay at their original size (the model's own transform resizes
them). `pennfudan_to_coco` converts the PennFudanPed pedestrian dataset (instance-id masks) into the same format,
so every dataset reaches the model through one loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image

from records.coco import CocoFormatError, CocoSet, load_coco

__all__ = ["CocoDetection", "CocoFormatError", "CocoSet", "annotation_mask", "collate_fn", "load_coco", "load_image",
           "pennfudan_to_coco"]


def annotation_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """The annotation's segmentation as an (H, W) uint8 array of 0/1; all zeros when it has none.

    Handles polygons (a list of flat coordinate lists, merged into one mask), uncompressed RLE (`counts` a list,
    as COCO stores crowd regions) and compressed RLE (`counts` a str or bytes).
    """
    segmentation = ann.get("segmentation")
    if not segmentation:
        return np.zeros((height, width), dtype=np.uint8)
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {"size": list(segmentation["size"]),
               "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(np.uint8)


def load_image(path) -> torch.Tensor:
    """An image (a path or a binary file object) as the detector takes it: float32 (3, H, W) RGB in [0, 1]."""
    with Image.open(path) as pil:
        return to_tensor(np.array(pil.convert("RGB")))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """Decoded (H, W, 3) uint8 RGB pixels as the detector takes them: float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)


class CocoDetection(torch.utils.data.Dataset):
    """(image, target) pairs for torchvision's Mask R-CNN / Faster R-CNN.

    image: float32 (3, H, W) RGB in [0, 1] at the original size. target: `boxes` float32 (N, 4) xyxy in pixels,
    `labels` int64 (contiguous, see `CocoSet.label_of`), `masks` uint8 (N, H, W) only when the set has masks,
    `image_id` int (the COCO id, for evaluation), `area` float32 (N,) and `iscrowd` int64 (N,), all zeros since
    crowd annotations are left out (they mark regions, not instances; COCO evaluation reads them from the json).
    Boxes are clipped to the image and those under a pixel wide or high are left out, as torchvision's
    references do, since they give the box regression nothing to learn and NaN losses at worst.

    With `train=True`, image, boxes and masks are flipped left-right with probability 0.5 (drawn from torch's
    generator, so `torch.manual_seed` and the DataLoader's worker seeding apply).
    """

    def __init__(self, coco: CocoSet, image_ids: list[int] | None = None, train: bool = False):
        self.coco = coco
        self.image_ids = list(coco.images) if image_ids is None else list(image_ids)
        missing = [i for i in self.image_ids if i not in coco.images]
        if missing:
            raise KeyError(f"image ids not in {coco.path}: {missing[:10]}")
        self.train = train

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.image_ids[i]
        info = self.coco.images[image_id]
        path = self.coco.image_path(image_id)
        image = load_image(path)
        height, width = image.shape[-2:]
        if (width, height) != (info["width"], info["height"]):
            raise CocoFormatError(f"{path}: image is {width}x{height} but the json says "
                                  f"{info['width']}x{info['height']} (image id {image_id})")

        boxes, labels, areas, masks = [], [], [], []
        for ann in self.coco.annotations_by_image[image_id]:
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = ann["bbox"]
            x1, y1 = min(max(x, 0), width), min(max(y, 0), height)
            x2, y2 = min(max(x + w, 0), width), min(max(y + h, 0), height)
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.coco.label_of[ann["category_id"]])
            areas.append(ann.get("area", w * h))
            if self.coco.has_masks:
                mask = annotation_mask(ann, height, width)
                if not ann.get("segmentation"):
                    # A box-only annotation in a set with masks: an empty mask would teach the mask head that
                    # the object has no pixels; the filled box is the least wrong target.
                    mask[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = 1
                masks.append(mask)

        target: dict[str, Any] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": image_id,
            "area": torch.tensor(areas, dtype=torch.float32),
            "iscrowd": torch.zeros(len(boxes), dtype=torch.int64),
        }
        if self.coco.has_masks:
            target["masks"] = (torch.from_numpy(np.stack(masks)) if masks
                               else torch.zeros((0, height, width), dtype=torch.uint8))

        if self.train and torch.rand(1).item() < 0.5:
            image = image.flip(-1)
            boxes = target["boxes"]
            target["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
            if "masks" in target:
                target["masks"] = target["masks"].flip(-1)
        return image, target


def collate_fn(batch):
    """Detection models take lists of differently sized images and targets, so no stacking."""
    return tuple(zip(*batch))


def pennfudan_to_coco(root: str | Path, out_json: str | Path) -> Path:
    """Convert PennFudanPed (``PNGImages/*.png`` + ``PedMasks/*_mask.png``, pixel value = instance id) to COCO.

    One category, person (id 1). Image ids are 1..N in sorted file name order and annotation ids follow the
    instance ids within each image, so the output is the same on every run. Segmentations are compressed RLE
    (exact, unlike polygons traced from the mask); boxes and areas come from the RLE via pycocotools, so they
    agree with what COCO evaluation computes. Load it back with ``load_coco(out_json, image_dir=root / "PNGImages")``.
    """
    root, out_json = Path(root), Path(out_json)
    pngs = sorted((root / "PNGImages").glob("*.png"))
    if not pngs:
        raise FileNotFoundError(f"no PNGImages/*.png under {root}")
    images, annotations = [], []
    for image_id, png in enumerate(pngs, start=1):
        mask_path = root / "PedMasks" / f"{png.stem}_mask.png"
        with Image.open(png) as im:
            width, height = im.size
        with Image.open(mask_path) as m:
            instance_ids = np.asarray(m)
        if instance_ids.shape != (height, width):
            raise ValueError(f"{mask_path}: mask is {instance_ids.shape[::-1]} but the image is {(width, height)}")
        images.append({"id": image_id, "file_name": png.name, "width": width, "height": height})
        for instance in np.unique(instance_ids):
            if instance == 0:
                continue
            rle = mask_utils.encode(np.asfortranarray(instance_ids == instance, dtype=np.uint8))
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            })
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({
        "info": {"description": "PennFudanPed converted by detectors.coco.pennfudan_to_coco"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }))
    return out_json
