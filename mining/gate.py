"""The promotion gate: does a retrained candidate replace the production model?

A candidate is trained once per training seed; the seed that scores best on the superset is the one that would be
served. Three checks, all on the fixed evaluation set:
1. **Not worse on the superset beyond the noise.** The candidate's bbox mAP, mean over its training seeds, may
   trail production's by at most the seed-to-seed noise: twice the seeds' sd (with one seed there is no noise
   estimate, so it must not trail at all).
2. **The served model is not worse.** The model that would replace production scores at least production's bbox
   mAP, so no promotion ever serves a worse model.
3. **The errors the batches were mined for cost less.** What the queried false-positive types cost in bbox mAP
   (`mining.model_errors.ErrorCost`: the mAP an oracle would gain by deleting them; threshold-free), mean over seeds,
   is lower than production's; when production's is already below `COST_FLOOR` (nothing the evaluation set can
   still measure), the candidate's must stay below it. Misses have no detection to delete: when only misses were
   queried, their count must fall instead.

A pure function of the numbers, so the decision can be recomputed, tested and reported exactly as made.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from mining.model_errors import cost_key

# Half a point of mAP: below it the queried errors are rounding on an evaluation set of this project's sizes
# (a handful of low-ranked detections), so demanding a further fall would stall the loop on noise. Set a priori,
# not fitted to a benchmark.
COST_FLOOR = 0.005


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    production: dict  # {"version", "bbox_map", "errors": {type: n}, "error_cost": {type: mAP}}
    candidate: dict  # {"version", "bbox_map", "bbox_map_sd", "seeds", "served_seed", "served_bbox_map", "errors",
    #                   "error_cost"} (errors and costs: mean over seeds)
    queried_types: list[str]
    noise: float
    checks: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def served_run(candidate_runs: list[dict]) -> int:
    """Index of the training seed whose model would be served: the best on the superset (the first on ties)."""
    maps = [r["bbox_map"] for r in candidate_runs]
    return maps.index(max(maps))


def decide(production: dict, candidate_runs: list[dict], queried_types: list[str],
           candidate_version: str) -> GateDecision:
    """`production`: {"version", "bbox_map", "errors", "error_cost"}; `candidate_runs`: one {"bbox_map", "errors",
    "error_cost"} per training seed (`error_cost` keyed as `ErrorCost` returns it)."""
    maps = [r["bbox_map"] for r in candidate_runs]
    mean = statistics.fmean(maps)
    sd = statistics.stdev(maps) if len(maps) > 1 else 0.0
    noise = 2 * sd
    served = served_run(candidate_runs)
    errors = {t: statistics.fmean(r["errors"].get(t, 0) for r in candidate_runs)
              for t in sorted({t for r in candidate_runs for t in r["errors"]} | set(production["errors"]))}
    costs = {k: statistics.fmean(r.get("error_cost", {}).get(k, 0.0) for r in candidate_runs)
             for k in sorted({k for r in candidate_runs for k in r.get("error_cost", {})})}
    queried_before = sum(production["errors"].get(t, 0) for t in queried_types)
    queried_after = sum(errors.get(t, 0) for t in queried_types)

    not_worse = mean >= production["bbox_map"] - noise
    served_ok = maps[served] >= production["bbox_map"]
    key = cost_key(queried_types)
    reasons = [
        f"bbox mAP on the superset: candidate {mean:.4f} ± {sd:.4f} ({len(maps)} seeds) vs production "
        f"{production['bbox_map']:.4f}: {'not worse' if not_worse else 'worse'} beyond the noise ({noise:.4f})",
        f"the served model (seed #{served}) {maps[served]:.4f} vs production {production['bbox_map']:.4f}: "
        + ("not worse" if served_ok else "worse"),
    ]
    if key is not None:
        before, after = production.get("error_cost", {}).get(key, 0.0), costs.get(key, 0.0)
        if before < COST_FLOOR:
            lower = after < COST_FLOOR
            verdict = f"production's is below the floor {COST_FLOOR}; the candidate's " + (
                "stays below it" if lower else "rises above it")
        else:
            lower = after < before
            verdict = "lower" if lower else "not lower"
        reasons.append(f"bbox mAP lost to {key}: candidate {after:.4f} vs production {before:.4f}: {verdict} "
                       f"(at score >= the matching threshold: {queried_after:.1f} vs {queried_before:.0f} errors)")
    else:
        lower = queried_after < queried_before or queried_before == queried_after == 0
        reasons.append(f"{', '.join(queried_types)}: candidate {queried_after:.1f} vs production {queried_before:.0f}: "
                       + ("fewer" if queried_after < queried_before else "none before, none after" if lower
                          else "not fewer"))
    return GateDecision(not_worse and served_ok and lower, reasons, production,
                        {"version": candidate_version, "bbox_map": mean, "bbox_map_sd": sd, "seeds": len(maps),
                         "served_seed": served, "served_bbox_map": maps[served], "errors": errors,
                         "error_cost": costs}, list(queried_types), noise,
                        {"not_worse_on_superset": not_worse, "served_model_not_worse": served_ok,
                         "queried_errors_cost_less": lower})
