"""From scratch against ImageNet-pretrained at equal training minutes (`benchmarks/pretrained_bench.py` ->
`results/pretrained.json`)."""

from __future__ import annotations

from renderers import table

PRESET = {"small": "`small` (from scratch)", "mobilenet": "`mobilenet` (ImageNet backbone)"}


def _train_row(label: str, r: dict) -> list:
    return [label, PRESET.get(r["preset"], r["preset"]), f"{r['min_size']}-{r['max_size']}", r["steps"],
            f"{r['minutes']:.1f}", f"{r['bbox_mAP']:.3f}", f"{r['bbox_mAP50']:.3f}", f"{r['segm_mAP']:.3f}"]


TRAIN_HEADER = ["run", "preset", "px", "steps", "minutes", "bbox mAP", "bbox AP50", "segm mAP"]


def pretrained_pennfudan(p: dict) -> str:
    """PennFudanPed: both presets at equal minutes, and the pretrained one within the minutes asked."""
    pf = p["pennfudan"]
    eq, within = pf["equal_minutes"], pf["within_10_minutes"]
    rows = [_train_row(f"equal minutes ({eq['minutes_asked']} asked)", eq[name]) for name in ("small", "mobilenet")]
    rows += [_train_row(f"{within['minutes_asked']} minutes asked", within[name])
             for name in ("small", "mobilenet") if name in within]
    return (f"PennFudanPed, {pf['split']}, on val; {p['torch_threads']} torch threads, {p['date']}.\n\n"
            + table(TRAIN_HEADER, rows, "lllrrrrr")
            + f"\nEqual minutes: {eq['note']}. Target: {pf['target']}; "
            + ("met" if pf["target_met"] else "not met") + ".\n")


def pretrained_synthetic(p: dict) -> str:
    """The demo's synthetic scenes: both presets, and inference speed with feature taps."""
    syn = p["synthetic"]
    rows = [_train_row("synthetic scenes", syn[name]) + [f"{syn[name]['tapped_images_per_s']:.2f}"]
            for name in ("small", "mobilenet")]
    return (table(TRAIN_HEADER + ["tapped images / s"], rows, "lllrrrrrr") + f"\n{syn['note']}.\n")


def pretrained_retrieval(p: dict) -> str:
    """Retrieval with each preset's tapped vectors: the quick demo's mined batch."""
    rows = []
    for name, r in p["retrieval"].items():
        if name == "note":
            continue
        share = r["lookalike_share"]
        fp = r["seed_false_positive_share"]["mined"]

        def cell(s: dict) -> str:
            return f"{s['share']:.2f} ({s['hits']} of {s['images']})"

        rows.append([PRESET.get(name, name), r["queries"], cell(share["mined"]), cell(share["random"]),
                     cell(share["pool"]), cell(fp), f"{r['demo_minutes']:.1f}"])
    return (table(["seed model", "queries", "mined: look-alike share", "random: look-alike share",
                   "pool: look-alike share", "mined: seed false positive share", "demo minutes"], rows, "lrrrrrr")
            + f"\n{p['retrieval']['note']}.\n")


def pretrained_summary(p: dict) -> str:
    """The three findings as bullets, for the detectors page."""
    eq = p["pennfudan"]["equal_minutes"]
    within = p["pennfudan"]["within_10_minutes"]["mobilenet"]
    syn = p["synthetic"]
    ret = p["retrieval"]
    s, m = eq["small"], eq["mobilenet"]
    return (f"- **PennFudanPed at equal minutes** ({s['minutes']:.1f} and {m['minutes']:.1f}): from scratch bbox mAP "
            f"{s['bbox_mAP']:.3f}, segm {s['segm_mAP']:.3f}; `mobilenet` **bbox {m['bbox_mAP']:.3f}**, segm "
            f"{m['segm_mAP']:.3f}. In {within['minutes']:.1f} minutes `mobilenet` reached bbox {within['bbox_mAP']:.3f}.\n"
            f"- **The demo's synthetic scenes** ({syn['small']['minutes']:.1f} and {syn['mobilenet']['minutes']:.1f} "
            f"min): from scratch bbox {syn['small']['bbox_mAP']:.3f}, segm {syn['small']['segm_mAP']:.3f}; `mobilenet` "
            f"bbox {syn['mobilenet']['bbox_mAP']:.3f}, segm {syn['mobilenet']['segm_mAP']:.3f}. Tapped inference: "
            f"{syn['small']['tapped_images_per_s']:.1f} images/s from scratch, "
            f"{syn['mobilenet']['tapped_images_per_s']:.1f} with `mobilenet`.\n"
            f"- **Retrieval with the tapped vectors** (the quick demo, each preset as its seed): of the "
            f"{ret['small']['lookalike_share']['mined']['images']} mined images, "
            f"{ret['small']['lookalike_share']['mined']['share']:.0%} held a look-alike from scratch (random: "
            f"{ret['small']['lookalike_share']['random']['share']:.0%}), "
            f"**{ret['mobilenet']['lookalike_share']['mined']['share']:.0%}** from ImageNet; the seed made a false "
            f"positive on {ret['small']['seed_false_positive_share']['mined']['share']:.0%} and "
            f"{ret['mobilenet']['seed_false_positive_share']['mined']['share']:.0%} of them.\n")


BLOCKS = {"pretrained-pennfudan": ("pretrained.json", pretrained_pennfudan),
          "pretrained-synthetic": ("pretrained.json", pretrained_synthetic),
          "pretrained-retrieval": ("pretrained.json", pretrained_retrieval),
          "pretrained-summary": ("pretrained.json", pretrained_summary)}
