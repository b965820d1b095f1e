"""The real-photographs benchmark (`benchmarks/real_bench.py` -> `results/real.json`, its parts in `results/real/`,
and a first attempt kept in `results/real-attempts/`)."""

from __future__ import annotations

import re

from renderers import cell as _cell
from renderers import table

REAL_METRICS = (("stop_ap50", "stop AP50"), ("stop_ap", "stop AP"), ("test_bbox_map", "bbox mAP"),
                ("test_ap50", "AP50"), ("fp_per_image", "FPs / image @ 0.5"), ("stop_recall", "stop recall @ 0.5"))
TARGET = "stop"


def real_summary(real: dict) -> str:
    """Each setting, arm and round on the test split (mean ± sd over runs), the seed model as round 0."""
    lines = ["| setting | arm | round | runs | " + " | ".join(title for _, title in REAL_METRICS)
             + " | batch stop share |", "|---|---|---:|---:|" + "---:|" * (len(REAL_METRICS) + 1)]
    for setting, arms in sorted(real["summary"].items()):
        order = ["seed"] + sorted(a for a in arms if a != "seed")
        for arm in order:
            for round_name, cell in sorted(arms.get(arm, {}).items()):
                runs = cell[REAL_METRICS[0][0]]["runs"]
                share = _cell(cell.get("batch_stop_share"), 2)
                lines.append(f"| {setting} | {'seed model' if arm == 'seed' else arm} | {round_name.split('_')[1]} "
                             f"| {runs} | " + " | ".join(_cell(cell.get(m)) for m, _ in REAL_METRICS)
                             + f" | {share} |")
    pool = ", ".join(f"{s} {v:.2f}" for s, v in sorted(real["pool_stop_share"].items()))
    return "\n".join(lines) + f"\n\nThe pool's stop share (images holding a stop): {pool}.\n"


def real_against_random(real: dict) -> str:
    """Each arm less random, per round: the difference and its minimum detectable difference (2 sd)."""
    shown = (("stop_ap50", "stop AP50"), ("test_bbox_map", "bbox mAP"), ("fp_per_image", "FPs / image @ 0.5"))
    lines = ["| setting | arm − random | round | " + " | ".join(t for _, t in shown) + " |",
             "|---|---|---:|" + "---:|" * len(shown)]
    for setting, arms in sorted(real["against_random"].items()):
        for arm, rounds in sorted(arms.items()):
            for round_name, metrics in sorted(rounds.items()):
                cells = []
                for metric, _ in shown:
                    d = metrics[metric]
                    mdd = d["min_detectable_difference"]
                    cells.append(f"{d['difference']:+.3f}" + (f" ± {mdd:.3f}" if mdd is not None else ""))
                lines.append(f"| {setting} | {arm} | {round_name.split('_')[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- the prose
def _within(d: dict) -> str:
    """How a difference stands against its minimum detectable difference, in words."""
    mdd = d.get("min_detectable_difference")
    if mdd is None:
        return "no noise estimate (one run)"
    return "beyond" if abs(d["difference"]) > mdd else "within"


def real_headline(real: dict) -> str:
    """One sentence per setting and round: each arm's stop AP50 and each arm less random against its noise."""
    out = []
    for setting, arms in sorted(real["summary"].items()):
        rounds = sorted({r for arm, rs in arms.items() if arm != "seed" for r in rs})
        seed = arms.get("seed", {}).get("round_0", {}).get("stop_ap50")
        for round_name in rounds:
            values = ", ".join(f"`{arm}` {_cell(rs[round_name]['stop_ap50'])}" for arm, rs in sorted(arms.items())
                               if arm != "seed" and round_name in rs)
            diffs = "; ".join(
                f"`{arm}` − `random` {d['stop_ap50']['difference']:+.3f}"
                + (f" ± {d['stop_ap50']['min_detectable_difference']:.3f}"
                   if d["stop_ap50"]["min_detectable_difference"] is not None else "")
                + f", {_within(d['stop_ap50'])} its minimum detectable difference"
                for arm, rs in sorted(real["against_random"].get(setting, {}).items())
                for r, d in rs.items() if r == round_name)
            n = round_name.split("_")[1]
            out.append(f"- **{setting}, round {n}**: stop AP50 on the test split {values}"
                       + (f" (the seed model {seed['mean']:.3f})" if seed else "") + (f"; {diffs}" if diffs else "")
                       + ".")
    return "\n".join(out) + "\n"


def real_stop_recall(real: dict) -> str:
    """Stop recall at the serving threshold per arm, and what it says about where the stop AP50 moved."""
    out = []
    for setting, arms in sorted(real["summary"].items()):
        cells = [(arm, r, c["stop_recall"]) for arm, rounds in sorted(arms.items()) for r, c in sorted(rounds.items())
                 if c.get("stop_recall")]
        values = ", ".join(f"`{'seed model' if arm == 'seed' else arm}` round {r.split('_')[1]} {_cell(stat)}"
                           for arm, r, stat in cells)
        top = max((stat["mean"] for _, _, stat in cells), default=0.0)
        out.append(f"- **{setting}**: stop recall at the serving threshold: {values}."
                   + (" No model here ships a single test stop at that score: whatever stop AP50 an arm gained is "
                      "in how it ranks stops below the threshold, not yet on the map." if top == 0 else ""))
    return "\n".join(out) + "\n"


def _eligible(record: dict) -> int | None:
    """The pool's eligible images a random arm's reasons name ("random draw (seed 1) from 247 eligible ...")."""
    for reason in record.get("reasons", []):
        found = re.search(r"from (\d+) eligible", reason)
        if found:
            return int(found.group(1))
    return None


def real_world(parts: dict) -> str:
    """Each part's world: the split's sizes, what starving leaves, the pool, the seed model and the recipe."""
    out = []
    for part in parts.values():
        sizes = ", ".join(f"{name} {n}" for name, n in part["sizes"].items())
        starve = ", ".join(f"{n} images holding a {cls}" for cls, n in part.get("starve", {}).items())
        # Round 1's random draw counts the whole pool as eligible (nothing of it labelled yet).
        pool = _eligible(part["arms"].get("random", {}).get("round_1", {}))
        seed = part["seed_model"]
        plateau = seed.get("plateau") or {}
        recipe = part["recipe"]
        stop_ap = seed.get("val_per_class_AP", {}).get(TARGET)
        out.append(
            f"- **{part['setting']}, split seed {part['split_seed']}**: {sizes}, the pool the rest"
            + (f" ({pool} images)" if pool is not None else "")
            + (f"; the labelled splits (train, val and holdout together) keep {starve}" if starve else "")
            + f"; the pool's stop share {part['pool_stop_share']:.2f}.\n"
            f"  The seed model: `mobilenet`, its best val check at step {plateau.get('best_step', seed['steps'])} "
            f"of {seed['steps']} (val bbox mAP {seed['val_bbox_map']:.3f}"
            + (f", stop AP {stop_ap:.3f}" if stop_ap is not None else "") + ").\n"
            f"  Each round: {part['budget']} images per arm; each arm fine-tuned with training seeds "
            f"{', '.join(map(str, part['train_seeds']))}, lr {recipe['lr']:g}, at most {recipe['steps']} steps, a "
            f"holdout check every {recipe['check_every']} steps with patience {recipe['patience']}, the starting "
            f"weights {'counted' if recipe.get('check_start', True) else 'not counted'} as a check.\n"
            f"  Rounds done: {part.get('rounds_done')} of {part.get('rounds')}, in {part['minutes']} min on "
            f"{part['machine']['cpus']} CPU cores.")
    return "\n".join(out) + "\n"


def real_attempt(attempts: dict) -> str:
    """What the first attempt's runs did, with the seed's weights counted as the holdout's first check; and what its
    targeted batch held against random's and the pool."""
    out = []
    for part in attempts.values():
        recipe = part["recipe"]
        counted = recipe.get("check_start", True)
        seed = part["arms"]["seed"]["round_0"]["runs"][0]["stop_ap50"]
        runs = [(arm, rec) for arm, rounds in part["arms"].items() if arm != "seed" for rec in rounds.values()]
        scores = {round(r["stop_ap50"], 6) for _, rec in runs for r in rec["runs"]}
        steps = sorted({s for _, rec in runs for s in rec.get("steps", [])})
        n_runs = sum(len(rec["runs"]) for _, rec in runs)
        out.append(
            f"- **{part['setting']}, split seed {part['split_seed']}**, starting weights "
            f"{'counted' if counted else 'not counted'} as the first check (at most {recipe['steps']} steps, a check "
            f"every {recipe['check_every']}, patience {recipe['patience']}): every run stopped at step "
            f"{' or '.join(map(str, steps))}, and "
            + (f"all {n_runs} runs scored exactly the seed model's stop AP50, {seed:.3f}."
               if scores == {round(seed, 6)} else
               f"the {n_runs} runs scored stop AP50 {min(scores):.3f} to {max(scores):.3f} (the seed model "
               f"{seed:.3f})."))
        shares = {arm: rec["batch_stop_share"] for arm, rec in runs if rec.get("batch_stop_share") is not None}
        if "targeted" in shares:
            pool = part["pool_stop_share"]
            others = ", ".join(f"`{arm}` {share:.3f}" for arm, share in sorted(shares.items()) if arm != "targeted")
            out.append(f"- Its `targeted` batch: {shares['targeted']:.3f} of its images held a stop, "
                       f"{shares['targeted'] / pool:.1f} times the pool's {pool:.2f}"
                       + (f" ({others})" if others else "") + ".")
            reasons = next(rec["reasons"] for arm, rec in runs if arm == "targeted")
            out.append("- Why its first picks were taken (the selection's own reasons):\n"
                       + "\n".join(f"  - \"{reason}\"" for reason in reasons[:3]))
    return "\n".join(out) + "\n"


def real_caveats(real: dict) -> str:
    """Each part's caveat, as the part records it."""
    out = [f"- **{p['setting']}, split seed {p['split_seed']}**: {p['caveat']}" for p in real["parts"]
           if p.get("caveat")]
    return "\n".join(out or ["- No part records a caveat."]) + "\n"


def real_spread(parts: dict) -> str:
    """Each arm's stop AP50 from one training seed to the next, per part and round: the noise a difference meets."""
    rows = []
    for part in parts.values():
        for arm, rounds in sorted(part["arms"].items()):
            for round_name, rec in sorted(rounds.items()):
                values = [r["stop_ap50"] for r in rec["runs"]]
                if arm == "seed" or len(values) < 2:
                    continue
                seeds = ", ".join(str(r.get("seed")) for r in rec["runs"])
                rows.append([f"{part['setting']}, split seed {part['split_seed']}", arm, round_name.split("_")[1],
                             seeds, " / ".join(f"{v:.3f}" for v in values), f"{max(values) - min(values):.3f}"])
    return table(["part", "arm", "round", "training seeds", "stop AP50 per run", "range"], rows, "llrlrr")


def real_coverage(parts: dict) -> str:
    """What has been run against what the benchmark can run: settings, split seeds, training seeds, rounds, arms."""
    from real_bench import ARMS, STARVE  # the benchmark's own lists, so this page follows them

    ran_settings = sorted({p["setting"] for p in parts.values()})
    split_seeds = sorted({p["split_seed"] for p in parts.values()})
    train_seeds = sorted({s for p in parts.values() for s in p["train_seeds"]})
    arms = sorted({a for p in parts.values() for a in p["arms"] if a not in ("seed", "none")})
    done = [f"{p['setting']} split {p['split_seed']}: {p.get('rounds_done')} of {p.get('rounds')}"
            for p in parts.values()]
    missing_arms = [a for a in ARMS if a not in arms]
    missing_settings = [s for s in sorted(STARVE) if s not in ran_settings]
    lines = [f"- Parts run: {len(parts)}; settings {', '.join(ran_settings)}; split seeds "
             f"{', '.join(map(str, split_seeds))}; training seeds {', '.join(map(str, train_seeds))}.",
             f"- Rounds done: {'; '.join(done)}.",
             f"- Arms run (beside `none`): {', '.join(f'`{a}`' for a in arms)}.",
             "- Not run yet: "
             + "; ".join(x for x in [
                 f"the arms {', '.join(f'`{a}`' for a in missing_arms)}" if missing_arms else "",
                 f"the setting {', '.join(f'`{s}`' for s in missing_settings)}" if missing_settings else "",
                 f"any split seed but {', '.join(map(str, split_seeds))}" if split_seeds else ""] if x)
             + "."]
    return "\n".join(lines) + "\n"


BLOCKS = {
    "real-summary": ("real.json", real_summary),
    "real-against-random": ("real.json", real_against_random),
    "real-headline": ("real.json", real_headline),
    "real-caveats": ("real.json", real_caveats),
    "real-stop-recall": ("real.json", real_stop_recall),
    "real-world": ("real", real_world),
    "real-spread": ("real", real_spread),
    "real-coverage": ("real", real_coverage),
    "real-attempt": ("real-attempts", real_attempt),
}
