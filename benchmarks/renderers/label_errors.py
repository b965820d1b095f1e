"""Planted label errors found, and mining on noisy labels (`benchmarks/label_errors_bench.py` ->
`results/label_errors.json`)."""

from __future__ import annotations

from renderers import table

KINDS = ("deleted", "swapped", "shifted", "added")


def _preset(version: str) -> str:
    return version.split("-", 1)[0]


def label_errors_judge(le: dict) -> str:
    """Which model judged which labels, and how the errors were planted."""
    syn = le["synthetic"]
    planting = ", ".join(f"{kind} {rate:.0%}" for kind, rate in le["planting"].items())
    return (f"The judge is `{syn['model']}`, a `{_preset(syn['model'])}`-preset seed model trained on the demo's "
            f"scenes; it judges the {syn['labelled_set']}, {syn['boxes']} boxes, with {syn['predictions']} "
            f"predictions. Planted (share of the boxes): {planting}; planting seeds "
            f"{', '.join(map(str, syn['planting_seeds']))}; suspicion threshold {syn['threshold']}. "
            f"Measured {le['date']}.\n")


def label_errors_planted(le: dict) -> str:
    """Per planted kind, the suspects of the type that finds it, ranked by suspicion: recall within twice the
    planted count, precision within the planted count, and both at the default threshold, planting seed by seed."""
    syn = le["synthetic"]
    seeds = [str(s) for s in syn["planting_seeds"]]
    rows = []
    for kind in KINDS:
        runs = [syn["by_seed"][s]["by_kind"][kind] for s in seeds]
        planted = sorted({r["planted"] for r in runs})
        at = [r["at_threshold"] for r in runs]

        def span(values: list[float]) -> str:
            lo, hi = min(values), max(values)
            return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"

        rows.append([f"{'/'.join(map(str, planted))} {kind}", f"`{runs[0]['suspect_type']}`",
                     " / ".join(f"{r['top_2x']['recall']:.2f}" for r in runs),
                     " / ".join(f"{r['top_1x']['precision']:.2f}" for r in runs),
                     f"{span([a['recall'] for a in at])} / {span([a['precision'] for a in at])}"])
    return table(["planted", "found as", f"recall in the top 2 × planted (seeds {' / '.join(seeds)})",
                  f"precision in the top 1 × planted (seeds {' / '.join(seeds)})",
                  f"at the threshold {syn['threshold']}: recall / precision"], rows, "llrrr")


def label_errors_targets(le: dict) -> str:
    """The issue's targets per kind (the lowest value over the planting seeds)."""
    syn = le["synthetic"]
    lines = []
    for kind in KINDS:
        t = syn["targets"][kind]
        lines.append(f"- {kind}: lowest recall in the top 2 × planted {t['recall_top_2x_min']:.2f} "
                     f"({'met' if t['recall_met'] else 'not met'}); lowest precision there "
                     f"{t['precision_top_2x_min']:.2f}, in the top 1 × planted {t['precision_top_1x_min']:.2f} "
                     f"({'met' if t['precision_at_1x_met'] else 'not met'} at 1 ×).")
    return "\n".join(lines) + f"\n\nThe file's note: {syn['targets_note']}.\n"


def label_errors_clean(le: dict) -> str:
    """False alarms on the exact labels."""
    syn = le["synthetic"]
    counts = syn["on_clean_labels"]["label_errors_at_threshold"]
    by_type = ", ".join(f"{n} `{t}`" for t, n in counts.items())
    return (f"On the exact labels the same model raises {sum(counts.values())} suspects among {syn['boxes']} "
            f"boxes, every one a false alarm: {by_type}.\n")


def label_errors_other_sets(le: dict) -> str:
    """PennFudanPed and coco128: a real one-class set judged by a pretrained model, and a set judged by fold
    models too weak to judge."""
    pf, coco = le["pennfudan"], le["coco128"]
    found = ", ".join(f"{kind} {pf['by_kind'][kind]['top_2x']['recall']:.2f}"
                      for kind in KINDS if pf["by_kind"][kind]["planted"])
    swapped = coco["swapped"]
    found_swaps = round(swapped["top_2x"]["recall"] * swapped["planted"])
    spurious = coco["label_errors_at_threshold"]["possible_spurious"]
    return (f"- **PennFudanPed** (`{pf['preset']}`, {pf['steps']} steps, judging the {pf['labelled_set']}; "
            f"{pf['note']}): recall in the top 2 × planted {found}.\n"
            f"- **coco128** ({swapped['planted']} of {coco['labels']} labels swapped; {coco['folds']} fold models "
            f"of `{coco['preset']}`, {coco['steps_per_fold']} steps each): {found_swaps} of the swaps found, "
            f"{spurious} labels called spurious; the judge "
            + ("reports itself too weak, so mining leaves nothing out on its word" if coco["judge_too_weak"]
               else "does not report itself too weak")
            + f". For scale: {coco['for_scale']}.\n")


def label_errors_mining(le: dict) -> str:
    """Mining on clean and on noisy labels, with suspected label errors kept or left out."""
    m = le["mining"]
    rows = []
    for name, r in m.items():
        if not isinstance(r, dict) or "lookalike_share" not in r:
            continue
        left = ", ".join(f"{n} `{t}`" for t, n in r["left_out"].items()) or "none"
        rows.append([name, r["queries"], left, r["mined"], f"{r['lookalike_share']:.3f}"])
    s = m["summary"]
    deleted = sorted(set(m["deleted_labels"].values()))
    return (f"Query types {', '.join(f'`{t}`' for t in m['query_types'])}, k {m['k']}, budget {m['budget']}; "
            f"noisy labels: {'/'.join(map(str, deleted))} val labels deleted per planting seed.\n\n"
            + table(["labels, suspects", "queries", "left out", "mined", "look-alike share"], rows, "lrlrr")
            + f"\nLook-alike share: clean labels {s['clean, kept']:.2f} with nothing left out, "
              f"{s['clean, left out (the default)']:.2f} with the default; noisy labels "
              f"{s['noisy, kept (mean over seeds)']:.2f} with nothing left out, "
              f"**{s['noisy, left out (mean over seeds)']:.2f}** with the default (means over the planting seeds). "
              f"Target (noisy with the default not below clean with the default): "
            + ("met" if s["target_met"] else "not met") + ".\n")


BLOCKS = {"label-errors-judge": ("label_errors.json", label_errors_judge),
          "label-errors-planted": ("label_errors.json", label_errors_planted),
          "label-errors-targets": ("label_errors.json", label_errors_targets),
          "label-errors-clean": ("label_errors.json", label_errors_clean),
          "label-errors-other-sets": ("label_errors.json", label_errors_other_sets),
          "label-errors-mining": ("label_errors.json", label_errors_mining)}
