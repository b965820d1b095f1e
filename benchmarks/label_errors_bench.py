"""Can the engine tell the annotators' mistakes from the model's? Plant known label errors in a labelled set, let
a model judge it, and rank the suspects.

    .venv/bin/python benchmarks/label_errors_bench.py [--parts synthetic mining pennfudan coco128]
        [--seeds 0 1 2] [--shared ../shared/data] [--work /tmp/dataengine-label-errors-bench]
        [--out benchmarks/results/label_errors.json]

Planting (seeded), over the labelled set's boxes: delete 10 %, swap the class of 10 % (to another class), shift or
shrink 10 % so the new box has IoU 0.3-0.7 with the old one (at least 0.3 IoU lost), and add boxes on background
numbering 5 % (sizes drawn from the set's boxes, IoU < 0.05 with every box, and on the synthetic scenes with every
unlabelled look-alike too). Each planted error has one suspect type that finds it: deleted -> possible_missing
(a suspect prediction at IoU >= 0.5 with the deleted box), swapped -> possible_wrong_class, shifted ->
possible_bad_box, added -> possible_spurious (the suspect's label is the planted one).

Per kind: the suspects of its type ranked by suspicion, recall within the top 2 x planted and within the top
planted, precision at both cuts (at the 2 x cut it cannot exceed 0.5), and recall and precision of the suspects at
the default threshold (what mining leaves out and `review-labels` ships).

Parts:
- synthetic: the demo's scenes at full size; the seed model (the `small` preset, FULL["seed_steps"] steps, not the
  demo's mobilenet) judges the val split it never trained on;
- mining: the same scenes with 10 % of the val labels deleted; mining with and without leaving suspected label
  errors out, on clean and on noisy labels: the share of the mined batch holding a look-alike (a real model
  error). The clean runs are the demo's own mining step (its scenes, seed model, k, budget and query types);
- pennfudan: PennFudanPed (120 train / 50 val), the pretrained mobilenet preset (the small one without the optional
  weights), 150 steps, judges the planted val split (one class: nothing to swap);
- coco128: 5 % of coco128's labels swapped (as FiftyOne's mistakenness example plants); the set is its own
  training set, so two fold models (150 steps each) judge it, each image by the one that never saw it (k-fold).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PLANT = {"deleted": 0.10, "swapped": 0.10, "shifted": 0.10, "added": 0.05}
FINDS = {"deleted": "possible_missing", "swapped": "possible_wrong_class", "shifted": "possible_bad_box",
         "added": "possible_spurious"}


def _iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w, h = max(0.0, min(ax2, bx2) - max(a[0], b[0])), max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = w * h
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


def plant(coco: dict, seed: int, rates: dict[str, float] = PLANT, avoid: dict | None = None) -> tuple[dict, dict]:
    """A copy of `coco` with label errors planted, and what was planted: kind -> list of records (`ann_id`, the
    image, the box before and after, the classes)."""
    rng = np.random.default_rng(seed)
    coco = json.loads(json.dumps(coco))
    images = {im["id"]: im for im in coco["images"]}
    anns = [a for a in coco["annotations"] if not a.get("iscrowd", 0)]
    order = rng.permutation(len(anns))
    n = {kind: round(rate * len(anns)) for kind, rate in rates.items()}
    take = {}
    start = 0
    for kind in ("deleted", "swapped", "shifted"):
        take[kind] = [anns[i] for i in order[start:start + n.get(kind, 0)]]
        start += n.get(kind, 0)
    class_ids = sorted(c["id"] for c in coco["categories"])
    planted: dict[str, list] = {kind: [] for kind in FINDS}
    for a in take["deleted"]:
        planted["deleted"].append({"ann_id": a["id"], "image_id": a["image_id"], "bbox": a["bbox"],
                                   "category_id": a["category_id"]})
    gone = {a["id"] for a in take["deleted"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["id"] not in gone]
    for a in take["swapped"]:
        new = int(rng.choice([c for c in class_ids if c != a["category_id"]]))
        planted["swapped"].append({"ann_id": a["id"], "image_id": a["image_id"], "bbox": a["bbox"],
                                   "category_id": a["category_id"], "new_category_id": new})
        a["category_id"] = new
    for a in take["shifted"]:
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        for _ in range(200):
            if rng.random() < 0.5:  # shift by a share of the box
                dx, dy = rng.uniform(-0.45, 0.45) * w, rng.uniform(-0.45, 0.45) * h
                box = [x + dx, y + dy, w, h]
            else:  # shrink or grow about a corner-ish anchor
                s = rng.uniform(0.45, 0.8) if rng.random() < 0.7 else rng.uniform(1.3, 1.8)
                box = [x + rng.uniform(0, 1) * w * (1 - s), y + rng.uniform(0, 1) * h * (1 - s), w * s, h * s]
            box = [max(0.0, box[0]), max(0.0, box[1]), box[2], box[3]]
            box[2], box[3] = min(box[2], im["width"] - box[0]), min(box[3], im["height"] - box[1])
            if box[2] >= 2 and box[3] >= 2 and 0.3 <= _iou(box, a["bbox"]) <= 0.7:
                break
        else:
            continue
        planted["shifted"].append({"ann_id": a["id"], "image_id": a["image_id"], "bbox": a["bbox"], "new_bbox": box,
                                   "iou": _iou(box, a["bbox"]), "category_id": a["category_id"]})
        a["bbox"] = [round(v, 2) for v in box]
        a["area"] = box[2] * box[3]
        a["segmentation"] = [[box[0], box[1], box[0] + box[2], box[1], box[0] + box[2], box[1] + box[3], box[0],
                              box[1] + box[3]]] if a.get("segmentation") else a.get("segmentation", [])
    sizes = [(a["bbox"][2], a["bbox"][3]) for a in anns]
    next_id = max((a["id"] for a in coco["annotations"]), default=0) + 1
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a["bbox"])
    for _ in range(n.get("added", 0)):
        for _ in range(500):
            im = images[int(rng.choice(list(images)))]
            w, h = sizes[int(rng.integers(len(sizes)))]
            if w >= im["width"] or h >= im["height"]:
                continue
            box = [float(rng.uniform(0, im["width"] - w)), float(rng.uniform(0, im["height"] - h)), w, h]
            others = by_image.get(im["id"], []) + [o["bbox"] for o in planted["deleted"] if o["image_id"] == im["id"]]
            others += (avoid or {}).get(im["id"], [])
            if all(_iou(box, o) < 0.05 for o in others):
                break
        else:
            continue
        cid = int(rng.choice(class_ids))
        coco["annotations"].append({"id": next_id, "image_id": im["id"], "category_id": cid, "bbox": box,
                                    "area": w * h, "iscrowd": 0, "segmentation": []})
        by_image.setdefault(im["id"], []).append(box)
        planted["added"].append({"ann_id": next_id, "image_id": im["id"], "bbox": box, "category_id": cid})
        next_id += 1
    return coco, planted


def _finds(kind: str, suspect, truth: dict) -> bool:
    """Whether `suspect` finds the planted error `truth` of `kind`."""
    if suspect.coco_image_id != truth["image_id"]:
        return False
    if kind == "deleted":  # no label left to name: the suspect prediction must sit on the deleted box
        return suspect.bbox is not None and _iou(suspect.bbox, truth["bbox"]) >= 0.5
    return suspect.gt_id == truth["ann_id"]


def _at_cut(kind: str, ranked: list, truths: list, cut: int) -> dict:
    chosen = ranked[:cut]
    true_suspects = [s for s in chosen if any(_finds(kind, s, t) for t in truths)]
    recalled = sum(any(_finds(kind, s, t) for s in chosen) for t in truths)
    return {"suspects": len(chosen), "recall": recalled / max(1, len(truths)),
            "precision": len(true_suspects) / max(1, len(chosen))}


def score_suspects(suspects: list, planted: dict, threshold: float) -> dict:
    """Per planted kind: recall and precision of that kind's suspects at the cuts (see the module's text)."""
    out = {}
    for kind, suspect_type in FINDS.items():
        ranked = sorted((s for s in suspects if s.type == suspect_type), key=lambda s: -s.suspicion)
        truths = planted[kind]
        above = sum(s.suspicion >= threshold for s in ranked)
        out[kind] = {"planted": len(truths), "suspect_type": suspect_type, "candidates": len(ranked),
                     "top_2x": _at_cut(kind, ranked, truths, 2 * len(truths)),
                     "top_1x": _at_cut(kind, ranked, truths, len(truths)),
                     "at_threshold": _at_cut(kind, ranked, truths, above)}
    return out


# ---------------------------------------------------------------------------------------------------- parts
def synthetic_setup(work: Path):
    """The demo's scenes at full size, its seed model registered, and detections over val and pool in fdb."""
    from dataengine.config import store_config
    from detectors.config import TrainConfig
    from flows.demo import FULL
    from jobs.context import checkpoint_of, connection
    from tasks.demo import generate_scenes, train_seed
    from jobs.detect import detect_images

    store = store_config()
    data = work / "synthetic"
    generate_scenes.fn(str(data), FULL, progress=False)
    seed = train_seed.fn(store, str(data), str(work / "seed-120.pt"), TrainConfig(steps=FULL["seed_steps"]),
                         progress=False, min_size=240, max_size=320)
    fdb = connection(store)
    checkpoint = checkpoint_of(store, seed["version"])
    images = data / "images"
    for split in ("val", "pool"):
        uris = [str((images / im["file_name"]).resolve())
                for im in json.loads((data / "annotations" / f"{split}.json").read_text())["images"]]
        detect_images(fdb, checkpoint, uris, split=split, labelled=split == "val", progress=False)
    return store, fdb, seed["version"], data


def part_synthetic(work: Path, seeds: list[int]) -> dict:
    from mining.label_errors import LabelErrorConfig, find_label_errors
    from records.coco import load_coco

    _, fdb, version, data = synthetic_setup(work)
    clean = json.loads((data / "annotations" / "val.json").read_text())
    avoid = {im["id"]: [d["bbox"] for d in im.get("distractors", [])] for im in clean["images"]}
    config = LabelErrorConfig()
    by_seed = {}
    for seed in seeds:
        noisy, planted = plant(clean, seed, avoid=avoid)
        path = work / f"val_noisy_{seed}.json"
        path.write_text(json.dumps(noisy))
        start = time.monotonic()
        report = find_label_errors(fdb, version, load_coco(path, image_dir=data / "images"), config)
        by_seed[str(seed)] = {"seconds": round(time.monotonic() - start, 2),
                              "by_kind": score_suspects(report.suspects, planted, config.threshold),
                              "label_errors_at_threshold": report.counts()}
    clean_report = find_label_errors(fdb, version, load_coco(data / "annotations" / "val.json"), config)
    targets = {}
    for kind in FINDS:
        runs = [r["by_kind"][kind] for r in by_seed.values()]
        targets[kind] = {"recall_top_2x_min": min(r["top_2x"]["recall"] for r in runs),
                         "precision_top_2x_min": min(r["top_2x"]["precision"] for r in runs),
                         "precision_top_1x_min": min(r["top_1x"]["precision"] for r in runs)}
        targets[kind]["recall_met"] = targets[kind]["recall_top_2x_min"] >= 0.9
        targets[kind]["precision_at_2x_met"] = targets[kind]["precision_top_2x_min"] >= 0.8
        targets[kind]["precision_at_1x_met"] = targets[kind]["precision_top_1x_min"] >= 0.8
    return {"model": version, "labelled_set": "demo val split, 100 images (the seed never trained on it)",
            "boxes": len([a for a in clean["annotations"] if not a.get("iscrowd", 0)]),
            "predictions": clean_report.predictions, "threshold": config.threshold, "planting_seeds": seeds,
            "by_seed": by_seed, "targets": targets,
            "targets_note": "the issue asks recall >= 0.9 within the top 2 x planted and precision >= 0.8 at that "
                            "cut; with only the planted errors true, precision at 2 x planted cannot exceed 0.5 "
                            "when that many candidates exist, so precision is also given at 1 x planted",
            "on_clean_labels": {"label_errors_at_threshold": clean_report.counts(),
                                "note": "the generator's labels are exact: every suspect here is a false alarm"}}


def part_mining(work: Path, seeds: list[int]) -> dict:
    """Mining with 10 % of the val labels deleted: leaving suspected label errors out, or not, against clean."""
    from detectors.synthetic import hard_case_share
    from flows.demo import FULL
    from records import QUERIED_FP_TYPES
    from mining.config import MiningConfig
    from mining.selection import pool_index_upkeep, select_hard_cases
    from records.coco import load_coco

    _, fdb, version, data = synthetic_setup(work)
    clean_path = data / "annotations" / "val.json"
    runs = [("clean labels, label errors kept", clean_path, True, None),
            ("clean labels, label errors left out", clean_path, False, None)]
    deleted = {}
    for seed in seeds:
        noisy, planted = plant(json.loads(clean_path.read_text()), seed, {"deleted": 0.10})
        noisy_path = work / f"val_missing10_{seed}.json"
        noisy_path.write_text(json.dumps(noisy))
        deleted[str(seed)] = len(planted["deleted"])
        runs += [(f"noisy (seed {seed}), label errors kept", noisy_path, True, seed),
                 (f"noisy (seed {seed}), label errors left out", noisy_path, False, seed)]
    out = {"deleted_labels": deleted, "query_types": list(QUERIED_FP_TYPES), "k": FULL["k"], "budget": FULL["budget"]}
    for name, path, keep, _ in runs:
        config = MiningConfig(k=FULL["k"], budget=FULL["budget"], types=QUERIED_FP_TYPES, keep_label_errors=keep,
                              random_arm=False, budget_split="hits")  # as the demo mines
        pool_index_upkeep(fdb, version, config, work / "mining" / "indexes")  # the step before mining
        result = select_hard_cases(fdb, version, load_coco(path, image_dir=data / "images"), config,
                                   out_dir=work / "mining")
        share = hard_case_share([im.uri for im in result.selection.images], data / "annotations" / "pool.json")
        out[name] = {"queries": len(result.queries), "left_out": result.left_out, "mined": share["images"],
                     "lookalike_share": round(share["share"], 3)}
        print("mining", name, json.dumps(out[name]), flush=True)
    noisy_kept = [out[n]["lookalike_share"] for n, _, keep, seed in runs if seed is not None and keep]
    noisy_out = [out[n]["lookalike_share"] for n, _, keep, seed in runs if seed is not None and not keep]
    out["summary"] = {"clean, kept": out["clean labels, label errors kept"]["lookalike_share"],
                      "clean, left out (the default)": out["clean labels, label errors left out"]["lookalike_share"],
                      "noisy, kept (mean over seeds)": round(sum(noisy_kept) / len(noisy_kept), 3),
                      "noisy, left out (mean over seeds)": round(sum(noisy_out) / len(noisy_out), 3)}
    # The target: with the product's default (label errors left out), noisy labels must not lower the share
    # clean labels give. Against clean labels with nothing left out (mining before this feature), beside it.
    noisy = out["summary"]["noisy, left out (mean over seeds)"]
    out["summary"]["target_met"] = noisy >= out["summary"]["clean, left out (the default)"]
    out["summary"]["not_below_clean_kept"] = noisy >= out["summary"]["clean, kept"]
    return out


def _judge_planted(fdb, versions, labelled_path: Path, image_dir: Path, seed: int, rates: dict, work: Path,
                   name: str) -> dict:
    from mining.label_errors import LabelErrorConfig, find_label_errors
    from records.coco import load_coco

    clean = json.loads(labelled_path.read_text())
    noisy, planted = plant(clean, seed, rates)
    path = work / f"{name}_noisy.json"
    path.write_text(json.dumps(noisy))
    config = LabelErrorConfig()
    start = time.monotonic()
    report = find_label_errors(fdb, versions, load_coco(path, image_dir=image_dir), config)
    return {"images": report.images, "boxes": len([a for a in clean["annotations"] if not a.get("iscrowd", 0)]),
            "predictions": report.predictions, "seconds": round(time.monotonic() - start, 2),
            "threshold": config.threshold, "by_kind": score_suspects(report.suspects, planted, config.threshold),
            "label_errors_at_threshold": report.counts(), "judge_too_weak": report.judge_too_weak}


def part_pennfudan(work: Path, shared: Path, seed: int = 0, steps: int = 150) -> dict:
    """PennFudanPed, 120 train / 50 val: the pretrained preset (from scratch without the optional weights),
    trained on train, judges the planted val split. One class: no swaps can be planted."""
    from dataengine.config import store_config
    from detectors.config import TrainConfig
    from detectors.pipeline import convert_pennfudan, dataset_split, train_detector
    from detectors.weights import packaged_mobilenet_v2
    from jobs.context import connection, register_checkpoint
    from jobs.detect import detect_images

    store = store_config()
    fdb = connection(store)
    data = work / "pennfudan"
    convert_pennfudan(shared / "PennFudanPed", data, n_train=120)
    train, val = dataset_split(data, "train"), dataset_split(data, "val")
    preset = "mobilenet" if packaged_mobilenet_v2() else "small"
    out = work / f"pennfudan-{preset}-{steps}.pt"
    start = time.monotonic()
    if out.is_file():
        from detectors.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(out)
    else:
        checkpoint, _, _ = train_detector(train, None, out, TrainConfig(steps=steps), preset=preset, progress=False)
    register_checkpoint(fdb, checkpoint, training_data={"train": str(train.path), "images": str(train.image_dir)})
    detect_images(fdb, checkpoint, [str(val.image_path(i).resolve()) for i in val.images], split="val",
                  labelled=True, progress=False)
    minutes = (time.monotonic() - start) / 60
    rates = {k: v for k, v in PLANT.items() if k != "swapped"}
    return {"model": checkpoint.version, "preset": preset, "steps": steps, "train_and_detect_minutes": round(minutes, 1),
            "labelled_set": "val split, 50 images (held out from training)", "note": "one class: no swaps planted",
            **_judge_planted(fdb, checkpoint.version, Path(val.path), val.image_dir, seed, rates, work, "pennfudan")}


def part_coco128(work: Path, shared: Path, seed: int = 0, steps: int = 150, folds: int = 2) -> dict:
    """coco128 with 5 % of its labels swapped to another class (46 of ~930, as FiftyOne's mistakenness example
    plants): the set is its own training set, so `folds` fold models judge it (k-fold)."""
    from dataengine.config import store_config
    from detectors.config import TrainConfig
    from detectors.weights import packaged_mobilenet_v2
    from records.coco import load_coco
    from jobs.context import connection
    from jobs.label_folds import fold_models

    store = store_config()
    fdb = connection(store)
    clean_path = shared / "coco128" / "annotations" / "instances.json"
    clean = json.loads(clean_path.read_text())
    noisy, planted = plant(clean, seed, {"swapped": 0.05})
    noisy_path = work / "coco128_swapped.json"
    noisy_path.write_text(json.dumps(noisy))
    labelled = load_coco(noisy_path, image_dir=shared / "coco128" / "images")
    preset = "mobilenet" if packaged_mobilenet_v2() else "small"
    start = time.monotonic()
    # The fold models train on the noisy labels, as they would on a real set with mistakes in it.
    versions = fold_models(fdb, labelled, folds, work / f"coco128-folds-{preset}-{steps}", TrainConfig(steps=steps),
                           preset=preset)
    minutes = (time.monotonic() - start) / 60
    from mining.label_errors import LabelErrorConfig, find_label_errors

    config = LabelErrorConfig()
    report = find_label_errors(fdb, versions, labelled, config)
    scored = score_suspects(report.suspects, planted, config.threshold)["swapped"]
    return {"fold_models": versions, "preset": preset, "steps_per_fold": steps, "folds": folds,
            "train_and_detect_minutes": round(minutes, 1), "predictions": report.predictions,
            "images": report.images, "swapped": scored, "label_errors_at_threshold": report.counts(),
            "labels": report.labels, "judge_too_weak": report.judge_too_weak,
            "for_scale": "FiftyOne's compute_mistakenness with a pretrained COCO model: 43 of 46 planted swaps"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["synthetic", "mining", "pennfudan", "coco128"],
                        choices=["synthetic", "mining", "pennfudan", "coco128"])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="planting seeds (synthetic and mining parts; the others plant with the first)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dataengine-label-errors-bench"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "label_errors.json")
    args = parser.parse_args()
    os.environ["DATAENGINE_HOME"] = str(args.work / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args.work.mkdir(parents=True, exist_ok=True)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({"machine": platform.node(), "date": time.strftime("%Y-%m-%d"), "planting": PLANT})

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))

    parts = {"synthetic": lambda: part_synthetic(args.work, args.seeds),
             "mining": lambda: part_mining(args.work, args.seeds),
             "pennfudan": lambda: {**part_pennfudan(args.work, args.shared, args.seeds[0]), "planting_seed": args.seeds[0]},
             "coco128": lambda: {**part_coco128(args.work, args.shared, args.seeds[0]), "planting_seed": args.seeds[0]}}
    for name in args.parts:
        if name not in parts:
            continue
        start = time.monotonic()
        result[name] = {**parts[name](), "minutes": round((time.monotonic() - start) / 60, 1)}
        print(name, json.dumps(result[name], default=str), flush=True)
        save()


if __name__ == "__main__":
    main()
