"""Can the demo's evaluation tell the arms apart? (`benchmarks/evaluation_bench.py` -> `results/evaluation.json`,
its parts in `results/evaluation/draw-<n>.json`)."""

from __future__ import annotations

from mining.evaluation import MARGINS, VERDICT_WORDS
from mining.report import ROW_NAMES
from renderers import cell, table

ARMS = (("before", "seed model"), ("mined", "mined"), ("random", "random"), ("control", "control"))
PER_DRAW = ("superset_bbox_map", "tail_bbox_map", "tail_fp_per_image")


def _difference(d: dict, digits: int = 3) -> str:
    """A difference ± its minimum detectable difference, in bold when beyond it."""
    mdd = d.get("min_detectable_difference")
    text = f"{d['difference']:+.{digits}f}" + ("" if mdd is None else f" ± {mdd:.{digits}f}")
    return f"**{text}**" if mdd is not None and abs(d["difference"]) > mdd else text


def evaluation_setting(ev: dict) -> str:
    s = ev["setting"]
    minutes = ", ".join(f"draw {d}: {m:g}" for d, m in zip(s["draws"], s["minutes_per_draw"]))
    facts = s["facts"]
    return (f"- Scene draws: {', '.join(map(str, s['draws']))}; training seeds {', '.join(map(str, s['seeds']))} "
            f"per arm ({facts['training seeds of the control arm']} for the control).\n"
            f"- Test split: {s['images']['superset']} images, {s['images']['tail']} in the tail "
            f"({s['tail_source']}), {s['images']['rest']} in the rest; serving threshold "
            f"{s['serving_threshold']:g}.\n"
            f"- Each draw's part is one `dataengine demo` run, wall time in minutes on two cores: {minutes}.\n")


def evaluation_arms(ev: dict) -> str:
    """Each arm's metric, mean ± sd over every (draw, training seed) run."""
    arms = ev["arms"]
    rows = [[ROW_NAMES[key]] + [cell(arms[arm].get(key)) for arm, _ in ARMS] for key in ROW_NAMES]
    runs = ", ".join(f"{title} {arms[arm]['superset_bbox_map']['runs']}" for arm, title in ARMS if arm in arms)
    return table([""] + [title for _, title in ARMS], rows) + f"\nRuns pooled: {runs}.\n"


def evaluation_per_draw(parts: dict) -> str:
    """Each draw's arms on the verdict's metrics (mean ± sd over training seeds; the seed model is one run)."""
    rows = []
    for _, part in sorted(parts.items()):
        arms = part["evaluation"]["arms"]
        for key in PER_DRAW:
            cells = []
            for arm, _ in ARMS:
                stat = arms.get(arm, {}).get(key)
                single = stat and len(stat["runs"]) < 2
                cells.append(cell({"mean": stat["mean"], "sd": None if single else stat["sd"]}) if stat else "–")
            rows.append([part["draw"], ROW_NAMES[key]] + cells)
    return table(["draw", "metric"] + [title for _, title in ARMS], rows, "rl" + "r" * len(ARMS))


def evaluation_mined_random(ev: dict) -> str:
    """Mined − random per draw and pooled over the draws, ± the minimum detectable difference (2 sd)."""
    pair = ev["differences"]["mined-random"]
    draws = ev["setting"]["draws"]
    rows = []
    for key in ROW_NAMES:
        if key not in pair:
            continue
        d = pair[key]
        by_draw = {p["draw"]: p for p in d["per_draw"]}
        rows.append([ROW_NAMES[key]] + [_difference(by_draw[n]) if n in by_draw else "–" for n in draws]
                    + [_difference(d)])
    return (table(["mined − random"] + [f"draw {n}" for n in draws] + ["pooled"], rows)
            + "\nBold: beyond its minimum detectable difference. Pooled: the mean of the draws' differences, its "
              "sd sqrt(sum of the draws' variances) / draws.\n")


def evaluation_verdict(ev: dict) -> str:
    """The verdict's word on each draw and over the draws, and whether every draw said the same."""
    draws = sorted(ev["verdict_per_draw"], key=int)
    rows = [[ROW_NAMES[key], f"{MARGINS[key]:g}"]
            + [VERDICT_WORDS.get(ev["verdict_per_draw"][n].get(key), "–") for n in draws]
            + [VERDICT_WORDS.get(word, "–"), "yes" if ev["same_verdict_on_every_draw"].get(key) else "no"]
            for key, word in ev["verdict_over_draws"].items()]
    return table(["mined against random", "margin"] + [f"draw {n}" for n in draws]
                 + ["over the draws", "same word on every draw"], rows, "lr" + "l" * (len(draws) + 2))


def evaluation_targets(ev: dict) -> str:
    rows = [[ROW_NAMES[key], f"{t['target']:g}", f"{t['measured']:.4f}", "yes" if t["met"] else "no"]
            for key, t in ev["targets"].items()]
    return table(["minimum detectable difference, mined − random", "target", "measured (pooled)", "met"], rows)


def evaluation_control(ev: dict) -> str:
    """The control arm's gain over the seed model per draw, against 2 sd of one training run (pooled)."""
    rows = []
    for draw, gains in sorted(ev["control_gain"].items(), key=lambda kv: int(kv[0])):
        for key, g in gains.items():
            said = ("within: the seed model is at its plateau" if g["within_2_sd"] else
                    "beyond: the seed model had not plateaued" if g["gain"] > 0 else
                    "beyond, below the seed model: more training costs here")
            rows.append([draw, ROW_NAMES[key], f"{g['gain']:+.3f}", f"{g['sd']:.3f}", g["runs_pooled"], said])
    return table(["draw", "metric", "control − seed model", "sd of a training run", "runs pooled", "2 sd"], rows,
                 "rlrrrl")


BLOCKS = {"evaluation-setting": ("evaluation.json", evaluation_setting),
          "evaluation-arms": ("evaluation.json", evaluation_arms),
          "evaluation-per-draw": ("evaluation", evaluation_per_draw),
          "evaluation-mined-random": ("evaluation.json", evaluation_mined_random),
          "evaluation-verdict": ("evaluation.json", evaluation_verdict),
          "evaluation-targets": ("evaluation.json", evaluation_targets),
          "evaluation-control": ("evaluation.json", evaluation_control)}
