"""The promotion gate: does a retrained candidate replace the production model?

Two conditions, both on the fixed evaluation set:
1. **Not worse on the superset beyond the noise.** The candidate's bbox mAP (mean over its training seeds) may
   trail production's by at most the seed-to-seed noise: twice the candidate seeds' sd (with one seed there is no
   noise estimate, so it must not trail at all).
2. **Fewer errors of the kinds the batches were mined for** (high-score errors at the matching threshold, mean
   over seeds): the labels were bought to fix those. When production makes none, none may appear.

A pure function of the numbers, so the decision can be recomputed, tested and reported exactly as made.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    production: dict  # {"version", "bbox_map", "errors": {type: n}}
    candidate: dict  # {"version", "bbox_map", "bbox_map_sd", "seeds", "errors": {type: mean}}
    queried_types: list[str]
    noise: float
    checks: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def decide(production: dict, candidate_runs: list[dict], queried_types: list[str],
           candidate_version: str) -> GateDecision:
    """`production`: {"version", "bbox_map", "errors"}; `candidate_runs`: one {"bbox_map", "errors"} per training
    seed."""
    maps = [r["bbox_map"] for r in candidate_runs]
    mean = statistics.fmean(maps)
    sd = statistics.stdev(maps) if len(maps) > 1 else 0.0
    noise = 2 * sd
    errors = {t: statistics.fmean(r["errors"].get(t, 0) for r in candidate_runs)
              for t in sorted({t for r in candidate_runs for t in r["errors"]} | set(production["errors"]))}
    queried_before = sum(production["errors"].get(t, 0) for t in queried_types)
    queried_after = sum(errors.get(t, 0) for t in queried_types)

    not_worse = mean >= production["bbox_map"] - noise
    fewer = queried_after < queried_before or queried_before == queried_after == 0
    reasons = [
        f"bbox mAP on the superset: candidate {mean:.4f} ± {sd:.4f} ({len(maps)} seeds) vs production "
        f"{production['bbox_map']:.4f}: {'not worse' if not_worse else 'worse'} beyond the noise ({noise:.4f})",
        f"{', '.join(queried_types)} errors: candidate {queried_after:.1f} vs production {queried_before:.1f}: "
        + ("fewer" if queried_after < queried_before else "none before, none after" if fewer else "not fewer"),
    ]
    return GateDecision(not_worse and fewer, reasons, production,
                        {"version": candidate_version, "bbox_map": mean, "bbox_map_sd": sd, "seeds": len(maps),
                         "errors": errors}, list(queried_types), noise,
                        {"not_worse_on_superset": not_worse, "fewer_queried_errors": fewer})
