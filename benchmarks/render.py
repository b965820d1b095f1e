"""Renders results tables into the README from `benchmarks/results/*.json`, so no number there is typed by hand.

A rendered block sits between two markers in the README:

    <!-- render: real-summary -->
    ...table...
    <!-- /render -->

`python benchmarks/render.py` rewrites every block from its results file; `--check` exits 1 and names the blocks
whose text differs from what the files say (tests/test_render.py runs it, so CI fails on a number out of date).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- render: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /render -->)", re.S)
REAL_METRICS = (("stop_ap50", "stop AP50"), ("stop_ap", "stop AP"), ("test_bbox_map", "bbox mAP"),
                ("test_ap50", "AP50"), ("fp_per_image", "FPs / image @ 0.5"), ("stop_recall", "stop recall @ 0.5"))


def _cell(stat: dict | None, digits: int = 3) -> str:
    if not stat:
        return "–"
    sd = f" ± {stat['sd']:.{digits}f}" if stat.get("sd") is not None else ""
    return f"{stat['mean']:.{digits}f}{sd}"


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


RENDERERS = {"real-summary": ("real.json", real_summary), "real-against-random": ("real.json", real_against_random)}


def render(text: str) -> tuple[str, list[str]]:
    """The text with every block rendered afresh, and the names of the blocks that changed."""
    changed = []

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"no renderer for block {name!r}; known: {sorted(RENDERERS)}")
        source, renderer = RENDERERS[name]
        body = renderer(json.loads((RESULTS / source).read_text()))
        if body != match["body"]:
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(fill, text), changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a block differs from its results file")
    parser.add_argument("files", nargs="*", default=[str(REPO / "README.md")])
    args = parser.parse_args()
    stale = []
    for name in args.files:
        path = Path(name)
        text, changed = render(path.read_text())
        if args.check:
            stale += [f"{path.name}: {block}" for block in changed]
        elif changed:
            path.write_text(text)
            print(f"{path.name}: rendered {', '.join(changed)}")
    if stale:
        print("out of date with benchmarks/results (run python benchmarks/render.py): " + "; ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
