"""`dataengine split`: duplicates share a split, starving is exact and leaves test alone, a seed fixes every byte,
the sizes add up, and what it writes is read by `load_coco` unchanged (the road-signs benchmark split included)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dataengine.cli import main
from records.coco import load_coco
from records.splits import split_coco

SPLITS = ("train", "val", "pool", "test")  # what a split without a holdout writes

ROAD_SIGNS = Path(__file__).resolve().parents[1].parent / "shared/data/road-signs"
CATEGORIES = [{"id": 1, "name": "car"}, {"id": 2, "name": "sign"}, {"id": 7, "name": "rare"}]
RARE_IMAGES = range(1, 13)  # images 1-12 hold the rare class (beside a car)
DUPLICATE_OF = {21: 20}  # a re-encoded copy, named only by duplicate_of
SAME_BYTES = {31: 30}  # a byte-identical copy, named by nothing


@pytest.fixture()
def dataset(tmp_path) -> tuple[Path, Path]:
    """60 tiny JPEGs in a COCO file with boxes only: cars everywhere, signs on every third, 12 rare ones."""
    images_dir = tmp_path / "src" / "images"
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, 61):
        name = f"img{image_id}.jpg"
        if image_id in SAME_BYTES:
            shutil.copy(images_dir / f"img{SAME_BYTES[image_id]}.jpg", images_dir / name)
        else:
            Image.new("RGB", (8, 6), (image_id * 4, 255 - image_id * 4, image_id % 7)).save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "width": 8, "height": 6,
                       "duplicate_of": DUPLICATE_OF.get(image_id)})
        classes = [1] + ([2] if image_id % 3 == 0 else []) + ([7] if image_id in RARE_IMAGES else [])
        for category_id in classes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": [1.0, 1.0, 3.0, 2.0], "area": 6.0, "iscrowd": 0})
    coco = tmp_path / "src" / "annotations" / "instances.json"
    coco.parent.mkdir()
    coco.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return coco, images_dir


def split_of_images(out: Path) -> dict[int, str]:
    return {image["id"]: split for split in SPLITS
            for image in json.loads((out / "annotations" / f"{split}.json").read_text())["images"]}


def images_with(out: Path, split: str, category_id: int) -> set[int]:
    data = json.loads((out / "annotations" / f"{split}.json").read_text())
    return {a["image_id"] for a in data["annotations"] if a["category_id"] == category_id}


@pytest.mark.parametrize("seed", range(6))
def test_duplicates_land_in_one_split(dataset, tmp_path, seed):
    coco, images_dir = dataset
    report = split_coco(coco, images_dir, tmp_path / "out", seed=seed, sizes={"train": 20, "val": 10, "test": 15})
    split_of = split_of_images(tmp_path / "out")
    for copy, original in {**DUPLICATE_OF, **SAME_BYTES}.items():
        assert split_of[copy] == split_of[original]
    assert sorted(report["duplicate_groups"]) == [[20, 21], [30, 31]]


def test_starving_keeps_exactly_n_labelled_and_leaves_test_alone(dataset, tmp_path):
    coco, images_dir = dataset
    sizes = {"train": 20, "val": 10, "test": 15}
    split_coco(coco, images_dir, tmp_path / "full", seed=3, sizes=sizes)
    report = split_coco(coco, images_dir, tmp_path / "starved", seed=3, sizes=sizes, starve={"rare": 2})
    starved = tmp_path / "starved"
    labelled = images_with(starved, "train", 7) | images_with(starved, "val", 7)
    assert len(labelled) == 2
    assert images_with(starved, "test", 7) == images_with(tmp_path / "full", "test", 7)  # test is never starved
    assert images_with(starved, "test", 7), "the stratified test split holds its share of the rare class"
    assert images_with(starved, "pool", 7) == set(RARE_IMAGES) - labelled - images_with(starved, "test", 7)
    moved = {m["id"] for m in report["moved_by_starving"]}
    assert moved and moved <= images_with(starved, "pool", 7)
    assert {name: s["images"] for name, s in report["splits"].items()} == report["requested"]  # refilled to size
    assert report["starve"] == {"rare": 2} and report["seed"] == 3
    # Another seed keeps other rare images, as many.
    other = split_coco(coco, images_dir, tmp_path / "other", seed=4, sizes=sizes, starve={"rare": 2})
    assert sum(other["splits"][s]["images_per_class"]["rare"] for s in ("train", "val")) == 2


def test_a_holdout_split_is_labelled_and_starved_too(dataset, tmp_path):
    coco, images_dir = dataset
    report = split_coco(coco, images_dir, tmp_path / "h", seed=3, sizes={"train": 20, "val": 10, "holdout": 8,
                                                                         "test": 15}, starve={"rare": 2})
    out = tmp_path / "h"
    assert report["splits"]["holdout"]["images"] == 8 == len(load_coco(out / "annotations" / "holdout.json").images)
    labelled = images_with(out, "train", 7) | images_with(out, "val", 7) | images_with(out, "holdout", 7)
    assert len(labelled) == 2  # the holdout is labelled data: starving counts it with train and val

def test_the_seed_fixes_every_byte(dataset, tmp_path):
    coco, images_dir = dataset
    for out, seed in (("a", 1), ("b", 1), ("c", 2)):
        split_coco(coco, images_dir, tmp_path / out, seed=seed, starve={"rare": 3})
    for name in [f"annotations/{split}.json" for split in SPLITS] + ["split.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert split_of_images(tmp_path / "a") != split_of_images(tmp_path / "c")


def test_sizes_add_up_counts_and_fractions(dataset, tmp_path):
    coco, images_dir = dataset
    report = split_coco(coco, images_dir, tmp_path / "out", seed=0, sizes={"train": 0.25, "val": 9, "test": 0.35})
    counts = {name: split["images"] for name, split in report["splits"].items()}
    assert counts == {"train": 15, "val": 9, "pool": 15, "test": 21}
    assert sum(counts.values()) == 60 == len(split_of_images(tmp_path / "out"))
    boxes = sum(split["boxes"] for split in report["splits"].values())
    assert boxes == len(json.loads(coco.read_text())["annotations"])
    with pytest.raises(ValueError, match=r"train=30 \+ val=20 \+ test=20 = 70 images, but instances.json has 60"):
        split_coco(coco, images_dir, tmp_path / "no", sizes={"train": 30, "val": 20, "test": 20})


def test_the_command_writes_what_load_coco_reads(dataset, tmp_path, capsys):
    coco, images_dir = dataset
    out = tmp_path / "out"
    assert main(["split", "--coco", str(coco), "--images", str(images_dir), "--out", str(out), "--seed", "5",
                 "--sizes", "train=20,val=0.2,test=15", "--starve", "rare=1"]) == 0
    printed = capsys.readouterr().out
    assert "rare" in printed and "train" in printed and "starved rare=1" in printed
    assert (out / "images").is_symlink() and not any(out.rglob("*.jpg"))  # linked, never copied
    for split in SPLITS:
        coco_set = load_coco(out / "annotations" / f"{split}.json")
        assert coco_set.class_names == ["car", "sign", "rare"] and not coco_set.has_masks
        assert all(coco_set.image_path(image_id).is_file() for image_id in coco_set.images)
    assert json.loads((out / "split.json").read_text())["splits"]["val"]["images"] == 12


@pytest.mark.parametrize("change, message", [
    ({"--coco": "missing.json"}, "no COCO file"),
    ({"--images": "nowhere"}, "no image folder"),
    ({"--starve": "unicorn=3"}, "no class 'unicorn'"),
    ({"--starve": "rare=many"}, "is not CLASS=N"),
    ({"--sizes": "train=lots"}, "is not split=count"),
    ({"--sizes": "pool=10"}, "the pool takes the rest"),
    ({"--sizes": "train=50,val=20"}, "train=50 + val=20 + test=21 = 91 images"),
])
def test_bad_input_is_one_line_and_exit_code_2(dataset, tmp_path, capsys, change, message):
    coco, images_dir = dataset
    options = {"--coco": str(coco), "--images": str(images_dir), "--out": str(tmp_path / "out"), **change}
    assert main(["split", *[part for pair in options.items() for part in pair]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(not (ROAD_SIGNS / "annotations/instances.json").is_file(), reason="road-signs data not present")
def test_the_road_signs_benchmark_split(tmp_path, capsys):
    out = tmp_path / "road-signs"
    assert main(["split", "--coco", str(ROAD_SIGNS / "annotations/instances.json"), "--images",
                 str(ROAD_SIGNS / "images"), "--out", str(out), "--seed", "0", "--starve", "stop=5",
                 "--sizes", "train=150,val=100,test=300"]) == 0
    report = json.loads((out / "split.json").read_text())
    splits = report["splits"]
    assert {name: split["images"] for name, split in splits.items()} == {"train": 150, "val": 100, "pool": 327,
                                                                       "test": 300}
    assert splits["train"]["images_per_class"]["stop"] + splits["val"]["images_per_class"]["stop"] == 5
    assert splits["test"]["images_per_class"]["stop"] >= 25
    assert sum(split["images_per_class"]["stop"] for split in splits.values()) == 91
    split_of = split_of_images(out)
    assert split_of[49] == split_of[43] and split_of[148] == split_of[146]  # road48 = road42, road147 = road145
    test = load_coco(out / "annotations" / "test.json")
    assert all(test.image_path(image_id).is_file() for image_id in test.images)
