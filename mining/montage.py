"""A montage for a person to check mining at a glance: each query's crop (red frame) beside its nearest
pool neighbours' crops, nearest first, with the distance under each."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from fdb import FeatureDB
from fdb import detections as detection_store
from fdb import images as image_store
from storage import read_uri

TILE = 96


def _crop(uri: str, bbox: list[float] | None, pad: float = 0.25) -> Image.Image:
    with Image.open(io.BytesIO(read_uri(uri))) as im:
        im = im.convert("RGB")
        if bbox:
            x, y, w, h = bbox
            px, py = w * pad + 4, h * pad + 4
            im = im.crop((max(0, x - px), max(0, y - py), min(im.width, x + w + px), min(im.height, y + h + py)))
        return ImageOps.pad(im, (TILE, TILE), color=(40, 40, 40))


@dataclass(frozen=True)
class MontageRow:
    """One row of a montage: the query's picture (red frame) with its caption, then its neighbours nearest first,
    each (uri, box or None for the whole image, distance)."""

    uri: str
    bbox: list[float] | None
    caption: str
    neighbours: list[tuple[str, list[float] | None, float]]


def query_montage(fdb: FeatureDB, queries, neighbours: dict, out_path: str | Path, max_queries: int = 12,
                  per_query: int = 6) -> Path | None:
    """Write the montage PNG; `neighbours` maps a query's error id (str) to [(owner id, image id, distance)]."""
    rows = [q for q in queries if neighbours.get(str(q.error_id))][:max_queries]
    if not rows:
        return None
    image_ids = {q.source_image_id for q in rows} | {n[1] for q in rows for n in neighbours[str(q.error_id)]}
    uris = {i: d["uri"] for i, d in image_store.by_id(fdb, image_ids).items()}
    boxes = detection_store.detection_boxes(fdb, [n[0] for q in rows for n in neighbours[str(q.error_id)][:per_query]])
    return draw_montage([MontageRow(uris[q.source_image_id], q.bbox, f"{q.type[:14]} {q.category_name[:8]}",
                                    [(uris[image_id], boxes.get(owner), dist)
                                     for owner, image_id, dist in neighbours[str(q.error_id)][:per_query]])
                         for q in rows], out_path, per_query)


def draw_montage(rows: list[MontageRow], out_path: str | Path, per_row: int = 6) -> Path | None:
    """Write the montage PNG of `rows` (at most `per_row` neighbours each), a row per query; None for no rows.
    A uri is read as `storage.read_uri` reads it: a query need not be an image the store holds."""
    if not rows:
        return None
    label_h = 14
    sheet = Image.new("RGB", ((per_row + 1) * (TILE + 4) + 4, len(rows) * (TILE + label_h + 6) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = 4 + r * (TILE + label_h + 6)
        sheet.paste(_crop(row.uri, row.bbox), (4, y))
        draw.rectangle([4, y, 4 + TILE - 1, y + TILE - 1], outline=(220, 0, 0), width=3)
        draw.text((6, y + TILE + 1), row.caption, fill=(0, 0, 0))
        for c, (uri, bbox, dist) in enumerate(row.neighbours[:per_row], start=1):
            x = 4 + c * (TILE + 4)
            sheet.paste(_crop(uri, bbox), (x, y))
            draw.text((x + 2, y + TILE + 1), f"d={dist:.3f}", fill=(0, 0, 0))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return out_path
