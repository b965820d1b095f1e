"""Query by example (`dataengine search`): the model runs on one image file, and its vector searches the pool.

With a box, the box head's vector of that box, pooled from the model's features as if it were a proposal (the
tap `tap_ground_truth` uses for a labelled box, `detectors.taps.box_vectors`), searches the pool's detections
(`records.BOX_LAYER`); without one, the image's pooled FPN vector (the tap every detected image gets) searches the
pool's images (`records.IMAGE_LAYER`). The query image is never recorded: nothing is written but the montage and
the pool index's own upkeep (`mining.similar`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from detectors.checkpoint import Checkpoint
from detectors.coco import load_image
from detectors.taps import box_vectors, detect_with_features
from fdb import FeatureDB
from mining.montage import MontageRow, draw_montage
from mining.similar import SimilarHit, nearest_images, nearest_in_pool
from records import BOX_LAYER, IMAGE_LAYER
from records.hashing import json_key

MONTAGE_NEIGHBOURS = 12  # hits drawn beside the query; all k are printed


class BadQuery(ValueError):
    """The query cannot be asked: the file is not an image, or the box lies outside it."""


@dataclass(frozen=True)
class SearchResult:
    model_version: str
    layer: str  # the pool index searched
    image: Path
    box: tuple[float, float, float, float] | None  # [x, y, w, h] in the query image's pixels
    hits: list[SimilarHit]  # detections (a box search) or images, nearest first
    montage: Path | None

    @property
    def images(self) -> list[SimilarHit]:
        """The pool images reached, nearest first (a box search's hits are detections: each image once)."""
        return nearest_images(self.hits) if self.layer == BOX_LAYER else self.hits


def query_vector(checkpoint: Checkpoint, image: torch.Tensor, box: tuple[float, float, float, float] | None
                 ) -> np.ndarray:
    """The vector a search asks with: the box head's vector of `box` ([x, y, w, h]), else the image's vector, from
    the model's features on `image` (CHW float in [0, 1])."""
    model = checkpoint.model.eval()
    if box is None:
        return detect_with_features(model, [image])[0].image_feature.numpy().astype(np.float32)
    x, y, w, h = box
    height, width = image.shape[-2:]
    if w <= 0 or h <= 0 or x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise BadQuery(f"the box {x:g},{y:g},{w:g},{h:g} does not overlap the {width}x{height} image")
    boxes = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)
    return box_vectors(model, image, boxes).numpy()[0].astype(np.float32)


def search_by_example(fdb: FeatureDB, checkpoint: Checkpoint, image_path: str | Path,
                      box: tuple[float, float, float, float] | None, k: int, index_root: str | Path,
                      out_dir: str | Path) -> SearchResult:
    """The `k` pool detections nearest to `box` of the image (a box search), or the `k` pool images nearest to
    the image, and a montage of the query beside its nearest hits in `out_dir`."""
    image_path = Path(image_path)
    try:
        image = load_image(image_path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # not an image, truncated, too large
        raise BadQuery(f"{image_path} is not an image the model can read: {exc}") from None
    layer = BOX_LAYER if box is not None else IMAGE_LAYER
    vector = query_vector(checkpoint, image, box)
    hits = nearest_in_pool(fdb, checkpoint.version, vector, layer, k, index_root)
    name = f"search-{image_path.stem}-{json_key([str(image_path.resolve()), box, checkpoint.version, k], 10)}.png"
    caption = f"query {'box' if box else 'image'}"
    montage = draw_montage([MontageRow(str(image_path), list(box) if box else None, caption,
                                       [(h.uri, h.bbox, h.distance) for h in hits if h.uri][:MONTAGE_NEIGHBOURS])],
                           Path(out_dir) / name, per_row=min(max(len(hits), 1), MONTAGE_NEIGHBOURS))
    return SearchResult(checkpoint.version, layer, image_path, box, hits, montage)
