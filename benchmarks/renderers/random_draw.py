"""The random arm's draw at the archive's scale (`benchmarks/random_draw_bench.py` -> `results/random_draw.json`)."""

from __future__ import annotations

from renderers import table


def random_draw(r: dict) -> str:
    """Per pool size: the indexed draw against reading every eligible id (median of the repeats, seconds)."""
    rows = [[f"{x['pool']:,}", f"{x['random_draw_s']:.3f}", f"{x['every_id_s']:.3f}",
             f"{x['every_id_s'] / x['random_draw_s']:.1f}x"] for x in r["results"]]
    return (table(["pool images", "indexed draw (s)", "every eligible id read (s)", "indexed draw faster by"], rows)
            + f"\nA draw of {r['budget']} images; the median of {r['repeats']} draws, each with another seed; "
              f"{r['machine']['cpus']} CPUs, Python {r['machine']['python']}, {r['date']}.\n")


BLOCKS = {"random-draw": ("random_draw.json", random_draw)}
