"""Inference speed with and without feature taps (`benchmarks/detector_bench.py` -> `results/detector.json`)."""

from __future__ import annotations

from renderers import table

RUNS = (("small_320", "`small`"), ("r50_800", "`r50`"))


def detector_taps(d: dict) -> str:
    """Images/s of plain and tapped inference per preset, and what the taps cost."""
    rows = []
    for key, name in RUNS:
        r = d.get(key)
        if not r:
            continue
        rows.append([name, r["size"], r["weights"], r["images"], r["batch_size"], f"{r['plain_images_per_s']:.2f}",
                     f"{r['tapped_images_per_s']:.2f}", f"{r['tap_overhead_pct']:+.1f} %",
                     f"{r['detections_per_image']:.1f}"])
    return (f"On {d['device']} ({d['cpu']}), torch {d['torch']}, {d['date']}:\n\n"
            + table(["preset", "image size", "weights", "images", "batch", "plain images / s", "tapped images / s",
                     "tap overhead", "detections / image"], rows, "llllrrrrr"))


def detector_summary(d: dict) -> str:
    """One sentence on the small preset's tap overhead."""
    r = d["small_320"]
    return (f"On {d['cpu']} the `small` preset detects {r['plain_images_per_s']:.2f} images/s without taps and "
            f"{r['tapped_images_per_s']:.2f} with them ({r['tap_overhead_pct']:+.1f} %, {r['size']}, "
            f"{r['detections_per_image']:.1f} detections per image).\n")


BLOCKS = {"detector-taps": ("detector.json", detector_taps), "detector-summary": ("detector.json", detector_summary)}
