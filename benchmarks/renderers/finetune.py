"""Which fine-tuning recipe makes a mined batch count (`benchmarks/finetune_bench.py` -> `results/finetune.json`)."""

from __future__ import annotations

from renderers import mean_sd, table

ARMS = ("mined", "random", "control")


def _recipe(name: str, r: dict) -> str:
    rec = r["recipe"]
    text = f"{rec['steps']} steps, lr {rec['lr']:g}"
    if rec.get("holdout"):
        text += f", early stopping on {rec['holdout']:.0%} held out, checked every {rec['check_every']} steps"
    return f"`{name}` ({text})"


def finetune_recipes(f: dict) -> str:
    """Each recipe and arm: the change against each draw's seed model, mean ± sd over the draws."""
    rows = []
    for name, r in f["recipes"].items():
        for i, arm in enumerate(ARMS):
            s = r["summary"][arm]
            c = s["change"]
            changes = [mean_sd(c[key], digits, signed=True) for key, digits in
                       (("bbox_superset", 3), ("bbox_query", 3), ("fp_localisation", 1), ("fp_background", 1))]
            rows.append([_recipe(name, r) if i == 0 else "", arm, *changes,
                         ", ".join(map(str, s["below_seed_on_query_subset_beyond_noise"])) or "none",
                         ", ".join(map(str, s["localisation_errors_rose"])) or "none"])
    return table(["recipe", "arm", "superset bbox mAP", "query subset bbox mAP", "localisation FPs",
                  "background FPs", "draws below the seed on the query subset beyond 2 sd",
                  "draws where localisation FPs rose"], rows, "llrrrrll")


def finetune_per_draw(f: dict) -> str:
    """The chosen recipe draw by draw: the seed model, then each arm (mean ± sd over training seeds)."""
    name = f["chosen"]["recipe"]
    r = f["recipes"][name]
    rows = []
    for draw, d in sorted(r["per_draw"].items()):
        seed = d["seed_model"]
        rows.append([draw, "seed model", f"{seed['bbox_superset']:.3f}", f"{seed['bbox_query']:.3f}",
                     seed["errors"].get("fp_localisation", 0), seed["errors"].get("fp_background", 0)])
        for arm in ARMS:
            a = r["summary"][arm]["per_draw"][draw]
            rows.append([draw, arm] + [f"{a[k][0]:.3f} ± {a[k][1]:.3f}" for k in ("bbox_superset", "bbox_query")]
                        + [f"{a[k][0]:.1f} ± {a[k][1]:.1f}" for k in ("fp_localisation", "fp_background")])
    return (f"Recipe `{name}`, training seeds {', '.join(map(str, f['seeds']))}:\n\n"
            + table(["draw", "model", "superset bbox mAP", "query subset bbox mAP", "localisation FPs",
                     "background FPs"], rows, "llrrrr"))


def finetune_chosen(f: dict) -> str:
    """The recipe chosen, why, and what each recipe cost in minutes."""
    minutes = ", ".join(f"`{name}` {r['minutes']:.1f}" for name, r in f["recipes"].items())
    minutes += f" ({sum(r['minutes'] for r in f['recipes'].values()):.1f} in all)"
    notes = "".join(f"- `{name}`: {r['note']}\n" for name, r in f["recipes"].items() if r.get("note"))
    return (f"Chosen: `{f['chosen']['recipe']}`, {f['chosen']['why']}\n\n"
            f"{len(f['draws'])} scene draws x {len(f['seeds'])} training seeds; minutes per recipe: {minutes}.\n"
            + (f"\n{notes}" if notes else ""))


BLOCKS = {"finetune-recipes": ("finetune.json", finetune_recipes),
          "finetune-per-draw": ("finetune.json", finetune_per_draw),
          "finetune-chosen": ("finetune.json", finetune_chosen)}
