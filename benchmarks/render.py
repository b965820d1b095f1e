"""Renders results tables into README.md and docs/ from `benchmarks/results/`, so no number there is typed by hand.

A rendered block sits between two markers:

    <!-- render: real-summary -->
    ...table...
    <!-- /render -->

Each block's renderer lives in `benchmarks/renderers/` (one module per results file). `python benchmarks/render.py`
rewrites every block of README.md and docs/**/*.md from its results; `--check` exits 1 and names the blocks whose
text differs from what the files say, and every number typed by hand outside a block (tests/test_render.py runs
it, so CI fails on a number out of date).

A number typed by hand is a figure in prose or a heading: not inside a rendered block, a fenced code block, inline
code or a link target, and not one of the few names that carry digits (`COCO 1.0`, `Python 3.11`, a list's own
numbering). Put a measured number in a block; put a flag's value in `inline code`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from renderers import all_blocks  # noqa: E402 - the package sits beside this script

BLOCK = re.compile(r"(<!-- render: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /render -->)", re.S)
RENDERERS = all_blocks()

# Text where digits are a name, not a measurement. Removed before numbers are looked for.
NOT_NUMBERS = [
    re.compile(r"<!-- render: .*?<!-- /render -->", re.S),  # rendered from results
    re.compile(r"^```.*?^```", re.S | re.M),  # commands and code
    re.compile(r"`[^`\n]*`"),  # flags, values, paths
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"<[^>\n]*>"),  # html tags and comments
    re.compile(r"https?://\S+"),
    re.compile(r"^\s*\d+\.\s", re.M),  # a numbered list's own numbers
    re.compile(r"\b(?:COCO|CVAT for images|Python|Debian|Prefect|Label Studio|ECCV|CVPR|TIDE|CC|"
               r"mAP@|AP@|IoU|S3|Mask R-CNN|[A-Z]{2,}[- ]?)\s?[\d.]+(?:[-–][\d.]+)?"),
    re.compile(r"\b(?:recall|precision|AP|mAP)@[\d.]+"),  # a metric's name: recall@10
    re.compile(r"\b[A-Z][A-Za-z]*-\d+(?:-[A-Z]+)?\b"),  # a model's name: ResNet-50-FPN
    re.compile(r"\b(?:19|20)\d\d(?:-\d\d(?:-\d\d)?)?\b"),  # years and dates of a citation or a run
    re.compile(r"\b\w*[A-Za-z_]\d[\w.]*|\b\d+[A-Za-z_]\w*"),  # digits inside a word: AP50, h100, 2d, x1
]
NUMBER = re.compile(r"(?<![\w.])[-+±−]?\d+(?:[.,]\d+)*%?(?![\w])")


def load(source: str):
    """A results file, or a folder of them as {file stem: content}."""
    path = RESULTS / source
    if path.is_dir():
        return {p.stem: json.loads(p.read_text()) for p in sorted(path.glob("*.json"))}
    return json.loads(path.read_text())


def render(text: str) -> tuple[str, list[str]]:
    """The text with every block rendered afresh, and the names of the blocks that changed."""
    changed = []

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"no renderer for block {name!r}; known: {sorted(RENDERERS)}")
        source, renderer = RENDERERS[name]
        body = renderer(load(source))
        if body != match["body"]:
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(fill, text), changed


def handwritten_numbers(text: str) -> list[str]:
    """Each line of prose that holds a number no renderer wrote, as "line N: the number"."""
    for pattern in NOT_NUMBERS:
        text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)  # keep line numbers
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        found += [f"line {n}: {m.group(0)}" for m in NUMBER.finditer(line)]
    return found


def pages() -> list[Path]:
    return [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a block differs from its results file or a number is typed by hand")
    parser.add_argument("files", nargs="*", help="Markdown files (default: README.md and docs/**/*.md)")
    args = parser.parse_args()
    problems = []
    for path in [Path(f) for f in args.files] or pages():
        text, changed = render(path.read_text())
        if args.check:
            problems += [f"{path.name}: block {block} is out of date (run python benchmarks/render.py)"
                         for block in changed]
            problems += [f"{path.name}: {where}, typed by hand" for where in handwritten_numbers(path.read_text())]
        elif changed:
            path.write_text(text)
            print(f"{path.name}: rendered {', '.join(changed)}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
