"""One module per results file (or family of them): each defines `BLOCKS`, a dict from a block's name to
`(source, renderer)`. `source` is a path under `benchmarks/results/` (a file, or a folder whose `*.json` files are
loaded into a dict by file stem); `renderer` takes the loaded JSON and returns the block's Markdown.

A block sits in README.md or a page under docs/ between two markers:

    <!-- render: real-summary -->
    ...what the renderer returns...
    <!-- /render -->
"""

from __future__ import annotations

import importlib
import pkgutil


def all_blocks() -> dict:
    """Every module's BLOCKS, merged; a name defined twice is refused."""
    blocks: dict = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, entry in getattr(module, "BLOCKS", {}).items():
            if name in blocks:
                raise ValueError(f"block {name!r} is rendered by two modules")
            blocks[name] = entry
    return blocks


def cell(stat: dict | None, digits: int = 3) -> str:
    """A `{"mean": .., "sd": ..}` statistic as "mean ± sd" ("–" when missing)."""
    if not stat:
        return "–"
    sd = f" ± {stat['sd']:.{digits}f}" if stat.get("sd") is not None else ""
    return f"{stat['mean']:.{digits}f}{sd}"


def mean_sd(pair: list, digits: int, signed: bool = False) -> str:
    """A `[mean, sd]` pair as "mean ± sd" (`signed`: the mean with its sign, for a difference)."""
    sign = "+" if signed else ""
    return f"{pair[0]:{sign}.{digits}f} ± {pair[1]:.{digits}f}"


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A Markdown table; `align` is one character per column, "l" or "r" (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    lines = ["| " + " | ".join(str(h) for h in header) + " |", rule]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
