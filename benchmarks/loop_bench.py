"""Several rounds of the loop for three engines side by side (errors, random, no new data), on two scene draws:
does the production model get better every round, and does mining beat a random batch of the same budget?

    .venv/bin/python benchmarks/loop_bench.py [--rounds 3] [--draws 0 1] [--out benchmarks/results/loop.json]

Each draw runs `flows/loop.py` (its own data home under --home, so nothing touches the user's); the numbers per
round and engine are the production model's on the fixed evaluation set, mean over the training seeds it was
measured with, then mean ± sd over the draws. Writes loop.json and loop.png beside it.
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


QUERIED_COST = "fp_background+fp_wrong_class"


def checks(per_draw: dict[int, dict]) -> dict:
    """The issue's per-round conditions, draw by draw: did the queried FP types fall in every round of the errors
    engine, and was any promoted model worse than the one it replaced?"""
    out = {"errors_queried_fps_fell_every_round": {}, "errors_queried_cost_fell_every_round": {},
           "promotions": 0, "promoted_worse_than_replaced": []}
    for draw, result in per_draw.items():
        for engine, rounds in result["engines"].items():
            for before, after in zip(rounds, rounds[1:]):
                if after["promoted"]:
                    out["promotions"] += 1
                    if after["bbox_superset"] < before["bbox_superset"]:
                        out["promoted_worse_than_replaced"].append(
                            {"draw": draw, "engine": engine, "round": after["round"],
                             "before": before["bbox_superset"], "after": after["bbox_superset"]})
        rounds = result["engines"].get("errors", [])
        fps = [sum(r["errors"].get(t, 0) for t in ("fp_background", "fp_wrong_class")) for r in rounds]
        cost = [r.get("error_cost", {}).get(QUERIED_COST) for r in rounds]
        out["errors_queried_fps_fell_every_round"][draw] = {
            "per_round": fps, "fell_every_round": all(b > a for a, b in zip(fps[1:], fps))}
        out["errors_queried_cost_fell_every_round"][draw] = {
            "per_round": cost, "fell_every_round": None if None in cost[1:] else
            all(b is None or b > a for a, b in zip(cost[1:], cost))}
    return out


def summarise(per_draw: dict[int, dict]) -> dict:
    """engine -> round -> metric -> (mean, sd) over draws."""
    engines = next(iter(per_draw.values()))["engines"]
    out = {}
    for engine in engines:
        rounds = len(engines[engine])
        out[engine] = []
        for r in range(rounds):
            rows = [d["engines"][engine][r] for d in per_draw.values()]
            entry = {"round": r}
            for key in ("bbox_superset", "bbox_query"):
                values = [row[key] for row in rows]
                entry[key] = [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]
            for t in ("fp_background", "fp_wrong_class"):
                values = [row["errors"].get(t, 0) for row in rows]
                entry[t] = [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]
            # What the queried types cost the served model in bbox mAP (the gate's third check).
            values = [row.get("error_cost", {}).get(QUERIED_COST, float("nan")) for row in rows]
            entry["queried_cost"] = [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]
            entry["seed_sd"] = max((statistics.stdev(row["bbox_superset_runs"]) if len(row["bbox_superset_runs"]) > 1
                                    else 0.0) for row in rows)
            entry["promoted"] = [row["promoted"] for row in rows]
            out[engine].append(entry)
    return out


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, key, label in zip(axes, ("bbox_superset", "bbox_query", "fp_background"),
                              ("bbox mAP, superset", "bbox mAP, query subset", "background FPs")):
        for engine, rounds in summary.items():
            xs = [e["round"] for e in rounds]
            ax.errorbar(xs, [e[key][0] for e in rounds], yerr=[e[key][1] for e in rounds], label=engine,
                        capsize=3, marker="o")
        ax.set_xlabel("round")
        ax.set_title(label)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=20, help="fine-tuning steps per retrain and training seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds per retrain")
    parser.add_argument("--home", default="/tmp/dataengine-loop-bench", help="data home for the benchmark")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loop.json")
    args = parser.parse_args()
    os.environ["DATAENGINE_HOME"] = args.home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from detectors.config import FinetuneConfig
    from flows.loop import LOOP, loop

    recipe = FinetuneConfig(steps=args.steps, seeds=tuple(args.seeds))
    per_draw, start = {}, time.monotonic()
    for draw in args.draws:
        per_draw[draw] = loop(rounds=args.rounds, sizes={"data_seed": draw}, recipe=recipe)
    summary = summarise(per_draw)
    result = {"machine": platform.node(), "minutes": round((time.monotonic() - start) / 60, 1),
              "sizes": {**LOOP, "data_seed": args.draws}, "recipe": per_draw[args.draws[0]]["recipe"],
              "rounds": args.rounds, "summary": summary, "per_draw": per_draw}
    final = {e: s[-1]["bbox_superset"] for e, s in summary.items()}
    if "errors" in final and "random" in final:
        gap = final["errors"][0] - final["random"][0]
        noise = max(s[-1]["seed_sd"] for s in summary.values())
        result["verdict"] = {"errors_minus_random_after_last_round": gap, "largest_seed_sd": noise,
                             "target_met": gap >= 0.02 and gap > 2 * noise, **checks(per_draw)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    plot(summary, args.out.with_suffix(".png"))
    for engine, rounds in summary.items():
        print(engine, " ".join(f"r{e['round']}: {e['bbox_superset'][0]:.3f}±{e['bbox_superset'][1]:.3f}"
                               f" (q {e['bbox_query'][0]:.3f}, bg {e['fp_background'][0]:.1f})" for e in rounds))
    print(json.dumps(result.get("verdict"), indent=1))


if __name__ == "__main__":
    main()
