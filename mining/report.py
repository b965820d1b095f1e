"""The comparison report: Markdown and HTML (plots embedded), for a person to read after `retrain_and_compare`
or `demo`. Plain functions; flows publish the same tables as Prefect artifacts."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import matplotlib
from markdown_it import MarkdownIt

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mining.compare import Comparison, mean_sd  # noqa: E402
from mining.evaluation import SUMMARY_METRICS, VERDICT_WORDS, arm_values, summarise  # noqa: E402
from mining.model_errors import operating_point_cost  # noqa: E402
from records import ERROR_TYPES  # noqa: E402

ROW_NAMES = {"superset_bbox_map": "bbox mAP, superset", "tail_bbox_map": "bbox mAP, tail",
             "rest_bbox_map": "bbox mAP, rest", "superset_precision": "precision @ serving, superset",
             "superset_recall": "recall @ serving, superset", "superset_fp_per_image": "FPs per image @ serving, superset",
             "tail_precision": "precision @ serving, tail", "tail_recall": "recall @ serving, tail",
             "tail_fp_per_image": "FPs per image @ serving, tail"}


def _cell(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def map_markdown(comparison: Comparison) -> str:
    """mAP@[.5:.95] by arm and evaluation subset, bbox and segm: mean ± sd over training seeds."""
    subsets = list(comparison.subsets)
    lines = []
    for iou_type in ("bbox", "segm"):
        if not any(arm.maps(s, iou_type) for arm in comparison.arms.values() for s in subsets):
            continue
        lines += [f"**{iou_type} mAP@[.5:.95]**", "",
                  "| arm | extra images | seeds | " + " | ".join(f"{s} ({len(comparison.subsets[s])} img)" for s in subsets) + " |",
                  "|---|---:|---:|" + "---:|" * len(subsets)]
        for name, arm in comparison.arms.items():
            cells = [_cell(arm.maps(s, iou_type)) for s in subsets]
            lines.append(f"| {name} | {arm.extra_images} | {len(arm.runs) or '–'} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def errors_markdown(comparison: Comparison) -> str:
    """High-score errors by type on the superset, before and after (mean ± sd over training seeds)."""
    lines = ["| arm | " + " | ".join(ERROR_TYPES) + " |", "|---|" + "---:|" * len(ERROR_TYPES)]
    for name, arm in comparison.arms.items():
        lines.append(f"| {name} | " + " | ".join(_cell(arm.errors(t), 1) for t in ERROR_TYPES) + " |")
    return "\n".join(lines)


def verdict_markdown(comparison: Comparison, queried_types: list[str] | None = None) -> str:
    """Did the mined batch count? Mined against random and control, in numbers, with the seed spread beside them
    so that a difference inside the noise is called what it is."""
    arms = comparison.arms
    if not {"mined", "random", "control"} <= set(arms):
        return ""
    seeds = len(arms["mined"].runs)
    lines = []
    for subset in ("query subset", "superset"):
        if not arms["mined"].maps(subset):
            continue
        m, r, c = (mean_sd(arms[a].maps(subset)) for a in ("mined", "random", "control"))
        noise = max(m[1], r[1], c[1])
        # With a handful of seeds the sd is itself rough: call a difference real only beyond twice the largest.
        if seeds < 2:
            judged = "one training seed, so no noise estimate"
        else:
            judged = (f"largest seed sd {noise:.3f}; mined − random is "
                      f"{'beyond' if abs(m[0] - r[0]) > 2 * noise else 'within'} twice that")
        lines.append(f"- bbox mAP on the {subset}: mined {m[0]:.3f}, random {r[0]:.3f}, control {c[0]:.3f}; "
                     f"mined − random {m[0] - r[0]:+.3f}, mined − control {m[0] - c[0]:+.3f} ({judged}).")
    for error_type in queried_types or []:
        values = {a: mean_sd(arms[a].errors(error_type))[0] for a in ("before", "mined", "random", "control")}
        lines.append(f"- {error_type} errors on the superset: before {values['before']:.1f}, mined "
                     f"{values['mined']:.1f}, random {values['random']:.1f}, control {values['control']:.1f}.")
    return "\n".join(lines)


def test_verdict_markdown(comparison: Comparison) -> str:
    """The report's lead on a test split: each arm on the superset, the tail and the rest, at the operating point,
    mean ± sd over training seeds; then each difference against its minimum detectable difference (2 × the sd of
    the difference), and the control arm's gain over the seed model."""
    if comparison.evaluated_on != "test":
        return ""
    summary = summarise(comparison)
    arms = [a for a in ("before", "mined", "random", "control") if a in comparison.arms]
    arms += [a for a in comparison.arms if a not in arms]
    n = summary["images"]
    lines = verdict_lines(summary)
    lines += [f"Reported on the **test split**, which fed nothing (not the queries, the gate or early stopping): "
              f"{n.get('superset', 0)} images, of which {n.get('tail', 0)} in the tail ({comparison.tail_source}). "
              f"The serving threshold is {comparison.serving_threshold:g}. Mean ± sd over training seeds.", "",
              "| | " + " | ".join("seed model" if a == "before" else a for a in arms) + " |",
              "|---|" + "---:|" * len(arms)]
    for key, *_ in SUMMARY_METRICS:
        cells = [_cell(arm_values(comparison.arms[a], key)) for a in arms]
        lines.append(f"| {ROW_NAMES[key]} | " + " | ".join(cells) + " |")
    lines.append("")
    for pair, rows in summary["differences"].items():
        for key in ("tail_bbox_map", "superset_bbox_map", "tail_fp_per_image"):
            d = rows.get(key)
            if d is None:
                continue
            judged = ("no noise estimate (one training seed)" if d["beyond_noise"] is None else
                      f"{'beyond' if d['beyond_noise'] else 'within'} the minimum detectable difference "
                      f"{d['min_detectable_difference']:.3f}")
            lines.append(f"- {pair.replace('-', ' − ')}, {ROW_NAMES[key]}: {d['difference']:+.3f} ({judged}).")
    for key, g in summary.get("control_gain", {}).items():
        noise = (f"sd of a training run {g['sd']:.3f}, pooled over the {g.get('runs_pooled', 0)} fine-tuned runs"
                 if "runs_pooled" in g else f"sd over training seeds {g['sd']:.3f}") if g["sd"] is not None else ""
        said = ("one training seed, no noise estimate" if g["within_2_sd"] is None else
                f"{noise}: within 2 sd of zero, the seed model is at its plateau"
                if g["within_2_sd"] else f"{noise}: beyond 2 sd, the seed model had "
                "not plateaued, so part of every arm's gain is more training")
        lines.append(f"- control − seed model, {ROW_NAMES[key]}: {g['gain']:+.3f} ({said}).")
    return "\n".join(lines)


def verdict_lines(summary: dict, explain: bool = True) -> list[str]:
    """The lead: mined against random on the tail's false positives, the tail's mAP and the superset's, each in one
    word (`mining.evaluation.judge`) with its difference, noise and margin; with `explain`, what the words mean."""
    if not summary.get("verdict"):
        return []
    lines = ["**Verdict, mined against random:**", ""]
    for key, v in summary["verdict"].items():
        word = VERDICT_WORDS.get(v["verdict"], "not judged")
        noise = v["min_detectable_difference"]
        interval = "" if noise is None else f" ± {noise:.3f}"
        caveat = "one training seed: no noise estimate; " if noise is None else ""
        lines.append(f"- {ROW_NAMES[key]}: **{word}**, {v['difference']:+.3f}{interval} "
                     f"({caveat}a difference matters from {v['margin']:g}).")
    if not explain:
        return lines
    return lines + ["", "A difference is called no difference that matters when it and its noise (the minimum "
                        "detectable difference, 2 sd of the difference) lie within ± the margin; better or worse "
                        "when it is beyond its noise; inconclusive when neither.", ""]


def costs_markdown(comparison: Comparison, fp_cost: float = 1.0, miss_cost: float = 1.0) -> str:
    """What each error type costs in bbox mAP (TIDE's fixes, `mining.model_errors.ErrorCost`), per arm, on the superset
    and the tail, and at the operating point (its count at the score threshold x its unit cost,
    `mining.model_errors.operating_point_cost`) on the superset, where errors are counted: mean over training seeds."""
    subsets = [s for s in ("superset", "tail") if any(a.costs("fp_background", s) for a in comparison.arms.values())]
    if not subsets:
        return ""
    types = ["fp_background", "fp_wrong_class", "fp_localisation", "miss"]
    lines = ["| arm | subset | price | " + " | ".join(types) + " |", "|---|---|---|" + "---:|" * len(types)]
    for name, arm in comparison.arms.items():
        for subset in subsets:
            lines.append(f"| {name} | {subset} | mAP | " + " | ".join(_cell(arm.costs(t, subset)) for t in types)
                         + " |")
        priced = {t: [operating_point_cost({t: n}, fp_cost, miss_cost)[t] for n in arm.errors(t)] for t in types}
        lines.append(f"| {name} | superset | operating point | " + " | ".join(_cell(priced[t], 1) for t in types)
                     + " |")
    return "\n".join(lines)


def _grouped_bars(ax, groups: list[str], comparison: Comparison, values_of) -> None:
    """One bar per arm in each group, at the mean over training seeds, with the seed sd as the error bar."""
    arms = list(comparison.arms)
    width = 0.8 / len(arms)
    for i, name in enumerate(arms):
        stats = [mean_sd(values_of(comparison.arms[name], g) or [0.0]) for g in groups]
        ax.bar([x + i * width for x in range(len(groups))], [m for m, _ in stats], width, label=name,
               yerr=[sd for _, sd in stats], capsize=2)
    ax.set_xticks([x + width * (len(arms) - 1) / 2 for x in range(len(groups))], groups)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_maps(comparison: Comparison, path: Path) -> Path:
    subsets = list(comparison.subsets)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _grouped_bars(ax, subsets, comparison, lambda arm, subset: arm.maps(subset))
    ax.set_ylabel("bbox mAP (± sd over seeds)")
    # Start the axis near the data: the differences that matter are a few points, not the whole 0-1 range.
    values = [v for arm in comparison.arms.values() for s in subsets for v in arm.maps(s)]
    if values:
        ax.set_ylim(max(0.0, min(values) - 0.1), min(1.05, max(values) + 0.08))
    ax.legend(fontsize=8, ncol=len(comparison.arms), loc="upper center")
    ax.set_title("mAP by evaluation subset")
    return _save(fig, path)


def _plot_errors(comparison: Comparison, path: Path) -> Path:
    """High-score errors by type and arm (mean over training seeds): did the queried kind go down?"""
    fig, ax = plt.subplots(figsize=(7, 3.0))
    _grouped_bars(ax, list(ERROR_TYPES), comparison, lambda arm, error_type: arm.errors(error_type))
    ax.set_ylabel("errors on the superset")
    ax.legend(fontsize=8, ncol=len(comparison.arms))
    ax.set_title("errors by type, before and after fine-tuning")
    return _save(fig, path)


def _plot_pr(comparison: Comparison, path: Path) -> Path:
    # Every class any arm has a curve for, in first-seen order: a seed that detects nothing has no curves at all.
    classes = list(dict.fromkeys(cls for arm in comparison.arms.values()
                                 for cls in arm.metrics["superset"]["bbox"]["pr_curves"]))
    if not classes:
        fig, ax = plt.subplots(figsize=(3, 2.8))
        ax.text(0.5, 0.5, "no detections in any arm", ha="center", va="center", fontsize=9)
        ax.set_axis_off()
        return _save(fig, path)
    fig, axes = plt.subplots(1, len(classes), figsize=(3 * len(classes), 2.8), squeeze=False)
    for ax, cls in zip(axes[0], classes):
        for name, arm in comparison.arms.items():
            curve = arm.metrics["superset"]["bbox"]["pr_curves"].get(cls)
            if curve:
                ax.plot(curve["recall"], curve["precision_iou50"], label=name)
        ax.set_title(cls, fontsize=9)
        ax.set_xlabel("recall")
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("precision (IoU 0.5)")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, path)


def write_report(comparison: Comparison, out_dir: str | Path, title: str, facts: dict, montage: str | None = None,
                 hard_case_precision: dict | None = None, queried_types: list[str] | None = None) -> dict[str, Path]:
    """Write report.md and report.html (plots beside them and embedded) and comparison.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {"mAP comparison": _plot_maps(comparison, out / "map_comparison.png"),
             "errors by type": _plot_errors(comparison, out / "errors_by_type.png"),
             "precision-recall curves (superset)": _plot_pr(comparison, out / "pr_curves.png")}
    if montage:
        plots["queries and their nearest pool neighbours"] = Path(montage)
    md = [f"# {title}", ""]
    lead = test_verdict_markdown(comparison)
    if lead:
        md += ["## The verdict on the test split", "", lead, ""]
    md += [f"- {k}: {v}" for k, v in facts.items()]
    if not any(arm.maps(s, "segm") for arm in comparison.arms.values() for s in comparison.subsets):
        md.append("- masks: none (a box-only dataset: boxes trained and scored, no mask loss, no segm metrics)")
    verdict = verdict_markdown(comparison, queried_types)
    if verdict:
        md += ["", "## Did the mined batch count?", "", verdict]
    md += ["", "## mAP", "", map_markdown(comparison)]
    if hard_case_precision:
        md += ["## Hard-case precision", "", "Share of each batch's images that hold the queried kind of error "
               "(for the synthetic data: an unlabelled look-alike distractor).", "",
               "| batch | images | with the error | share |", "|---|---:|---:|---:|"]
        md += [f"| {k} | {v['images']} | {v['hits']} | {v['share']:.2f} |" for k, v in hard_case_precision.items()]
        md.append("")
    costs = costs_markdown(comparison)
    if costs:
        md += [("## What each error type costs (bbox mAP an oracle fixing it would gain; at the operating point, "
                "its count at the score threshold x 1)"), "", costs, ""]
    md += ["## Errors on the superset (score >= threshold)", "", errors_markdown(comparison), "",
           "## Per-class AP (bbox, superset, first training seed)", "",
           "| arm | " + " | ".join(next(iter(comparison.arms.values())).metrics["superset"]["bbox"]["per_class_AP"]) + " |",
           "|---|" + "---:|" * len(next(iter(comparison.arms.values())).metrics["superset"]["bbox"]["per_class_AP"])]
    for name, arm in comparison.arms.items():
        md.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in arm.metrics["superset"]["bbox"]["per_class_AP"].values()) + " |")
    md.append("")
    for caption, path in plots.items():
        md += [f"## {caption[0].upper() + caption[1:]}", "", f"![{caption}]({path.name if path.parent == out else path})", ""]
    md_text = "\n".join(md)
    (out / "report.md").write_text(md_text)

    html_text = _to_html(md_text, plots, out)
    (out / "report.html").write_text(html_text)
    (out / "comparison.json").write_text(json.dumps({
        "subsets": {k: len(v) for k, v in comparison.subsets.items()}, "evaluation": summarise(comparison),
        "arms": {n: {"extra_images": a.extra_images, "steps": a.steps, "seconds": round(a.seconds, 1),
                     "version": a.version, "errors": a.error_counts, "runs": a.runs,
                     "mAP": {s: {t: m[t]["mAP"] for t in ("bbox", "segm") if t in m} for s, m in a.metrics.items()}}
                 for n, a in comparison.arms.items()},
        "hard_case_precision": hard_case_precision, "facts": facts}, indent=1, default=str))
    return {"markdown": out / "report.md", "html": out / "report.html", "json": out / "comparison.json"}


def _to_html(md_text: str, plots: dict[str, Path], out: Path) -> str:
    """The report's Markdown as one self-contained HTML page (markdown-it, CommonMark with tables): the plots are
    embedded as data URIs, so the page travels as one file. They go in after rendering: markdown-it's link scanner
    took seconds over a Markdown text that carried the images' base64."""
    images = {}
    for i, path in enumerate(plots.values()):
        target = path.name if path.parent == out else str(path)
        md_text = md_text.replace(f"]({target})", f"](gaze-plot-{i})")
        images[f'src="gaze-plot-{i}"'] = f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md_text)
    for placeholder, data in images.items():
        body = body.replace(placeholder, data)
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{body}</body></html>"
