"""Several rounds of the loop, errors / random / no new data side by side (`benchmarks/loop_bench.py` ->
`results/loop.json`, `loop.png`)."""

from __future__ import annotations

from renderers import mean_sd, table

ENGINES = (("errors", "errors"), ("random", "random"), ("none", "no new data"))


def loop_setting(r: dict) -> str:
    s, recipe = r["sizes"], r["recipe"]
    draws = ", ".join(map(str, s["data_seed"]))
    return (f"- World: train {s['train']}, val {s['val']}, pool {s['pool']} images at {s['width']}x{s['height']}; "
            f"seed model {s['seed_steps']} steps; budget {s['budget']} images per round, k {s['k']}.\n"
            f"- Retraining: {recipe['steps']} steps at lr {recipe['lr']:g}, training seeds "
            f"{', '.join(map(str, recipe['seeds']))}, new images drawn {recipe['oversample']:g}x as often, hard "
            f"negatives {recipe['hard_negatives']:g} of the background quota.\n"
            f"- {r['rounds']} rounds on scene draws {draws}: {r['minutes']:g} minutes in all.\n")


def loop_rounds(r: dict) -> str:
    """The production model per engine and round on the fixed evaluation set: mean ± sd over the draws."""
    rows = []
    for engine, name in ENGINES:
        for e in r["summary"][engine]:
            promoted = sum(e["promoted"])
            rows.append([name, e["round"], mean_sd(e["bbox_superset"], 3), mean_sd(e["bbox_query"], 3),
                         mean_sd(e["fp_background"], 1), mean_sd(e["fp_wrong_class"], 1),
                         mean_sd(e["queried_cost"], 4),
                         "–" if e["round"] == 0 else f"{promoted} of {len(e['promoted'])}"])
    return table(["engine", "round", "bbox mAP, superset", "bbox mAP, query subset", "background FPs",
                  "wrong-class FPs", "mAP the queried FPs cost", "draws promoted"], rows, "lrrrrrrr")


def loop_verdict(r: dict) -> str:
    v = r["verdict"]
    worse = v["promoted_worse_than_replaced"]
    fell = "; ".join(f"draw {d}: {', '.join(map(str, x['per_round']))}"
                     for d, x in v["errors_queried_fps_fell_every_round"].items())
    return (f"- Errors engine − random engine after the last round, bbox mAP on the superset: "
            f"{v['errors_minus_random_after_last_round']:+.3f}, against a largest seed sd of "
            f"{v['largest_seed_sd']:.3f} (target: +0.02 and beyond 2 sd: "
            f"{'met' if v['target_met'] else 'not met'}).\n"
            f"- Promotions: {v['promotions']}; promoted models worse than the one they replaced: {len(worse)}.\n"
            f"- The errors engine's queried false positives (background + wrong class) per round, seed first: "
            f"{fell}.\n")


def loop_refusals(r: dict) -> str:
    """Each candidate the gate refused, with the check that refused it."""
    lines = []
    for draw, result in sorted(r["per_draw"].items()):
        for engine, name in ENGINES:
            for row in result["engines"][engine][1:]:
                if not row["promoted"]:
                    lines.append(f"- draw {draw}, {name}, round {row['round']}: " + "; ".join(row.get("gate", [])))
    return "\n".join(lines) + "\n"


BLOCKS = {"loop-setting": ("loop.json", loop_setting), "loop-rounds": ("loop.json", loop_rounds),
          "loop-verdict": ("loop.json", loop_verdict), "loop-refusals": ("loop.json", loop_refusals)}
