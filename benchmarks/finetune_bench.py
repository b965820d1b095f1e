"""Which fine-tuning recipe makes a mined batch count? Arms x recipes x training seeds on a finished demo.

    python benchmarks/finetune_bench.py DEMO_ROOT [--recipes 'lr=5e-4,hn=0.5,os=4' 'lr=2e-4,hn=0,os=4']
        [--arms control mined random] [--seeds 0 1] [--steps 30] [--out benchmarks/results/finetune.json]

DEMO_ROOT is a `dataengine demo` folder (e.g. ~/.local/share/dataengine/demo/full-<tag>): its synthetic data, its
seed model and the training sets its arms used (work/arms/train_<arm>.json: the seed's images plus the batch).
Each recipe (lr, hard-negative share hn, oversampling os) fine-tunes every arm with every seed from the same seed
model, and pycocotools scores them on the val split (superset and the demo's query subset). Writes the mAP and
high-score error counts per run to the output file, appending to what is there.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.config import FinetuneConfig  # noqa: E402
from detectors.pipeline import dataset_split  # noqa: E402
from tasks.experiment import retrain_and_compare  # noqa: E402


def batch_of(arm_json: Path, train_names: set[str]) -> tuple[list, list]:
    data = json.loads(arm_json.read_text())
    images = [im for im in data["images"] if im["file_name"] not in train_names]
    ids = {im["id"] for im in images}
    return images, [a for a in data["annotations"] if a["image_id"] in ids]


def parse_recipe(text: str) -> dict:
    keys = {"lr": "lr", "hn": "hard_negatives", "os": "oversample"}
    defaults = FinetuneConfig()
    recipe = {"lr": defaults.lr, "hard_negatives": defaults.hard_negatives, "oversample": defaults.oversample}
    for part in text.split(","):
        k, v = part.split("=")
        recipe[keys[k.strip()]] = float(v)
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo_root", type=Path)
    parser.add_argument("--recipes", nargs="+", default=["lr=2e-4,hn=0.25,os=4"])
    parser.add_argument("--arms", nargs="+", default=["control", "mined", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--queries", type=Path, default=None,
                        help="a demo report's comparison.json, for its query subset (default: the newest report)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "finetune.json")
    args = parser.parse_args()

    data, work = args.demo_root / "synthetic", args.demo_root / "work"
    train, val = dataset_split(data, "train"), dataset_split(data, "val")
    train_names = {im["file_name"] for im in train.images.values()}
    seed = sorted(work.glob("seed-*.pt"))[-1]
    batches = {arm: batch_of(work / "arms" / f"train_{arm}.json", train_names) for arm in args.arms
               if arm != "control"}
    query_ids = json.loads((work / "query_images.json").read_text()) if (work / "query_images.json").is_file() else []
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    for text in args.recipes:
        recipe = parse_recipe(text)
        start = time.monotonic()
        comparison = retrain_and_compare(seed, train, batches, val, query_ids, work / "bench",
                                         FinetuneConfig(steps=args.steps, seeds=tuple(args.seeds), **recipe),
                                         progress=False)
        entry = {"recipe": recipe, "steps": args.steps, "seeds": args.seeds, "seed_model": seed.name,
                 "minutes": round((time.monotonic() - start) / 60, 1), "machine": platform.node(), "arms": {}}
        for name, arm in comparison.arms.items():
            entry["arms"][name] = {"runs": arm.runs or [{"mAP": {s: {t: m[t]["mAP"] for t in ("bbox", "segm")
                                                                   if t in m} for s, m in arm.metrics.items()},
                                                          "errors": arm.error_counts}]}
            bbox = [r["mAP"]["superset"]["bbox"] for r in entry["arms"][name]["runs"]]
            fpb = [r["errors"].get("fp_background", 0) for r in entry["arms"][name]["runs"]]
            print(f"{text:<24} {name:<8} bbox superset {sum(bbox) / len(bbox):.3f} {bbox}  fp_background {fpb}")
        results["runs"].append(entry)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
