"""Crops and thumbnails for the review app, rendered once and cached on disk by content.

A crop is named by what it shows: the image's bytes (their sha256, from the image's fdb record), the region, the
boxes drawn on it and the size. The same request is then a file read, a changed image gets new crops, and the
cache can be deleted at any time. Image bytes are read only from the uri an fdb record holds: the app never opens
a path that came with a request.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from records.hashing import json_key
from storage import read_uri

RENDER_VERSION = 1  # bump when the drawing changes: old cache entries are then never asked for again
# Box colours by role: what the model predicted, the ground truth, what a query's neighbour is.
COLOURS = {"prediction": (230, 40, 40), "truth": (30, 200, 60), "neighbour": (255, 170, 0), "other": (90, 160, 255)}


@dataclass(frozen=True)
class Box:
    bbox: tuple[float, float, float, float]  # [x, y, w, h] in the image's pixels
    role: str = "prediction"  # a key of COLOURS
    label: str = ""


class CropCache:
    """Renders JPEG crops of fdb images into `root`, once per content."""

    def __init__(self, root: str | Path, quality: int = 85):
        self.root = Path(root)
        self.quality = quality

    def key(self, image: dict, focus: list[float] | None, boxes: list[Box], size: int) -> str:
        content = image.get("sha256") or image["uri"]
        spec = [RENDER_VERSION, content, [round(float(v), 1) for v in focus] if focus else None,
                [[[round(float(v), 1) for v in b.bbox], b.role, b.label] for b in boxes], int(size)]
        return json_key(spec)

    def get(self, image: dict, focus: list[float] | None = None, boxes: list[Box] = (), size: int = 192) -> Path:
        """The cached JPEG of `image` (its fdb record: `uri`, `sha256`) cut around `focus` (the whole image when
        None) with `boxes` drawn, fitted into size x size. Raises OSError when the image cannot be read."""
        boxes = list(boxes)
        name = self.key(image, focus, boxes, size)
        path = self.root / name[:2] / f"{name}.jpg"
        if path.exists():
            return path
        data = render(read_uri(image["uri"]), focus, boxes, size, self.quality)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a reader never sees half a file, and two renders of one crop agree.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path


def render(data: bytes, focus: list[float] | None, boxes: list[Box], size: int, quality: int = 85) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            im = opened.convert("RGB")
    except Exception as exc:  # PIL raises many kinds for bad bytes; the caller only needs to know it failed
        raise OSError(f"not a readable image: {exc}") from exc
    left, top, right, bottom = 0.0, 0.0, float(im.width), float(im.height)
    if focus:
        x, y, w, h = focus
        # Context around the box: half its size each side, at least 24 pixels, so the scene can be judged.
        px, py = max(w * 0.5, 24.0), max(h * 0.5, 24.0)
        left, top = max(0.0, x - px), max(0.0, y - py)
        right, bottom = min(float(im.width), x + w + px), min(float(im.height), y + h + py)
    region = im.crop((int(left), int(top), max(int(right), int(left) + 1), max(int(bottom), int(top) + 1)))
    scale = min(size / region.width, size / region.height)
    # Small crops are enlarged too (up to 4x), so a 20-pixel sign can be seen; the boxes are drawn after scaling.
    scale = min(scale, 4.0)
    region = region.resize((max(1, round(region.width * scale)), max(1, round(region.height * scale))),
                           Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(region)
    for box in boxes:
        x, y, w, h = box.bbox
        rect = [(x - int(left)) * scale, (y - int(top)) * scale, (x + w - int(left)) * scale,
                (y + h - int(top)) * scale]
        colour = COLOURS.get(box.role, COLOURS["other"])
        draw.rectangle(rect, outline=colour, width=2)
        if box.label:
            draw.text((rect[0] + 2, max(0, rect[1] - 11)), box.label, fill=colour)
    out = ImageOps.pad(region, (size, size), color=(32, 32, 36)) if focus else region
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def placeholder(size: int, text: str) -> bytes:
    """A grey tile saying why there is no picture (the image could not be read)."""
    im = Image.new("RGB", (size, size), (60, 60, 64))
    ImageDraw.Draw(im).text((6, size // 2 - 6), text[:40], fill=(230, 230, 230))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return buf.getvalue()
