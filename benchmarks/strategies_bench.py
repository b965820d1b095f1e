"""Which selection strategy should be the product's default? Every strategy, plus random and a no-new-data engine,
for several rounds of the loop, on worlds with a common and a rare tail, scene draws apart: learning curves of
labelled images against the test split's superset mAP, tail mAP and tail false positives per image.

    .venv/bin/python benchmarks/strategies_bench.py --hard-share 0.05 --draw 0     # one part (one loop run)
    .venv/bin/python benchmarks/strategies_bench.py --hard-share 0.3 --draw 1
    .venv/bin/python benchmarks/strategies_bench.py --merge                        # parts -> strategies.json + png
    .venv/bin/python benchmarks/strategies_bench.py --smoke                        # a tiny part, to try the path
    .venv/bin/python benchmarks/strategies_bench.py --hard-share 0.05 --draw 0 --engines errors-cost  # add one
    .venv/bin/python benchmarks/strategies_bench.py --hard-share 0.05 --draw 0 --ceiling  # the seed's error ceiling

A part runs `flows/loop.py` once for one (hard share, scene draw) with every engine side by side, each in its own
database, from the same seed model (the demo's: mobilenet, early-stopped on val), fine-tuning with the demo's recipe
and training seeds 0 and 1 (the gate serves the seed best on val); the numbers are the served model's on the test
split, which fed nothing (its tail part drawn apart, `dataengine synth --test-tail`). Parts are kept in
`results/strategies/` and can run in separate sessions; the merge pools the draws: for each hard share, strategy,
round and metric, the mean and sd over the draws.

Schema: summary["<hard_share>"]["<strategy>"]["round_<r>"]["<metric>"] = {"mean", "sd", "runs"} with the metrics
test_bbox_map, tail_bbox_map, tail_fp_per_image, labelled_images and tail_error_ceiling (the served model, sd over
draws; the ceiling from the parts that record it) and, from the parts that record them, candidate_test_bbox_map,
candidate_tail_bbox_map and candidate_tail_fp_per_image: each round's candidate, promoted or not, every training
seed of every draw pooled (rounds >= 1). Beside it,
against_random["<hard_share>"]["<strategy>"]["round_<r>"]["<metric>"] = {"difference", "sd",
"min_detectable_difference", "per_draw"}: each strategy's served model less random's, paired by draw. And
seed_error_ceiling["<hard_share>"] = {"per_draw": {"<draw>": {"tail", "superset", "seed_tail_bbox_map", ...}},
"tail_mean", "tail_max", "tail_target", "ceiling_below_target"}, from the `--ceiling` parts: what fixing every error
the seed model makes on the test split would gain in bbox mAP (`mining.model_errors.ErrorCost`). A strategy gains
on the tail by fixing the seed's errors there, so when the ceiling is below the tail target, beating random by the
target takes more than fixing every tail error: random losing the rest, or better-fitting boxes at the strict IoU
thresholds, which no error type holds and which no strategy aims at.
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

RESULTS = Path(__file__).resolve().parent / "results"
# "errors" mines with the loop's false positives, as the demo does; "errors-cost" with every error type, the budget
# split by the mAP each type costs (`flows.loop.VARIANTS`).
ENGINES = ["errors", "errors-cost", "uncertainty", "diversity", "hybrid", "random", "none"]
METRICS = ("test_bbox_map", "tail_bbox_map", "tail_fp_per_image", "labelled_images", "tail_error_ceiling")
# tail_error_ceiling: what the served model would gain on the test tail if every error there were fixed (each false
# positive deleted, each missed object found, at once: `mining.model_errors.ErrorCost`), from parts run on 2026-12-06:
# the most any batch could buy on the tail by fixing errors, beside the gain the tail target asks of it.
# The candidate of each round on the test split, one value per training seed, whether or not the gate promoted it:
# the served model's curve (METRICS) moves only on promotion and follows one seed, so the gate's luck on val rides
# on it; the candidates' curves say what the labelled data is worth, with an sd over seeds within each draw.
CANDIDATE = {"candidate_test_bbox_map": "bbox_superset", "candidate_tail_bbox_map": "bbox_tail",
             "candidate_tail_fp_per_image": "fp_per_image_tail"}
# The demo's world and recipe, with a pool large enough for three rounds of its budget.
SIZES = dict(train=150, val=100, pool=400, test=240, test_tail=80, seed_steps=150, budget=40, k=20, width=320,
             height=240, train_districts=(0, 1, 2, 3), preset="mobilenet", seed_patience=2, seed_check_every=50)
# The tail target (issue 26): after round 3 at hard share 0.05 the default beats random by this much tail bbox mAP.
TAIL_TARGET = 0.03
SMOKE = dict(train=16, val=10, pool=30, test=12, test_tail=4, seed_steps=4, budget=4, k=3, width=128, height=96,
             train_districts=(0, 1, 2, 3), preset="small")


def part_path(hard_share: float, draw: int) -> Path:
    return RESULTS / "strategies" / f"share-{hard_share:g}-draw-{draw}.json"


def ceiling_path(hard_share: float, draw: int) -> Path:
    return RESULTS / "strategies" / f"ceiling-share-{hard_share:g}-draw-{draw}.json"


def curves(loop_result: dict, train_images: int) -> dict:
    """engine -> one row per round (0 = the seed): the served model's test numbers and the images labelled so far."""
    out = {}
    for engine, rounds in loop_result["engines"].items():
        labelled, rows = train_images, []
        for record in rounds:
            labelled += record.get("batch_images", 0)
            test = record.get("test") or {}
            row = {"round": record["round"], "labelled_images": labelled, "promoted": record["promoted"],
                   "test_bbox_map": test.get("bbox_superset"), "tail_bbox_map": test.get("bbox_tail"),
                   "tail_fp_per_image": test.get("fp_per_image_tail"),
                   "tail_error_ceiling": test.get("error_ceiling_tail")}
            candidate = record.get("candidate_test")
            if candidate:  # every training seed of this round's candidate, promoted or not (parts from 2026-12-05 on)
                row["candidate_runs"] = {metric: candidate[key]["runs"] for metric, key in CANDIDATE.items()}
            rows.append(row)
        out[engine] = rows
    return out


def _draw(hard_share: float, draw: int, home: str, smoke: bool) -> dict:
    """Point the project at a part's data home and return the sizes of its world: the bench's (or the smoke
    test's) at this hard share and scene draw."""
    os.environ["DATAENGINE_HOME"] = home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return {**(SMOKE if smoke else SIZES), "hard_share": hard_share, "data_seed": draw}


def _stamp(start: float) -> dict:
    """Where, when and how long a part ran."""
    return {"minutes": round((time.monotonic() - start) / 60, 1), "machine": platform.node(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d")}


def run_part(hard_share: float, draw: int, rounds: int, home: str, smoke: bool = False,
             engines: list[str] | None = None) -> Path:
    """One part; with `engines`, only those: added to the part already written for (hard share, draw) from the
    same data home (the same scenes and seed model, which the loop keeps there), or a new part holding only them."""
    sizes = _draw(hard_share, draw, home, smoke)
    from detectors.config import FinetuneConfig  # noqa: PLC0415 - after the environment is set
    from flows.demo import FULL  # noqa: PLC0415
    from flows.loop import loop  # noqa: PLC0415

    # The candidate's two training seeds side by side, as the demo's arms run (`jobs.parallel`).
    recipe = FinetuneConfig(steps=1 if smoke else FULL["arm_steps"], lr=FULL["lr"], seeds=(0, 1),
                            workers=FULL["workers"])
    out = part_path(hard_share, draw) if not smoke else Path(home) / "smoke.json"
    earlier = _part_to_add_to(out, engines) if engines and out.exists() else None
    start = time.monotonic()
    result = loop(rounds=rounds, engines=engines or ENGINES, sizes=sizes, recipe=recipe, progress=False)
    part = {"hard_share": hard_share, "draw": draw, "rounds": rounds, "sizes": sizes,
            "recipe": {"steps": recipe.steps, "lr": recipe.lr, "seeds": list(recipe.seeds), "workers": recipe.workers},
            **_stamp(start), "seed": _seed_version(result), "curves": curves(result, sizes["train"])}
    if earlier is not None:
        same = {"sizes": json.loads(json.dumps(part["sizes"])), "rounds": rounds, "recipe": part["recipe"],
                "seed": part["seed"]}
        differ = [k for k, v in same.items() if k in earlier and earlier[k] != v]
        if differ:
            raise SystemExit(f"{out} was run with another {', '.join(differ)}: run the whole part again")
        added = {"engines": engines, **{k: part[k] for k in ("minutes", "machine", "date")}}
        part = {**earlier, "curves": {**earlier["curves"], **part["curves"]},
                "added": earlier.get("added", []) + [added]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(part, indent=1, default=str))
    return out


def run_ceiling(hard_share: float, draw: int, home: str, smoke: bool = False) -> Path:
    """The seed model's error ceiling on one draw's test split: the draw's world and seed model as a part's loop
    makes them (reused from `home` where a part ran there; a fresh home trains the same seed, deterministically on
    one machine), scored once on the test split, and what fixing every error it makes there would gain, on the tail
    and on the superset, from TIDE's cost table (`mining.model_errors`)."""
    sizes = _draw(hard_share, draw, home, smoke)
    from dataclasses import replace  # noqa: PLC0415

    from dataengine.config import store_config  # noqa: PLC0415 - after the environment is set
    from detectors.checkpoint import load_checkpoint  # noqa: PLC0415
    from flows.loop import loop_root, loop_scenes, seed_path  # noqa: PLC0415
    from flows.scenes import train_seed_for  # noqa: PLC0415
    from jobs.experiment import score_model  # noqa: PLC0415
    from mining.config import MatchConfig  # noqa: PLC0415
    from mining.evaluation import report_subsets, tail_from_metadata  # noqa: PLC0415
    from records.coco import load_coco  # noqa: PLC0415

    start = time.monotonic()
    store = store_config()
    root = loop_root(store.home, sizes)
    scenes = loop_scenes(root, sizes)
    # Its own database: the seed is registered there, apart from every engine's registry.
    seed = train_seed_for(replace(store, db_name=f"{store.db_name}-ceiling"), scenes.data_dir,
                          str(seed_path(root, sizes)), sizes, progress=False)
    test = load_coco(scenes.test_json, scenes.images)
    scores = score_model(load_checkpoint(seed["path"]).model, test, report_subsets(test, tail_from_metadata(test)),
                         MatchConfig())
    priced = scores.cost_by_subset
    record = {"hard_share": hard_share, "draw": draw, "sizes": sizes, "seed": seed["version"],
              "seed_bbox_map": {subset: m["bbox"]["mAP"] for subset, m in scores.metrics.items()},
              "error_cost": {subset: p["cost"] for subset, p in priced.items()},
              "error_ceiling": {subset: p["ceiling"] for subset, p in priced.items()}, **_stamp(start)}
    out = ceiling_path(hard_share, draw) if not smoke else Path(home) / "ceiling-smoke.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str))
    return out


def merge_ceilings(ceilings: list[dict], target: float = TAIL_TARGET) -> dict:
    """hard share -> the seed's error ceiling per draw, on the tail and the superset, and whether the tail's is
    below the tail target on every draw."""
    out: dict = {}
    for c in sorted(ceilings, key=lambda c: (c["hard_share"], c["draw"])):
        share = out.setdefault(f"{c['hard_share']:g}", {"per_draw": {}})
        share["per_draw"][str(c["draw"])] = {
            "tail": c["error_ceiling"]["tail"], "superset": c["error_ceiling"]["superset"],
            "seed_tail_bbox_map": c["seed_bbox_map"]["tail"], "seed_test_bbox_map": c["seed_bbox_map"]["superset"],
            "tail_error_cost": c["error_cost"]["tail"]}
    for share in out.values():
        tails = [d["tail"] for d in share["per_draw"].values()]
        share.update(tail_mean=statistics.fmean(tails), tail_max=max(tails), tail_target=target,
                     ceiling_below_target=max(tails) < target)
    return out


def _part_to_add_to(out: Path, engines: list[str]) -> dict:
    """The part `--engines` adds to; refused when it already holds one of them (its database holds that run's models
    and labels, so a second run would start from where the first ended)."""
    earlier = json.loads(out.read_text())
    again = sorted(set(engines) & set(earlier["curves"]))
    if again:
        raise SystemExit(f"{out} already holds {again}")
    return earlier


def _seed_version(loop_result: dict) -> str | None:
    """The seed model every engine started from (round 0's production model)."""
    for rounds in loop_result["engines"].values():
        return rounds[0].get("production") if rounds else None
    return None


def merge(parts: list[dict], ceilings: list[dict] | None = None) -> dict:
    summary: dict = {}
    for share in sorted({p["hard_share"] for p in parts}):
        draws = [p for p in parts if p["hard_share"] == share]
        summary[f"{share:g}"] = {}
        for engine in ENGINES:
            per_round: dict = {}
            for part in draws:
                for row in part["curves"].get(engine, []):
                    for metric in METRICS:
                        if row.get(metric) is not None:
                            per_round.setdefault(row["round"], {}).setdefault(metric, []).append(row[metric])
                    for metric, values in row.get("candidate_runs", {}).items():  # pooled over draws x seeds
                        per_round.setdefault(row["round"], {}).setdefault(metric, []).extend(values)
            if not per_round:  # an engine no part of this share ran
                continue
            summary[f"{share:g}"][engine] = {
                f"round_{r}": {m: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else None,
                                   "runs": len(v)} for m, v in metrics.items()}
                for r, metrics in sorted(per_round.items())}
    return {"parts": [{k: p[k] for k in ("hard_share", "draw", "rounds", "minutes", "machine", "date")}
                      for p in parts], "summary": summary, "against_random": against_random(parts),
            **({"seed_error_ceiling": merge_ceilings(ceilings)} if ceilings else {})}


def against_random(parts: list[dict]) -> dict:
    """Each strategy's difference from random, paired by draw: a draw's world, seed model and test split are the
    same for every engine, so the draw-to-draw spread (one seed model from the next moves every engine together)
    is not noise of the difference. For each hard share, strategy, round and served-model metric: the mean of the
    draws' differences, its sd (sd of the differences / sqrt(draws); with two draws, one degree of freedom) and the
    minimum detectable difference, 2 x that sd, as the evaluation reports it (`mining.evaluation`)."""
    out: dict = {}
    for share in sorted({p["hard_share"] for p in parts}):
        draws = [p for p in parts if p["hard_share"] == share and "random" in p["curves"]]
        for engine in [e for e in ENGINES if e != "random"]:
            per_round: dict = {}
            for part in (p for p in draws if engine in p["curves"]):
                random_rows = {row["round"]: row for row in part["curves"]["random"]}
                for row in part["curves"][engine]:
                    base = random_rows.get(row["round"])
                    for metric in METRICS[:3]:
                        if base and row.get(metric) is not None and base.get(metric) is not None:
                            per_round.setdefault(row["round"], {}).setdefault(metric, []).append(
                                (part["draw"], row[metric] - base[metric]))
            for r, metrics in sorted(per_round.items()):
                for metric, pairs in metrics.items():
                    values = [d for _, d in pairs]
                    sd = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
                    out.setdefault(f"{share:g}", {}).setdefault(engine, {}).setdefault(f"round_{r}", {})[metric] = {
                        "difference": statistics.fmean(values), "sd": sd,
                        "min_detectable_difference": None if sd is None else 2 * sd,
                        "per_draw": {str(draw): d for draw, d in pairs}}
    return out


def plot(merged: dict, out: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    shares = list(merged["summary"])
    metrics = [*METRICS[:3], *(m for m in CANDIDATE if any(m in r for e in merged["summary"].values()
                                                            for rounds in e.values() for r in rounds.values()))]
    fig, axes = plt.subplots(len(shares), len(metrics), figsize=(4.4 * len(metrics), 3.6 * len(shares)),
                             squeeze=False)
    for row, share in zip(axes, shares):
        for ax, metric in zip(row, metrics):
            for engine, rounds in merged["summary"][share].items():
                points = [(v["labelled_images"]["mean"], v[metric]["mean"], v[metric]["sd"] or 0.0)
                          for v in rounds.values() if metric in v and "labelled_images" in v]
                if points:
                    x, y, e = zip(*points)
                    ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=engine,
                                color=f"C{ENGINES.index(engine)}")  # one colour per engine in every panel
            ceiling = merged.get("seed_error_ceiling", {}).get(share)
            if metric == "tail_bbox_map" and ceiling:  # how high fixing every tail error could take the seed
                reach = statistics.fmean(d["seed_tail_bbox_map"] + d["tail"] for d in ceiling["per_draw"].values())
                line = ax.axhline(reach, color="grey", linestyle="--", label="seed + every tail error fixed")
                ax.legend(handles=[line], fontsize=8)
            ax.set_title(f"hard share {share}: {metric.replace('_', ' ')}")
            ax.set_xlabel("labelled images")
        row[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hard-share", type=float, default=None, help="run one part: this share of hard scenes")
    parser.add_argument("--draw", type=int, default=0, help="the part's scene draw")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--home", default="/tmp/dataengine-strategies-bench", help="data home for the parts")
    parser.add_argument("--merge", action="store_true", help="merge results/strategies/*.json")
    parser.add_argument("--ceiling", action="store_true",
                        help="with --hard-share and --draw: only the seed model's error ceiling on the test split "
                             "(what fixing every error it makes there would gain), written beside the parts")
    parser.add_argument("--smoke", action="store_true", help="a tiny part under --home, to try the path")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=None,
                        help="run only these engines: added to the part already written (same --home), or a new part "
                             "that holds only them (--merge takes what each part has)")
    args = parser.parse_args()
    home = Path(args.home) / f"share-{args.hard_share:g}-draw-{args.draw}" if args.hard_share is not None else None
    if args.smoke:
        print(run_part(0.3, 0, 2, str(Path(args.home) / "smoke"), smoke=True))
    elif home and args.ceiling:
        print(run_ceiling(args.hard_share, args.draw, str(home)))
    elif home:
        print(run_part(args.hard_share, args.draw, args.rounds, str(home), engines=args.engines))
    elif args.merge:
        parts = [json.loads(p.read_text()) for p in sorted((RESULTS / "strategies").glob("share-*.json"))]
        ceilings = [json.loads(p.read_text()) for p in sorted((RESULTS / "strategies").glob("ceiling-*.json"))]
        merged = merge(parts, ceilings)
        (RESULTS / "strategies.json").write_text(json.dumps(merged, indent=1))
        plot(merged, RESULTS / "strategies.png")
        print(RESULTS / "strategies.json")
    else:
        parser.error("give --hard-share (one part), --merge or --smoke")


if __name__ == "__main__":
    main()
