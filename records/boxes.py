"""Box overlap, written once: every stage that matches boxes (error typing, label-error judging, what the
annotators changed) asks the same question of pycocotools."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils


def box_ious(boxes_a: Sequence, boxes_b: Sequence, crowd: Sequence[bool] | None = None) -> np.ndarray:
    """IoU of every COCO box [x, y, w, h] of `boxes_a` with every one of `boxes_b`, shape (len(a), len(b)).
    Where `crowd` marks a box of `boxes_b` as a crowd region, its overlap is measured as COCOeval does: the
    intersection over the area of the `boxes_a` box alone."""
    if not len(boxes_a) or not len(boxes_b):
        return np.zeros((len(boxes_a), len(boxes_b)))
    flags = [int(c) for c in crowd] if crowd is not None else [0] * len(boxes_b)
    return np.asarray(mask_utils.iou([list(b) for b in boxes_a], [list(b) for b in boxes_b], flags))
