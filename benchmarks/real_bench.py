"""Real photographs, a rare class: does labelling what the engine mines make a better model than labelling at random?

The world: `../shared/data/road-signs` (877 street photos; stop is the rare class), split by `dataengine split`
(`records.splits`): train 150, val 100 (the queries), holdout 80 (only stops fine-tuning at its plateau), test 300
(never starved, never chooses anything), the pool the rest. `starved`: the labelled splits keep 5 stop images
(`--starve stop=5`, as TALISMAN's seed sees 10 per rare class); `full`: no starving, every class counts.

A part is one setting and one split seed:
1. the seed model: the `mobilenet` preset trained to its plateau (patience on val), once per split;
2. each round, each arm mines `budget` images with its own model (round 1: the seed's; then its own round's
   model), each in a feature database of its own; the pool's ground truth labels them (the oracle annotator);
3. every arm is fine-tuned from the seed on train plus all its labelled batches, with each training seed, to its
   plateau on the holdout split (the no-new-data arm, `none`, too: it measures only the plateau), and scored on the
   test split: stop AP50 and AP, superset bbox mAP and AP50, FPs per image and stop recall at the serving threshold;
   and each batch's stop share beside the pool's.

    python benchmarks/real_bench.py --setting starved --split-seed 0 --train-seeds 0 1 2 --arms targeted random
    python benchmarks/real_bench.py --merge      # benchmarks/results/real/*.json -> results/real.json + real.png

Parts merge: `summary[setting][arm][round_<r>][metric] = {mean, sd, runs}` over every run (training seeds x split
seeds), `against_random[setting][arm][round_<r>][metric] = {difference, min_detectable_difference}` (2 sd of the
difference of means, runs independent), and `pool_stop_share[setting]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROAD_SIGNS", REPO.parent / "shared" / "data" / "road-signs"))
RESULTS = REPO / "benchmarks" / "results"
PARTS = RESULTS / "real"
TARGET = "stop"
SIZES = {"train": 150, "val": 100, "holdout": 80, "test": 300}
STARVE = {"starved": {TARGET: 5}, "full": {}}
# Each arm's mining: a strategy and its settings (`mining.config.MiningConfig`). `none` labels nothing.
ARMS = {
    "targeted": dict(strategy="targeted", target_class=(TARGET,)),
    "errors-map": dict(strategy="errors", budget_split="cost", cost="map"),
    "errors-op": dict(strategy="errors", budget_split="cost", cost="operating-point"),
    "uncertainty": dict(strategy="uncertainty"),
    "diversity": dict(strategy="diversity"),
    "random": dict(strategy="random"),
}
METRICS = ("stop_ap50", "stop_ap", "test_bbox_map", "test_ap50", "fp_per_image", "stop_recall")
LOWER_IS_BETTER = {"fp_per_image"}


def run_part(setting: str, split_seed: int, arms: list[str], train_seeds: list[int], rounds: int, budget: int,
             home: Path, seed_steps: int, finetune_steps: int, workers: int, out: Path) -> dict:
    """One setting and split seed: the seed model, then `rounds` rounds of every arm; returns the part's record,
    written to `out` after every round (a part cut short keeps the rounds it finished, `rounds_done`)."""
    os.environ["DATAENGINE_HOME"] = str(home)
    from detectors.config import FinetuneConfig
    from records.coco import load_coco
    from records.splits import split_coco

    started = time.monotonic()
    data = home / f"road-signs-{setting}-{split_seed}"
    if not (data / "split.json").is_file():
        split_coco(DATA / "annotations" / "instances.json", DATA / "images", data, seed=split_seed, sizes=SIZES,
                   starve=STARVE[setting])
    sets = {name: load_coco(data / "annotations" / f"{name}.json") for name in ("train", "val", "holdout", "pool",
                                                                                  "test")}
    seed = _seed_model(data, sets, seed_steps)
    recipe = FinetuneConfig(steps=finetune_steps, lr=2e-4, seeds=tuple(train_seeds), workers=workers,
                            check_every=20, patience=2, check_start=False)
    part = {"setting": setting, "split_seed": split_seed, "sizes": SIZES, "starve": STARVE[setting],
            "budget": budget, "rounds": rounds, "train_seeds": train_seeds, "seed_model": seed,
            "recipe": {"steps": recipe.steps, "lr": recipe.lr, "check_every": recipe.check_every,
                       "patience": recipe.patience, "check_start": recipe.check_start, "oversample": recipe.oversample,
                       "hard_negatives": recipe.hard_negatives},
            "pool_stop_share": _stop_share(sets["pool"], list(sets["pool"].images)), "arms": {}}
    batches: dict[str, list] = {arm: [] for arm in arms}
    miners = {arm: seed["checkpoint"] for arm in arms}
    for round_no in range(1, rounds + 1):
        for arm in arms:
            batches[arm].append(_mine(arm, round_no, miners[arm], sets, data, batches[arm], budget, home))
        comparison = _fine_tune_arms(seed["checkpoint"], sets, batches, recipe, home / "work" / data.name /
                                     f"round-{round_no}")
        for arm in [*arms, "none"]:
            name = "control" if arm == "none" else arm
            result = comparison.arms[name]
            record = {"runs": [run_numbers(run) for run in result.runs], "minutes": round(result.seconds / 60, 1),
                      "steps": [run["steps"] for run in result.runs]}
            if arm != "none":
                batch = batches[arm][-1]
                miners[arm] = result.checkpoint  # its first training seed's model mines the next round
                record.update(batch_stop_share=batch["stop_share"], pool_stop_share=batch["pool_stop_share"],
                              batch=batch["files"], reasons=batch["reasons"][:5])
            part["arms"].setdefault(arm, {})[f"round_{round_no}"] = record
        part["arms"].setdefault("seed", {})["round_0"] = {"runs": [run_numbers(comparison.arms["before"].scored)]}
        print(f"{setting} split {split_seed} round {round_no}: " + ", ".join(
            f"{arm} stop AP50 {statistics.fmean(r['stop_ap50'] for r in part['arms'][arm][f'round_{round_no}']['runs']):.3f}"
            for arm in [*arms, "none"]), flush=True)
        part.update(rounds_done=round_no, minutes=round((time.monotonic() - started) / 60, 1),
                    machine={"cpus": os.cpu_count(), "platform": platform.platform()})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(part, indent=1, default=str) + "\n")
    return part


def _seed_model(data: Path, sets: dict, steps: int) -> dict:
    """The `mobilenet` preset trained on train to its plateau on val (once per split: a second part reuses it)."""
    from detectors.checkpoint import load_checkpoint
    from detectors.config import TrainConfig
    from detectors.pipeline import train_detector

    path = data / f"seed-mobilenet-{steps}.pt"
    if not path.is_file():
        checkpoint, result, metrics = train_detector(sets["train"], sets["val"], path,
                                                     TrainConfig(steps=steps, patience=3, check_every=50),
                                                     preset="mobilenet")
        (data / f"seed-mobilenet-{steps}.json").write_text(json.dumps(
            {"steps": result.steps, "seconds": round(result.seconds, 1), "plateau": result.holdout,
             "val_bbox_map": metrics["val"]["bbox"]["mAP"],
             "val_per_class_AP": metrics["val"]["bbox"]["per_class_AP"]}, indent=1))
    checkpoint = load_checkpoint(path)
    return {"checkpoint": str(path), "version": checkpoint.version,
            **json.loads((data / f"seed-mobilenet-{steps}.json").read_text())}


def _mine(arm: str, round_no: int, checkpoint_path: str, sets: dict, data: Path, earlier: list, budget: int,
          home: Path) -> dict:
    """One arm's batch this round: its model detects the pool and val in its own database, the images labelled in
    earlier rounds leave the pool, its strategy selects `budget` images, and the pool's ground truth labels them."""
    from detectors.checkpoint import load_checkpoint
    from fdb import images as image_store
    from jobs.context import connection
    from jobs.detect import detect_images, detect_labelled_set
    from mining.config import MiningConfig
    from dataengine.config import store_config
    from mining.selection import pool_index_upkeep, select_hard_cases

    store = replace(store_config(), db_name=f"real-{data.name}-{arm}")
    fdb = connection(store)
    checkpoint = load_checkpoint(checkpoint_path)
    pool = sets["pool"]
    uri_of = {str(pool.image_path(i).resolve()): i for i in pool.images}
    detect_images(fdb, checkpoint, list(uri_of), split="pool", progress=False)
    detect_labelled_set(fdb, checkpoint, sets["val"])
    labelled = {uri for batch in earlier for uri in batch["uris"]}
    # The database's labelled marks are this part's batches and nothing else: a part killed after it marked a
    # round's batch must not hand that exclusion to its re-run (a first attempt did: benchmarks/results/real/*'s
    # caveat).
    fdb.images.update_many({"split": "train", "uri": {"$in": list(uri_of), "$nin": sorted(labelled)}},
                           {"$set": {"split": "pool", "labelled": False}})
    image_store.mark_labelled(fdb, sorted(labelled), split="train")
    config = MiningConfig(budget=budget, random_arm=False, seed=round_no, **ARMS[arm])
    out_dir = home / "mining" / data.name / arm
    pool_index_upkeep(fdb, checkpoint.version, config, out_dir / "indexes")  # the step before mining
    result = select_hard_cases(fdb, checkpoint.version, sets["val"], config, out_dir=out_dir)
    chosen = [img.uri for img in result.selection.images]
    ids = [uri_of[uri] for uri in chosen]
    eligible = [i for uri, i in uri_of.items() if uri not in labelled]
    images = [pool.images[i] for i in ids]
    labels = [a for i in ids for a in pool.annotations_by_image[i]]
    return {"uris": chosen, "files": [im["file_name"] for im in images], "images": images, "labels": labels,
            "stop_share": _stop_share(pool, ids), "pool_stop_share": _stop_share(pool, eligible),
            "reasons": [img.reason for img in result.selection.images]}


def _fine_tune_arms(seed_checkpoint: str, sets: dict, batches: dict, recipe, work: Path):
    """Every arm (and the no-new-data control) fine-tuned from the seed on train plus all its batches so far."""
    from jobs.experiment import run_experiment
    from mining.compare import combine_batches

    cumulative = {arm: combine_batches([(b["images"], b["labels"]) for b in arm_batches])
                  for arm, arm_batches in batches.items()}
    return run_experiment(seed_checkpoint, sets["train"], cumulative, sets["val"], [], work, recipe,
                          progress=False, test=sets["test"], stop_set=sets["holdout"])


def _stop_share(coco, ids: list[int]) -> float:
    stop = next(c["id"] for c in coco.categories if c["name"] == TARGET)
    holding = sum(any(a["category_id"] == stop for a in coco.annotations_by_image[i]) for i in ids)
    return holding / len(ids) if ids else 0.0


def run_numbers(run: dict) -> dict:
    """A run's metrics on the test split (`jobs.experiment.Scores.as_run`) as the benchmark names them."""
    per_class = run.get("bbox_per_class", {})
    point = run["operating_point"]["superset"]
    return {"stop_ap50": per_class["AP50"][TARGET], "stop_ap": per_class["AP"][TARGET],
            "test_bbox_map": run["mAP"]["superset"]["bbox"], "test_ap50": per_class["mAP50"],
            "fp_per_image": point["all"]["fp_per_image"], "stop_recall": point["per_class"][TARGET]["recall"],
            "per_class_ap50": per_class["AP50"], "seed": run.get("seed")}


# ---------------------------------------------------------------------------------------------------- the merge
def merge(parts: list[dict]) -> dict:
    """Every part's runs pooled per setting, arm, round and metric, and each arm against random."""
    summary: dict = {}
    pool_share: dict = {}
    for part in parts:
        setting = part["setting"]
        pool_share.setdefault(setting, []).append(part["pool_stop_share"])
        for arm, rounds in part["arms"].items():
            for round_name, record in rounds.items():
                cell = summary.setdefault(setting, {}).setdefault(arm, {}).setdefault(round_name, {})
                for metric in METRICS:
                    cell.setdefault(metric, []).extend(run[metric] for run in record["runs"])
                if "batch_stop_share" in record:
                    cell.setdefault("batch_stop_share", []).append(record["batch_stop_share"])
    against: dict = {}
    for setting, arms in summary.items():  # every difference from the runs first, then the runs summarised
        for arm, rounds in arms.items():
            for round_name, cell in rounds.items():
                base = arms.get("random", {}).get(round_name) or arms.get("seed", {}).get("round_0")
                if arm != "random" and base and round_name != "round_0":
                    against.setdefault(setting, {}).setdefault(arm, {})[round_name] = {
                        metric: difference(cell[metric], base[metric]) for metric in METRICS}
    for arms in summary.values():
        for rounds in arms.values():
            for cell in rounds.values():
                for metric, values in cell.items():
                    cell[metric] = stats(values)
    return {"summary": summary, "against_random": against,
            "pool_stop_share": {s: statistics.fmean(v) for s, v in pool_share.items()},
            "parts": [{k: part[k] for k in ("setting", "split_seed", "train_seeds", "minutes", "seed_model",
                                            "machine", "recipe", "budget")} | {"arms": sorted(part["arms"])}
                      | {"rounds_done": part.get("rounds_done", part.get("rounds")), "caveat": part.get("caveat")}
                      for part in parts]}


def stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "runs": len(values)}


def difference(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) and its minimum detectable difference (2 sd of the difference; None below two runs)."""
    sd = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5 \
        if len(a) > 1 and len(b) > 1 else None
    return {"difference": statistics.fmean(a) - statistics.fmean(b),
            "min_detectable_difference": 2 * sd if sd is not None else None}


def plot(merged: dict, out: Path) -> None:
    """Learning curves: each arm's stop AP50 and superset bbox mAP by round, per setting (mean +- sd)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = sorted(merged["summary"])
    fig, axes = plt.subplots(len(settings), 2, figsize=(11, 4 * len(settings)), squeeze=False)
    for row, setting in enumerate(settings):
        arms = merged["summary"][setting]
        for col, (metric, title) in enumerate((("stop_ap50", "stop AP50"), ("test_bbox_map", "superset bbox mAP"))):
            ax = axes[row][col]
            seed = arms.get("seed", {}).get("round_0", {}).get(metric)
            for arm, rounds in sorted(arms.items()):
                if arm == "seed":
                    continue
                xs = [0] + [int(r.split("_")[1]) for r in sorted(rounds)]
                ys = [seed["mean"] if seed else float("nan")] + [rounds[r][metric]["mean"] for r in sorted(rounds)]
                sds = [0.0] + [rounds[r][metric]["sd"] or 0.0 for r in sorted(rounds)]
                ax.errorbar(xs, ys, yerr=sds, marker="o", capsize=3, label=arm)
            ax.set_title(f"{setting}: {title} on the test split")
            ax.set_xlabel("round (40 labelled images each)")
            ax.set_xticks(range(0, 1 + max(len(r) for a, r in arms.items() if a != "seed")))
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(STARVE), default="starved")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--train-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--seed-steps", type=int, default=600, help="the seed's most steps (patience on val)")
    parser.add_argument("--finetune-steps", type=int, default=200, help="each arm's most steps (patience on holdout)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--home", default=None, help="data home of the part (default: a folder under /tmp)")
    parser.add_argument("--merge", action="store_true", help="merge the parts into results/real.json and real.png")
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in sorted(PARTS.glob("*.json"))]
        merged = merge(parts)
        (RESULTS / "real.json").write_text(json.dumps(merged, indent=1) + "\n")
        plot(merged, RESULTS / "real.png")
        print(f"merged {len(parts)} parts into {RESULTS / 'real.json'}")
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    home = Path(args.home or f"/tmp/real-bench-{args.setting}-{args.split_seed}")
    name = f"{args.setting}-split{args.split_seed}-{'-'.join(args.arms)}-seeds{''.join(map(str, args.train_seeds))}"
    part = run_part(args.setting, args.split_seed, args.arms, args.train_seeds, args.rounds, args.budget, home,
                    args.seed_steps, args.finetune_steps, args.workers, PARTS / f"{name}.json")
    print(f"part written: {PARTS / name}.json ({part['minutes']} min)")


if __name__ == "__main__":
    main()
