"""The real-photographs benchmark (`benchmarks/real_bench.py` -> `results/real.json`)."""

from __future__ import annotations

from renderers import cell as _cell

REAL_METRICS = (("stop_ap50", "stop AP50"), ("stop_ap", "stop AP"), ("test_bbox_map", "bbox mAP"),
                ("test_ap50", "AP50"), ("fp_per_image", "FPs / image @ 0.5"), ("stop_recall", "stop recall @ 0.5"))


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


BLOCKS = {"real-summary": ("real.json", real_summary), "real-against-random": ("real.json", real_against_random)}
