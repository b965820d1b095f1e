"""A labelled COCO set split into the train / val / pool / test layout every command reads; the images linked, never
copied.

The layout is `dataengine synth`'s: ``OUT/annotations/{train,val,pool,test}.json`` (full COCO, categories with their
ids; the pool keeps its ground truth, because a benchmark asks it as the oracle annotator) and ``OUT/images``, here a
symlink to the source image folder, so `load_coco` and `dataengine train --data OUT` resolve every `file_name`
unchanged. ``OUT/split.json`` records how the split was made (seed, sizes, starve, the source file's sha256), what
each split holds, and which images starving moved.

The protocol, for a benchmark of mining on a rare class (TALISMAN-style, Kothawade et al. 2022):

1. Duplicates form one group and always land in one split: an image's `duplicate_of` (the original's image id, or
   its `file_name`) and images whose files have the same bytes (sha256), so no copy of a test image trains a model.
2. Groups are assigned class-stratified, rarest class first (iterative stratification, Sechidis et al. 2011): each
   group holding the class goes to the split that still wants the most images of it, so every split gets about its
   share of every class, and a rare class shows up in test in proportion.
3. Starving (``starve={"stop": 5}``): the labelled splits, train, val and holdout together, keep at most N images holding
   the class, exactly N when they held that many; which N stay is drawn by the seed. The others move to the pool,
   where mining must find them, and train / val are refilled to their sizes from pool images holding no starved
   class. The test split is never starved: it measures the rare class on its full share.

Everything is drawn from `random.Random(seed)`: the same source and seed give byte-identical files.

The road-signs benchmark (877 images, stop the rare class with 91 images)::

    dataengine split --coco ../shared/data/road-signs/annotations/instances.json \\
        --images ../shared/data/road-signs/images --out road-signs-split --seed 0 \\
        --sizes train=150,val=100,test=300 --starve stop=5

gives 150 train and 100 val images with 5 stops between them, a 300-image test split with its share of stops
(about 31), and the 327 others as the pool, where the rest of the stops wait to be mined.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

from records.coco import load_coco
from records.hashing import file_sha256, sha256_hex

SPLITS = ("train", "val", "holdout", "pool", "test")
SIZED_SPLITS = ("train", "val", "holdout", "test")  # the pool takes the rest
# What a seed model trains and stops on, and what fine-tuning stops on (`holdout`: labelled images that neither
# train a model nor feed the queries nor test one): what starving starves.
LABELLED_SPLITS = ("train", "val", "holdout")
DEFAULT_SIZES: dict[str, int | float] = {"train": 0.2, "val": 0.1, "holdout": 0, "test": 0.35}


def parse_sizes(text: str | None) -> dict[str, int | float]:
    """``"train=150,val=100,test=0.35"`` -> {"train": 150, "val": 100, "test": 0.35}: a count, or with a decimal
    point a fraction of all images; splits left out keep DEFAULT_SIZES."""
    sizes = dict(DEFAULT_SIZES)
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = (part.strip() for part in item.partition("="))
        if name not in SIZED_SPLITS:
            hint = " (the pool takes the rest)" if name == "pool" else ""
            raise ValueError(f"--sizes: unknown split {name!r} in {item.strip()!r}{hint}; expected "
                             f"{', '.join(SIZED_SPLITS)} as e.g. train=150,val=100,test=0.35")
        try:
            size: int | float = float(value) if "." in value else int(value)
        except ValueError:
            raise ValueError(f"--sizes: {item.strip()!r} is not split=count or split=fraction "
                             f"(e.g. train=150 or test=0.35)") from None
        if size < 0 or (isinstance(size, float) and size > 1):
            raise ValueError(f"--sizes: {item.strip()!r}: a count must be >= 0, a fraction in [0, 1]")
        sizes[name] = size
    return sizes


def parse_starve(items: list[str] | None) -> dict[str, int]:
    """``["stop=5"]`` -> {"stop": 5}."""
    starve: dict[str, int] = {}
    for item in items or []:
        name, _, value = (part.strip() for part in item.partition("="))
        if not name or not value.isdigit():
            raise ValueError(f"--starve: {item!r} is not CLASS=N with N a count >= 0 (e.g. stop=5)")
        starve[name] = int(value)
    return starve


def resolve_sizes(sizes: dict[str, int | float], n_images: int, source: str = "the source") -> dict[str, int]:
    """Image counts per split: fractions of `n_images` rounded, the pool the rest; refused when they do not fit."""
    counts = {name: int(size * n_images + 0.5) if isinstance(size, float) else size
              for name, size in {**DEFAULT_SIZES, **sizes}.items()}
    taken = sum(counts[name] for name in SIZED_SPLITS)
    if taken > n_images:
        terms = " + ".join(f"{name}={counts[name]}" for name in SIZED_SPLITS if counts[name] or name != "holdout")
        raise ValueError(f"--sizes: {terms} = {taken} images, but {source} has {n_images}; they must add up to at "
                         f"most {n_images} (the pool takes the rest)")
    return {"train": counts["train"], "val": counts["val"], "holdout": counts["holdout"], "pool": n_images - taken,
            "test": counts["test"]}


def duplicate_groups(images: list[dict], image_dir: Path) -> list[list[int]]:
    """Image ids in groups that must share a split: linked by `duplicate_of` (an image id or a file_name) or by
    identical file bytes. Groups and their ids are in file order."""
    ids = [image["id"] for image in images]
    parent = {image_id: image_id for image_id in ids}
    position = {image_id: k for k, image_id in enumerate(ids)}  # a group is named by its first image in the file

    def root(image_id: int) -> int:
        while parent[image_id] != image_id:
            parent[image_id] = parent[parent[image_id]]
            image_id = parent[image_id]
        return image_id

    def join(a: int, b: int) -> None:
        parent[max(root(a), root(b), key=position.get)] = min(root(a), root(b), key=position.get)

    id_of_name = {image["file_name"]: image["id"] for image in images}
    first_with_bytes: dict[str, int] = {}
    for image in images:
        original = image.get("duplicate_of")
        if original is not None:
            original_id = original if original in parent else id_of_name.get(original)
            if original_id is None:
                raise ValueError(f"image {image['id']} ({image['file_name']}): duplicate_of {original!r} names no "
                                 f"image of the source (by id or file_name)")
            join(image["id"], original_id)
        path = image_dir / image["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"image {image['id']}: {path} does not exist (is --images the right folder?)")
        join(image["id"], first_with_bytes.setdefault(file_sha256(path), image["id"]))
    groups: dict[int, list[int]] = {}
    for image_id in ids:
        groups.setdefault(root(image_id), []).append(image_id)
    return list(groups.values())


def stratified_assignment(groups: list[list[int]], classes_of: dict[int, set[int]], counts: dict[str, int],
                          rng: random.Random) -> list[str]:
    """The split of each group: rarest class first, each group holding it to the split that still wants the most
    images of it (ties: the one with the most room left, then SPLITS order); groups without a class fill what room
    is left. Larger groups go first within a class, so a duplicate pair still finds a split with room for both."""
    group_classes = [set().union(*(classes_of[i] for i in group)) for group in groups]
    n_images = sum(len(group) for group in groups)
    images_per_class = Counter(c for group in groups for i in group for c in classes_of[i])
    wanted = {(split, c): counts[split] / max(1, n_images) * n for c, n in images_per_class.items() for split in SPLITS}
    room = dict(counts)
    order = list(range(len(groups)))
    rng.shuffle(order)
    assignment: list[str | None] = [None] * len(groups)
    for cls in sorted(images_per_class, key=lambda c: (images_per_class[c], c)):
        holding = sorted((g for g in order if assignment[g] is None and cls in group_classes[g]),
                         key=lambda g: -len(groups[g]))
        for g in holding:
            split = _best_split(room, len(groups[g]), key=lambda s, c=cls: (wanted[s, c], room[s]))
            assignment[g] = split
            room[split] -= len(groups[g])
            for c in group_classes[g]:
                wanted[split, c] -= len(groups[g])
    for g in sorted((g for g in order if assignment[g] is None), key=lambda g: -len(groups[g])):
        split = _best_split(room, len(groups[g]), key=lambda s: room[s])
        assignment[g] = split
        room[split] -= len(groups[g])
    return assignment  # type: ignore[return-value]


def _best_split(room: dict[str, int], size: int, key) -> str:
    """The split with the largest key among those with room for `size` images; the pool takes any overflow."""
    fitting = [s for s in SPLITS if room[s] >= size]
    return max(fitting, key=key) if fitting else "pool"  # max keeps the first of equals: SPLITS order


def starve_labelled(assignment: list[str], groups: list[list[int]], classes_of: dict[int, set[int]],
                    starve: dict[int, int], rng: random.Random) -> tuple[list[tuple[int, str]], list[int]]:
    """Move labelled (train / val) groups holding a starved class to the pool beyond N images of each such class,
    keeping groups in seeded order while they fit every class's N; then refill each split it took from with pool
    groups holding no starved class. Changes `assignment`; returns ((group, split it left), groups refilled)."""
    order = list(range(len(groups)))
    rng.shuffle(order)
    kept = Counter()
    moved: list[tuple[int, str]] = []
    for g in order:
        if assignment[g] not in LABELLED_SPLITS:
            continue
        held = Counter(c for i in groups[g] for c in classes_of[i] & starve.keys())  # images per starved class
        if not held:
            continue
        if all(kept[c] + n <= starve[c] for c, n in held.items()):
            kept.update(held)
        else:
            moved.append((g, assignment[g]))
            assignment[g] = "pool"
    short = Counter()
    for g, split in moved:
        short[split] += len(groups[g])
    refilled: list[int] = []
    movable = [g for g in order
               if assignment[g] == "pool" and not any(classes_of[i] & starve.keys() for i in groups[g])]
    for split in LABELLED_SPLITS:
        for g in movable:
            if g not in refilled and len(groups[g]) <= short[split]:
                assignment[g] = split
                short[split] -= len(groups[g])
                refilled.append(g)
    return moved, refilled


def split_coco(coco_path: str | Path, image_dir: str | Path | None, out_dir: str | Path, seed: int = 0,
               sizes: dict[str, int | float] | None = None, starve: dict[str, int] | None = None) -> dict:
    """Split the COCO set at `coco_path` (images in `image_dir`, by default as `load_coco` finds them) into
    `out_dir`'s annotations/{train,val,pool,test}.json, link `out_dir`/images to the images and write
    `out_dir`/split.json; returns what split.json holds. See the module's docstring for the protocol."""
    coco_path = Path(coco_path)
    if not coco_path.is_file():
        raise FileNotFoundError(f"no COCO file at {coco_path}")
    if image_dir is not None and not Path(image_dir).is_dir():
        raise FileNotFoundError(f"no image folder at {image_dir}")
    raw = coco_path.read_bytes()
    coco = load_coco(coco_path, image_dir)  # validated once: a broken file fails here, naming the record
    data = json.loads(raw)
    sizes, starve = dict(sizes or DEFAULT_SIZES), dict(starve or {})
    counts = resolve_sizes(sizes, len(coco.images), coco_path.name)
    starve_ids = _category_ids(coco.categories, starve)
    classes_of = {image_id: {a["category_id"] for a in anns} for image_id, anns in coco.annotations_by_image.items()}
    groups = duplicate_groups(list(coco.images.values()), coco.image_dir)
    rng = random.Random(seed)
    assignment = stratified_assignment(groups, classes_of, counts, rng)
    moved, refilled = starve_labelled(assignment, groups, classes_of, starve_ids, rng)
    split_of = {image_id: assignment[g] for g, group in enumerate(groups) for image_id in group}
    out = Path(out_dir)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    _link_images(out / "images", coco.image_dir)
    names = {c["id"]: c["name"] for c in coco.categories}
    report = {
        "source": str(coco_path.resolve()), "source_sha256": sha256_hex(raw),
        "image_dir": str(coco.image_dir.resolve()), "seed": seed, "sizes": sizes, "starve": starve,
        "requested": {split: n for split, n in counts.items() if n or split != "holdout"},
        "splits": {split: _write_split(out, split, seed, coco_path.name, data, split_of, names) for split in SPLITS
                   if counts[split] or split != "holdout"},  # a holdout only when one is asked for
        "duplicate_groups": [group for group in groups if len(group) > 1],
        "moved_by_starving": [{"id": i, "file_name": coco.images[i]["file_name"], "from": split, "to": "pool"}
                              for g, split in moved for i in groups[g]],
        "refilled_from_pool": [{"id": i, "file_name": coco.images[i]["file_name"], "to": assignment[g]}
                               for g in refilled for i in groups[g]],
    }
    (out / "split.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _category_ids(categories: list[dict], starve: dict[str, int]) -> dict[int, int]:
    """{"stop": 5} -> {category id of stop: 5}; an unknown class is refused, naming the known ones."""
    id_of = {c["name"]: c["id"] for c in categories}
    unknown = [name for name in starve if name not in id_of]
    if unknown:
        raise ValueError(f"--starve: no class {unknown[0]!r} in the source; its classes are {', '.join(id_of)}")
    return {id_of[name]: n for name, n in starve.items()}


def _link_images(link: Path, image_dir: Path) -> None:
    """`link` -> the source images, absolute: the data set is referred to, never copied next to the splits."""
    target = image_dir.resolve()
    if link.is_symlink():
        if link.resolve() == target:
            return
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a link; the split links its images there "
                              f"(remove it or choose another --out)")
    os.symlink(target, link, target_is_directory=True)


def _write_split(out: Path, split: str, seed: int, source: str, data: dict, split_of: dict[int, str],
                 names: dict[int, str]) -> dict:
    """`out`/annotations/<split>.json: the split's images and annotations in source order, every category;
    returns the split's counts for split.json."""
    images = [image for image in data["images"] if split_of[image["id"]] == split]
    kept = {image["id"] for image in images}
    annotations = [a for a in data["annotations"] if a["image_id"] in kept]
    coco = {"info": {"description": f"{source}, split {split}, seed {seed} (dataengine split)"},
            **({"licenses": data["licenses"]} if "licenses" in data else {}),
            "images": images, "annotations": annotations, "categories": data["categories"]}
    (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    holding = Counter(names[category] for _, category in {(a["image_id"], a["category_id"]) for a in annotations})
    return {"images": len(images), "boxes": len(annotations),
            "images_per_class": {name: holding.get(name, 0) for name in names.values()}}
