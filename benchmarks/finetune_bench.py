"""Which fine-tuning recipe makes a mined batch count without making the model worse? Recipes x scene draws x
arms x training seeds, from each draw's own seed model.

    .venv/bin/python benchmarks/finetune_bench.py [--draws 0 1] [--seeds 0 1 2]
        [--recipes 'steps=30' 'steps=30,ho=0.25,ce=10']
        [--home /tmp/dataengine-finetune-bench] [--out benchmarks/results/finetune.json]

Each draw is a `dataengine demo` at its full sizes on other scenes (`data_seed`), prepared once under --home: its
data, seed model, mined and random batches (labelled by the generator's ground truth) and query subset. Each
recipe (steps, lr, hard-negative share hn, oversampling os, held-out share ho, check_every ce, patience pa;
unnamed keys keep `FinetuneConfig`'s defaults) fine-tunes the control, mined and random arms with every training
seed from that seed model, and pycocotools scores them on the val split: the superset and the query subset.

Per recipe and arm, the file says how each arm moved against its seed model, draw by draw (mean and sd over the
training seeds): bbox mAP on the superset and on the query subset, localisation and background false positives;
and whether the issue's conditions held: no arm below the seed on the query subset beyond noise (twice the seed
sd), localisation errors not rising.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.config import FinetuneConfig  # noqa: E402 - after the path insert

KEYS = {"steps": "steps", "lr": "lr", "hn": "hard_negatives", "os": "oversample", "ho": "holdout",
        "ce": "check_every", "pa": "patience"}
INTS = {"steps", "check_every", "patience"}


def prepare_draw(draw: int, home: Path) -> Path:
    """A demo folder for scene draw `draw` under `home`: the demo's data, seed model, mined and random batches and
    query subset, at the demo's full sizes. Its own fine-tuning is cut to one step (the benchmark does that part)."""
    os.environ["DATAENGINE_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.demo import demo

    root = home / f"draw{draw}"
    if not (root / "work" / "query_images.json").is_file():
        demo(sizes={"data_seed": draw, "arm_steps": 1, "seeds": (0,)}, root=str(root), progress=False)
    return root


def batch_of(arm_json: Path, train_names: set[str]) -> tuple[list, list]:
    data = json.loads(arm_json.read_text())
    images = [im for im in data["images"] if im["file_name"] not in train_names]
    ids = {im["id"] for im in images}
    return images, [a for a in data["annotations"] if a["image_id"] in ids]


def parse_recipe(text: str) -> dict:
    """'steps=30,ho=0.15' -> FinetuneConfig keyword arguments."""
    recipe = {}
    for part in filter(None, text.split(",")):
        key, value = (p.strip() for p in part.split("="))
        name = KEYS[key]
        recipe[name] = None if value == "none" else int(value) if name in INTS else float(value)
    return recipe


def run_recipe(root: Path, recipe: dict, seeds: list[int]) -> dict:
    """Every arm x seed of one recipe on one prepared draw: the seed model's numbers and each run's."""
    from detectors.pipeline import dataset_split
    from jobs.experiment import run_experiment

    data, work = root / "synthetic", root / "work"
    train, val = dataset_split(data, "train"), dataset_split(data, "val")
    train_names = {im["file_name"] for im in train.images.values()}
    seed = max(work.glob("seed-*.pt"))
    batches = {arm: batch_of(work / "arms" / f"train_{arm}.json", train_names) for arm in ("mined", "random")}
    query_ids = json.loads((work / "query_images.json").read_text())
    tag = "-".join(f"{k}{v}" for k, v in sorted(recipe.items()))
    comparison = run_experiment(seed, train, batches, val, query_ids, work / f"bench-{tag}",
                                FinetuneConfig(seeds=tuple(seeds), **recipe), progress=False)
    before = comparison.arms["before"]
    out = {"seed_model": {"bbox_superset": before.metrics["superset"]["bbox"]["mAP"],
                          "bbox_query": before.metrics["query subset"]["bbox"]["mAP"],
                          "errors": before.error_counts}, "arms": {}}
    for name, arm in comparison.arms.items():
        if name == "before":
            continue
        out["arms"][name] = [{"seed": r["seed"], "steps": r["steps"], "seconds": r["seconds"],
                              "bbox_superset": r["mAP"]["superset"]["bbox"],
                              "bbox_query": r["mAP"]["query subset"]["bbox"], "errors": r["errors"],
                              "holdout": r["holdout"]} for r in arm.runs]
    return out


def _mean_sd(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summarise(per_draw: dict[int, dict]) -> dict:
    """arm -> the change against the seed model (mean ± sd over training seeds, per draw, then over draws) and the
    issue's two conditions, draw by draw."""
    arms = next(iter(per_draw.values()))["arms"]
    out = {}
    for arm in arms:
        entry = {"per_draw": {}, "below_seed_on_query_subset_beyond_noise": [], "localisation_errors_rose": []}
        deltas = {"bbox_superset": [], "bbox_query": [], "fp_localisation": [], "fp_background": []}
        for draw, result in per_draw.items():
            seed, runs = result["seed_model"], result["arms"][arm]
            row = {}
            for key in ("bbox_superset", "bbox_query"):
                row[key] = _mean_sd([r[key] for r in runs])
                row[key + "_change"] = row[key][0] - seed[key]
                deltas[key].append(row[key + "_change"])
            for key in ("fp_localisation", "fp_background"):
                row[key] = _mean_sd([r["errors"].get(key, 0) for r in runs])
                row[key + "_change"] = row[key][0] - seed["errors"].get(key, 0)
                deltas[key].append(row[key + "_change"])
            row["steps_kept"] = [r["holdout"]["best_step"] if r["holdout"] else r["steps"] for r in runs]
            entry["per_draw"][draw] = row
            if row["bbox_query_change"] < -2 * row["bbox_query"][1]:
                entry["below_seed_on_query_subset_beyond_noise"].append(draw)
            if row["fp_localisation_change"] > 0:
                entry["localisation_errors_rose"].append(draw)
        entry["change"] = {k: _mean_sd(v) for k, v in deltas.items()}
        out[arm] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+",
                        default=["steps=30", "steps=30,ho=0.25,ce=10"])
    parser.add_argument("--draws", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--home", type=Path, default=Path("/tmp/dataengine-finetune-bench"),
                        help="where the draws are prepared (kept, so a second run reuses them)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "finetune.json")
    args = parser.parse_args()

    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if "recipes" not in results:  # an older layout (one draw): start a new file
        results = {"machine": platform.node(), "draws": args.draws, "seeds": args.seeds, "recipes": {}}
    roots = {draw: prepare_draw(draw, args.home) for draw in args.draws}
    for text in args.recipes:
        recipe, start = parse_recipe(text), time.monotonic()
        per_draw = {draw: run_recipe(root, recipe, args.seeds) for draw, root in roots.items()}
        summary = summarise(per_draw)
        results["recipes"][text] = {"recipe": {**FinetuneConfig(**recipe).__dict__, "seeds": args.seeds},
                                    "minutes": round((time.monotonic() - start) / 60, 1),
                                    "summary": summary, "per_draw": per_draw}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=list))
        for arm, entry in summary.items():
            change = entry["change"]
            print(f"{text:<32} {arm:<8} superset {change['bbox_superset'][0]:+.3f} query {change['bbox_query'][0]:+.3f}"
                  f" loc {change['fp_localisation'][0]:+.1f} bg {change['fp_background'][0]:+.1f}"
                  f" below-seed draws {entry['below_seed_on_query_subset_beyond_noise']}"
                  f" loc-rose draws {entry['localisation_errors_rose']}", flush=True)


if __name__ == "__main__":
    main()
