"""Can the demo's evaluation tell the arms apart? Each arm's test-split metrics over training seeds and scene draws,
and the smallest difference the comparison can detect.

    .venv/bin/python benchmarks/evaluation_bench.py --draw 0          # one scene draw: one demo run (a part)
    .venv/bin/python benchmarks/evaluation_bench.py --draw 1
    .venv/bin/python benchmarks/evaluation_bench.py --merge           # the parts -> results/evaluation.json

A part runs `flows/demo.py` in the demo's setting (its FULL sizes, `--seeds` training seeds per arm, the draw's
scenes) in its own data home under --home, and keeps the demo's `comparison.json` evaluation summary in
`results/evaluation/draw-<n>.json`; parts can run in separate sessions. The merge pools the draws: each arm's
metric as mean and sd over every (draw, training seed) run; each difference of arms per draw
(`mining.evaluation.compare`: its sd is that of the difference of the seeds' means) and over the draws (the mean
of the draws' differences, its sd sqrt(sum of the draws' variances) / draws); `min_detectable_difference` is 2 x
that sd. The targets are the evaluation issue's: <= 0.01 bbox mAP on the superset, <= 0.02 on the tail. The
control arm's gain over the seed model is judged against the sd of one training run pooled over every fine-tuned
arm's seeds (the demo gives the control two seeds, whose own sd has one degree of freedom). Each draw's verdict on
mined against random (`mining.evaluation.verdict`: better, worse, no difference that matters, inconclusive) is
recomputed from its part, with whether every draw said the same. `minutes` is the part's wall time: the demo's,
when nothing else ran beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mining.evaluation import MARGINS, verdict  # noqa: E402 - after the repository is on the path

RESULTS = Path(__file__).resolve().parent / "results"
# The evaluation issue's targets for the minimum detectable difference are the verdict's margins for mAP: the
# evaluation must resolve the differences that matter.
TARGETS = {key: MARGINS[key] for key in ("superset_bbox_map", "tail_bbox_map")}
PAIRS = ("mined-random", "mined-control", "random-control")


def run_part(draw: int, seeds: tuple[int, ...], home: str, test: int | None) -> Path:
    os.environ["DATAENGINE_HOME"] = home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.demo import demo  # noqa: PLC0415 - after the environment is set

    sizes = {"data_seed": draw, "seeds": list(seeds), **({} if test is None else {"test": test})}
    start = time.monotonic()
    result = demo(quick=False, progress=False, sizes=sizes)
    saved = json.loads(Path(result["json"]).read_text())
    part = {"draw": draw, "seeds": list(seeds), "minutes": round((time.monotonic() - start) / 60, 1),
            "machine": platform.node(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
            "report": result["report"], "facts": saved["facts"], "evaluation": saved["evaluation"]}
    out = RESULTS / "evaluation" / f"draw-{draw}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(part, indent=1, default=str))
    return out


def merge(parts: list[dict]) -> dict:
    arms = sorted({a for p in parts for a in p["evaluation"]["arms"]})
    metrics = sorted({k for p in parts for a in p["evaluation"]["arms"].values() for k in a})
    pooled = {}
    for arm in arms:
        pooled[arm] = {}
        for key in metrics:
            runs = [v for p in parts for v in p["evaluation"]["arms"].get(arm, {}).get(key, {}).get("runs", [])]
            if runs:
                pooled[arm][key] = {"mean": statistics.fmean(runs),
                                    "sd": statistics.stdev(runs) if len(runs) > 1 else None, "runs": len(runs)}
    differences = {}
    for pair in PAIRS:
        differences[pair] = {}
        for key in metrics:
            per_draw = [p["evaluation"]["differences"].get(pair, {}).get(key) for p in parts]
            if not per_draw or None in per_draw:
                continue
            sds = [d["sd"] for d in per_draw]
            sd = None if None in sds else math.sqrt(sum(s * s for s in sds)) / len(sds)
            mean = statistics.fmean(d["difference"] for d in per_draw)
            differences[pair][key] = {
                "difference": mean, "sd": sd, "min_detectable_difference": None if sd is None else 2 * sd,
                "beyond_noise": None if sd is None else abs(mean) > 2 * sd,
                "per_draw": [{"draw": p["draw"], **d} for p, d in zip(parts, per_draw)]}
    mdd = {key: differences["mined-random"].get(key, {}).get("min_detectable_difference") for key in TARGETS}
    control = {p["draw"]: control_gain(p["evaluation"]) for p in parts}
    verdicts = {p["draw"]: _verdict(p["evaluation"]) for p in parts}
    return {"setting": {"draws": [p["draw"] for p in parts], "seeds": parts[0]["seeds"],
                        "facts": parts[0]["facts"], "minutes_per_draw": [p["minutes"] for p in parts],
                        "images": parts[0]["evaluation"]["images"],
                        "serving_threshold": parts[0]["evaluation"]["serving_threshold"],
                        "tail_source": parts[0]["evaluation"]["tail_source"]},
            "arms": pooled, "differences": differences, "control_gain": control,
            "min_detectable_difference": mdd,
            "targets": {k: {"target": t, "measured": mdd[k], "met": None if mdd[k] is None else mdd[k] <= t}
                        for k, t in TARGETS.items()},
            "verdict_per_draw": verdicts, "same_verdict_on_every_draw": _same_verdict(verdicts),
            "verdict_over_draws": {key: v["verdict"] for key, v in verdict(differences).items()}}


def control_gain(evaluation: dict) -> dict:
    """The control arm's gain over the seed model against the sd of a training run, pooled over every fine-tuned
    arm's seeds (`mining.evaluation.summarise`), recomputed from the part's runs so every part is judged alike."""
    from mining.evaluation import control_gain as judged  # noqa: PLC0415

    arms = evaluation["arms"]
    return {key: judged(arms["control"][key]["runs"], arms["before"][key]["runs"][0],
                        [a[key]["runs"] for name, a in arms.items() if name != "before" and key in a])
            for key in ("superset_bbox_map", "tail_bbox_map")
            if key in arms.get("control", {}) and key in arms.get("before", {})}


def _verdict(evaluation: dict) -> dict:
    """What one draw says about mined against random (`mining.evaluation.verdict`, recomputed from the part's
    differences so every part is judged alike): better, worse, no difference that matters or inconclusive."""
    return {key: v["verdict"] for key, v in verdict(evaluation["differences"]).items()}


def _same_verdict(per_draw: dict) -> dict:
    """Whether every draw gave the same word on each verdict metric."""
    keys = sorted({k for v in per_draw.values() for k in v})
    return {key: len({v.get(key) for v in per_draw.values()}) == 1 for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draw", type=int, default=None, help="run one part: the demo on this scene draw")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds per arm")
    parser.add_argument("--test", type=int, default=None, help="test images (default: the demo's)")
    parser.add_argument("--home", default="/tmp/dataengine-evaluation-bench", help="data home for the parts")
    parser.add_argument("--merge", action="store_true", help="merge results/evaluation/draw-*.json")
    args = parser.parse_args()
    if args.draw is not None:
        print(f"part written: {run_part(args.draw, tuple(args.seeds), f'{args.home}/draw-{args.draw}', args.test)}")
    if args.merge:
        parts = [json.loads(p.read_text()) for p in sorted((RESULTS / "evaluation").glob("draw-*.json"))]
        if not parts:
            sys.exit("no parts yet: run --draw N first")
        merged = merge(parts)
        (RESULTS / "evaluation.json").write_text(json.dumps(merged, indent=1, default=str))
        print(json.dumps({"min_detectable_difference": merged["min_detectable_difference"],
                          "targets": merged["targets"], "verdict_per_draw": merged["verdict_per_draw"],
                          "same_verdict_on_every_draw": merged["same_verdict_on_every_draw"],
                          "verdict_over_draws": merged["verdict_over_draws"]}, indent=1))


if __name__ == "__main__":
    main()
