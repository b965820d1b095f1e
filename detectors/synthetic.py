"""Synthetic street scenes: the embedded default data for the demo and the tests.

Each scene has a sky, buildings and a road, and up to a handful of labelled objects of four classes, with
instance masks: `stop_sign` (red octagon), `speed_sign` (white disc in a red ring), `car` and `bus`.
Scenes also hold unlabelled **distractors** that a young model confuses with the classes: round red logos on
walls, red balloons (both look like signs) and blue bins (a vehicle-ish box on the kerb). Distractors are
unevenly spread: each scene belongs to a district, and two "market" districts hold most of them, so hard cases
cluster and mining has something real to find. Every image records its district and its distractors (kind and
box) so later reports can measure how many mined images really hold one.

Output is COCO: `images/<split>_<n>.png` and `annotations/<split>.json` for the splits train, val and pool
(the pool's annotations play the annotation team in the demo). Generation is deterministic by seed: image i of a
split depends only on (seed, split, i).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_utils

CATEGORIES = [
    {"id": 1, "name": "stop_sign", "supercategory": "sign"},
    {"id": 2, "name": "speed_sign", "supercategory": "sign"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 4, "name": "bus", "supercategory": "vehicle"},
]
DISTRACTOR_KINDS = ("red_logo", "red_balloon", "blue_bin")
# Probability that a scene of each district holds distractors: districts 4 and 5 are the "market" districts.
DISTRICT_DISTRACTOR_RATE = (0.04, 0.04, 0.06, 0.06, 0.75, 0.85)
MARKETS = (4, 5)
# One random stream per split (and one more for which scenes are hard), so adding a split changes no other.
SPLIT_STREAMS = {"train": 0, "val": 1, "pool": 2, "test": 4, "test_tail": 6}
HARDNESS_STREAM = 5


@dataclass
class SceneObject:
    category_id: int | None  # None for a distractor
    kind: str
    mask: np.ndarray  # bool (H, W), visible part after occlusion


def _polygon(cx: float, cy: float, r: float, sides: int, rotation: float = 0.0) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(rotation + 2 * math.pi * k / sides), cy + r * math.sin(rotation + 2 * math.pi * k / sides))
            for k in range(sides)]


class _Canvas:
    """Draws shapes on the image and records each object's mask; later shapes occlude earlier ones."""

    def __init__(self, image: Image.Image):
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.objects: list[SceneObject] = []

    def add(self, category_id: int | None, kind: str, paint) -> None:
        layer = Image.new("L", self.image.size, 0)
        paint(self.draw, ImageDraw.Draw(layer))
        mask = np.asarray(layer) > 0
        for obj in self.objects:
            obj.mask &= ~mask
        self.objects.append(SceneObject(category_id, kind, mask))


def _background(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, int]:
    horizon = int(height * rng.uniform(0.38, 0.55))
    sky_top = np.array([rng.integers(90, 150), rng.integers(150, 200), rng.integers(210, 255)], float)
    sky_bottom = np.array([200, 215, 230], float) + rng.uniform(-20, 20, 3)
    t = np.linspace(0, 1, horizon)[:, None]
    pixels = np.zeros((height, width, 3), float)
    pixels[:horizon] = (sky_top * (1 - t) + sky_bottom * t)[:, None, :]
    road = rng.integers(70, 120)
    pixels[horizon:] = [road, road, road + rng.integers(-5, 6)]
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    x = -rng.integers(0, 30)
    while x < width:  # a row of buildings along the horizon
        w = int(rng.integers(30, 80))
        top = horizon - int(rng.integers(20, horizon - 5))
        shade = rng.integers(110, 200)
        color = (int(shade), int(shade * rng.uniform(0.8, 1.0)), int(shade * rng.uniform(0.7, 1.0)))
        draw.rectangle([x, top, x + w, horizon], fill=color)
        for wy in range(top + 6, horizon - 8, 14):  # windows
            for wx in range(x + 5, x + w - 8, 12):
                draw.rectangle([wx, wy, wx + 5, wy + 7], fill=(60, 70, 90))
        x += w + int(rng.integers(0, 10))
    sidewalk = horizon + int(rng.integers(4, 12))
    draw.rectangle([0, horizon, width, sidewalk], fill=(150, 150, 145))
    for lx in range(int(rng.integers(0, 40)), width, 50):  # lane markings
        ly = (horizon + height) // 2 + 20
        draw.rectangle([lx, ly, lx + 22, ly + 3], fill=(235, 235, 220))
    return image, horizon


def _sign(canvas: _Canvas, rng, width, horizon, category_id: int) -> None:
    r = float(rng.uniform(9, 24))
    cx = float(rng.uniform(r + 2, width - r - 2))
    cy = float(rng.uniform(r + 4, max(r + 5, horizon - r * 0.5)))
    pole_bottom = horizon + rng.integers(5, 25)
    canvas.draw.rectangle([cx - 1.5, cy, cx + 1.5, pole_bottom], fill=(90, 90, 90))  # pole: background

    def paint(img_draw, mask_draw):
        if category_id == 1:  # stop sign: red octagon with a white rim and a white bar
            pts = _polygon(cx, cy, r, 8, math.pi / 8)
            img_draw.polygon(pts, fill=(240, 240, 240))
            img_draw.polygon(_polygon(cx, cy, r * 0.86, 8, math.pi / 8), fill=(int(rng.integers(190, 230)), 20, 25))
            img_draw.rectangle([cx - r * 0.55, cy - r * 0.12, cx + r * 0.55, cy + r * 0.12], fill=(245, 245, 245))
            mask_draw.polygon(pts, fill=1)
        else:  # speed sign: white disc, red ring, dark digits
            box = [cx - r, cy - r, cx + r, cy + r]
            img_draw.ellipse(box, fill=(int(rng.integers(200, 235)), 25, 30))
            inner = r * 0.72
            img_draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=(245, 245, 245))
            img_draw.rectangle([cx - inner * 0.55, cy - inner * 0.45, cx - inner * 0.1, cy + inner * 0.45], fill=(30, 30, 30))
            img_draw.rectangle([cx + inner * 0.1, cy - inner * 0.45, cx + inner * 0.55, cy + inner * 0.45], fill=(30, 30, 30))
            mask_draw.ellipse(box, fill=1)

    canvas.add(category_id, CATEGORIES[category_id - 1]["name"], paint)


def _vehicle(canvas: _Canvas, rng, width, height, horizon, category_id: int) -> None:
    depth = rng.uniform(0.2, 1.0)  # nearer vehicles are lower and larger
    scale = 0.5 + depth
    w = float((rng.uniform(45, 70) if category_id == 3 else rng.uniform(95, 130)) * scale)
    h = float((rng.uniform(20, 28) if category_id == 3 else rng.uniform(38, 48)) * scale)
    bottom = horizon + (height - horizon) * (0.25 + 0.7 * depth)
    x0 = float(rng.uniform(-w * 0.2, width - w * 0.8))
    y0 = bottom - h
    body = tuple(int(c) for c in rng.integers(20, 230, 3))
    if category_id == 4:
        body = (int(rng.integers(200, 250)), int(rng.integers(160, 210)), int(rng.integers(0, 60)))  # yellow-ish

    def paint(img_draw, mask_draw):
        wheel = h * (0.32 if category_id == 3 else 0.22)
        if category_id == 3:
            cabin = [x0 + w * 0.22, y0 - h * 0.55, x0 + w * 0.75, y0 + 2]
            img_draw.rounded_rectangle(cabin, radius=int(h * 0.2), fill=body)
            img_draw.rectangle([cabin[0] + 4, cabin[1] + 3, cabin[2] - 4, cabin[3] - 2], fill=(150, 190, 220))
            mask_draw.rounded_rectangle(cabin, radius=int(h * 0.2), fill=1)
        img_draw.rounded_rectangle([x0, y0, x0 + w, bottom - wheel * 0.5], radius=int(h * 0.15), fill=body)
        mask_draw.rounded_rectangle([x0, y0, x0 + w, bottom - wheel * 0.5], radius=int(h * 0.15), fill=1)
        if category_id == 4:
            for wx in np.arange(x0 + 6, x0 + w - 14, 16):
                img_draw.rectangle([wx, y0 + 5, wx + 11, y0 + h * 0.4], fill=(150, 190, 220))
        for wx in (x0 + w * 0.2, x0 + w * 0.8):
            wb = [wx - wheel, bottom - 2 * wheel, wx + wheel, bottom]
            img_draw.ellipse(wb, fill=(25, 25, 25))
            mask_draw.ellipse(wb, fill=1)

    canvas.add(category_id, CATEGORIES[category_id - 1]["name"], paint)


def _distractor(canvas: _Canvas, rng, width, height, horizon, kind: str) -> None:
    if kind == "red_logo":  # a round red shop logo on a wall: sign-like, but no pole and a different pattern
        r = float(rng.uniform(9, 22))
        cx, cy = float(rng.uniform(r, width - r)), float(rng.uniform(r + 2, max(r + 3, horizon - r)))

        def paint(img_draw, mask_draw):
            img_draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(int(rng.integers(190, 235)), 25, 35))
            img_draw.ellipse([cx - r * 0.45, cy - r * 0.45, cx + r * 0.45, cy + r * 0.45], fill=(250, 220, 60))
            mask_draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif kind == "red_balloon":  # a red balloon on a string, floating in the sky
        r = float(rng.uniform(8, 18))
        cx, cy = float(rng.uniform(r, width - r)), float(rng.uniform(r + 2, max(r + 3, horizon * 0.8)))

        def paint(img_draw, mask_draw):
            box = [cx - r * 0.85, cy - r, cx + r * 0.85, cy + r]
            img_draw.line([cx, cy + r, cx + rng.uniform(-6, 6), cy + r * 2.6], fill=(60, 60, 60), width=1)
            img_draw.ellipse(box, fill=(int(rng.integers(200, 245)), 20, 30))
            img_draw.ellipse([cx - r * 0.45, cy - r * 0.6, cx - r * 0.15, cy - r * 0.2], fill=(250, 150, 150))
            mask_draw.ellipse(box, fill=1)
    else:  # a blue wheelie bin on the kerb
        w, h = float(rng.uniform(18, 34)), float(rng.uniform(24, 40))
        x0 = float(rng.uniform(0, width - w))
        bottom = horizon + (height - horizon) * rng.uniform(0.05, 0.4)

        def paint(img_draw, mask_draw):
            box = [x0, bottom - h, x0 + w, bottom]
            img_draw.rectangle(box, fill=(20, 60, int(rng.integers(170, 230))))
            img_draw.rectangle([x0 - 2, bottom - h - 4, x0 + w + 2, bottom - h + 2], fill=(15, 40, 150))
            img_draw.ellipse([x0 + 1, bottom - 7, x0 + 8, bottom], fill=(25, 25, 25))
            mask_draw.rectangle([x0 - 2, bottom - h - 4, x0 + w + 2, bottom], fill=1)

    canvas.add(None, kind, paint)


def render_scene(seed: int, split: str, index: int, width: int = 320, height: int = 240,
                 districts: tuple[int, ...] | None = None, hard: bool | None = None):
    """One scene: (PIL image, labelled objects, distractor objects, district). `districts` restricts where the
    scene is drawn from (default: all of them, uniformly). `hard` decides whether it holds look-alikes: True draws
    a market scene with distractors, False a suburb scene without; None leaves it to the district's rate."""
    rng = np.random.default_rng([seed, SPLIT_STREAMS.get(split, 3), index])
    draw = int(rng.integers(0, len(DISTRICT_DISTRACTOR_RATE)))
    if hard is None:
        district = draw if districts is None else int(districts[draw % len(districts)])
    else:
        among = MARKETS if hard else tuple(d for d in range(len(DISTRICT_DISTRACTOR_RATE)) if d not in MARKETS)
        district = among[draw % len(among)]
    image, horizon = _background(rng, width, height)
    canvas = _Canvas(image)
    plan: list[tuple[str, object]] = []
    for _ in range(int(rng.integers(1, 4))):
        plan.append(("vehicle", int(rng.choice([3, 3, 4]))))
    for _ in range(int(rng.integers(0, 3))):
        plan.append(("sign", int(rng.integers(1, 3))))
    holds_distractors = rng.random() < DISTRICT_DISTRACTOR_RATE[district]
    if holds_distractors if hard is None else hard:
        for _ in range(int(rng.integers(1, 4))):
            plan.append(("distractor", str(rng.choice(DISTRACTOR_KINDS))))
    rng.shuffle(plan)
    # Vehicles first (far to near), then signs and distractors, so vehicles never cover signs entirely.
    plan.sort(key=lambda p: p[0] != "vehicle")
    for what, arg in plan:
        if what == "vehicle":
            _vehicle(canvas, rng, width, height, horizon, arg)
        elif what == "sign":
            _sign(canvas, rng, width, horizon, arg)
        else:
            _distractor(canvas, rng, width, height, horizon, arg)
    image = canvas.image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))
    noise = rng.normal(0, rng.uniform(2, 6), (height, width, 3))
    image = Image.fromarray((np.asarray(image, float) + noise).clip(0, 255).astype(np.uint8))
    labelled = [o for o in canvas.objects if o.category_id is not None and o.mask.sum() >= 30]
    distractors = [o for o in canvas.objects if o.category_id is None and o.mask.sum() >= 30]
    return image, labelled, distractors, district


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def generate(out_dir: str | Path, n_train: int = 300, n_val: int = 100, n_pool: int = 600, seed: int = 0,
             width: int = 320, height: int = 240, progress: bool = True,
             train_districts: tuple[int, ...] | None = None, boxes_only: bool = False,
             n_test: int = 0, hard_share: float | None = None, n_test_tail: int | None = None) -> dict[str, Path]:
    """Write the dataset; returns {split: annotation json path}. Existing identical files are rewritten as is.

    `n_test` adds a **test** split (`test.json`, scenes of every district, drawn apart from the others): a split
    that is only ever reported on. The val split feeds the queries, the gate and early stopping; a number measured
    on it flatters whatever was chosen with it. Each image keeps its `distractors`, so the tail (the images
    holding a look-alike) is known from the generator, not from any model.

    `boxes_only` leaves the segmentations out, as most street datasets come: boxes, no instance masks.

    `train_districts` draws the labelled training split from those districts only, as when the first labelled
    drives covered the suburbs and the market districts came later: e.g. (0, 1, 2, 3) leaves the distractor-rich
    districts 4 and 5 to the val and pool splits, so the seed model meets the look-alikes first in the pool.

    `hard_share` sets the share of val, pool and test scenes that hold look-alikes (a market scene with
    distractors; the others are suburb scenes without), instead of the districts' own rates (about 0.29 over all
    districts): at 0.05 the look-alikes are a real tail, which a random batch of 40 barely samples. The test split
    then also gets a tail part drawn separately, whatever the share (`n_test_tail` scenes, all hard; default a third
    of `n_test`), so the tail can be measured at any share; it is part of the test superset."""
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    paths = {}
    image_id = 0
    ann_id = 0
    if hard_share is not None and not 0.0 <= hard_share <= 1.0:
        raise ValueError(f"hard_share is a share of scenes, between 0 and 1; got {hard_share}")
    splits = (("train", n_train), ("val", n_val), ("pool", n_pool)) + ((("test", n_test),) if n_test else ())
    for split, count in splits:
        images, annotations = [], []
        for stream, index, hard in tqdm(_scene_plan(seed, split, count, hard_share, n_test_tail),
                                        desc=f"synthetic {split}", disable=not progress, leave=False):
            image_id += 1
            image, ann_id = _write_scene(out, split, stream, index, hard, seed, width, height, image_id, ann_id,
                                         train_districts if split == "train" else None, boxes_only, annotations)
            images.append(image)
        paths[split] = _write_split(out, split, seed, train_districts, hard_share, images, annotations)
    return paths


def _write_scene(out: Path, split: str, stream: str, index: int, hard: bool | None, seed: int, width: int,
                 height: int, image_id: int, ann_id: int, districts: tuple[int, ...] | None, boxes_only: bool,
                 annotations: list[dict]) -> tuple[dict, int]:
    """One scene rendered and saved under `out`/images, its objects' COCO annotations appended to `annotations`
    (ids from `ann_id` + 1); returns (its COCO image record, the last annotation id)."""
    image, objects, distractors, district = render_scene(seed, stream, index, width, height, districts=districts,
                                                         hard=hard)
    name = f"{split}_{index:05d}.png" if stream == split else f"{stream}_{index:05d}.png"
    image.save(out / "images" / name)
    record = {
        "id": image_id, "file_name": name, "width": width, "height": height, "district": district,
        "distractors": [{"kind": d.kind, "bbox": _bbox(d.mask)} for d in distractors],
    }
    for obj in objects:
        ann_id += 1
        annotation = {"id": ann_id, "image_id": image_id, "category_id": obj.category_id}
        if not boxes_only:
            rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
            annotation["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode()}
        annotations.append({**annotation, "area": float(obj.mask.sum()), "bbox": _bbox(obj.mask), "iscrowd": 0})
    return record, ann_id


def _write_split(out: Path, split: str, seed: int, train_districts: tuple[int, ...] | None,
                 hard_share: float | None, images: list[dict], annotations: list[dict]) -> Path:
    """A split's COCO file, `out`/annotations/<split>.json, with what the split was drawn from; returns its path."""
    path = out / "annotations" / f"{split}.json"
    path.write_text(json.dumps({
        "info": {"description": f"gaze synthetic street scenes, split {split}, seed {seed}",
                 "districts": list(train_districts) if split == "train" and train_districts else "all",
                 **({"hard_share": hard_share} if hard_share is not None and split != "train" else {})},
        "images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def _scene_plan(seed: int, split: str, count: int, hard_share: float | None,
                n_test_tail: int | None) -> list[tuple[str, int, bool | None]]:
    """(random stream, index, hard) for each scene of a split. Without a hard share every scene is left to its
    district (None). With one, val, pool and test scenes are hard with that probability, drawn from a stream of
    their own; the train split keeps to its districts; the test split's tail part (all hard) comes after."""
    if hard_share is None or split == "train":
        return [(split, index, None) for index in range(count)]
    tail = 0
    if split == "test":
        tail = min(count, count // 3 if n_test_tail is None else n_test_tail)
    hardness = np.random.default_rng([seed, HARDNESS_STREAM, SPLIT_STREAMS[split]]).random(count - tail)
    return ([(split, index, bool(h < hard_share)) for index, h in enumerate(hardness)]
            + [("test_tail", index, True) for index in range(tail)])


# ---------------------------------------------------------------------------------------------------- the oracle
# The generator knows every scene's ground truth, so in the demo and the benchmarks it plays the annotation team.
def oracle_labels(manifest: Path, pool_json: Path, out: Path) -> Path:
    """What the annotation team would send back: the generator's ground truth for the batch, as COCO."""
    rows = json.loads(manifest.read_text())
    rows = rows["images"] if isinstance(rows, dict) else rows
    gt = json.loads(pool_json.read_text())
    by_name = {im["file_name"]: im for im in gt["images"]}
    images, annotations = [], []
    for n, row in enumerate(rows, start=1):
        source = by_name[Path(row["uri"]).name]
        images.append({"id": n, "file_name": row["file_name"], "width": source["width"], "height": source["height"]})
        for ann in gt["annotations"]:
            if ann["image_id"] == source["id"]:
                annotations.append({**ann, "id": len(annotations) + 1, "image_id": n})
    out.write_text(json.dumps({"images": images, "annotations": annotations, "categories": gt["categories"]}))
    return out


def hard_case_share(uris: list[str], pool_json: Path) -> dict:
    meta = {im["file_name"]: im for im in json.loads(pool_json.read_text())["images"]}
    hits = sum(bool(meta[Path(u).name]["distractors"]) for u in uris)
    return {"images": len(uris), "hits": hits, "share": hits / max(1, len(uris))}
