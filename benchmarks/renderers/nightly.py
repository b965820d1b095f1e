"""What a night costs as the archive grows (`benchmarks/nightly_bench.py` -> `results/nightly.json`)."""

from __future__ import annotations

import statistics

from renderers import table

STAGES = (("listing", "listing"), ("detect", "detect writes"), ("state", "state"), ("index", "index"),
          ("mining", "mining"), ("export", "export"))
# The bench's targets (benchmarks/nightly_bench.py): the largest archive's night costs at most RATIO x the smallest
# archive's and at most SECONDS, in under GB of peak memory; the whole flow at most REAL_RATIO x bare inference.
TARGET_RATIO, TARGET_SECONDS, TARGET_GB, TARGET_REAL_RATIO = 2, 60, 8, 1.15


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def _runs(nightly: dict) -> list[dict]:
    return sorted(nightly["runs"], key=lambda run: run["archive_images"])


def nightly_setup(nightly: dict) -> str:
    """What was measured: the archive and the nights, from the run's parameters."""
    p = nightly["parameters"]
    sizes = " / ".join(_size(n) for n in p["sizes"])
    return (f"Archives of {sizes} pool images (image records, one detection, one fc7 and one image vector of "
            f"{p['dim']}-d {p['dtype']} per image, files on disk), grown in one database; at each size "
            f"{p['nights_per_size']} nights of {p['night']:,} new real PNGs each, the detector replaced by a stub "
            f"that makes {p['boxes_per_night_image']} detections per image, {p['queries']} queries mined. The median "
            f"night stands for the size. Run on {nightly['date']}, {nightly['machine']['cpus']} cores, "
            f"{nightly['total_wall_s'] / 60:.0f} minutes in all.\n")


def nightly_sizes(nightly: dict) -> str:
    """Per archive size: the median night's seconds per stage, its non-detection total, every night's, peak RSS."""
    rows = []
    for run in _runs(nightly):
        every = " / ".join(f"{s:.1f}" for s in run["non_detection_s_all"])
        rows.append([_size(run["archive_images"])] + [f"{run['stages'][key]['s']:.2f}" for key, _ in STAGES]
                    + [f"**{run['non_detection_s']:.1f}** ({every})", f"{run['peak_rss_gb']:.2f}"])
    return table(["archive"] + [title for _, title in STAGES]
                 + ["**non-detection** s, median (each night)", "peak RSS GB, worst night"], rows)


def nightly_target(nightly: dict) -> str:
    """The target, and what the largest archive's night came to."""
    runs, target = _runs(nightly), nightly["target"]
    small, large = runs[0], runs[-1]
    verdict = "met" if target["met"] else "**not met**"
    return (f"At {_size(large['archive_images'])} the median night costs **{target['largest_non_detection_s']:.1f} "
            f"s**, **{target['ratio_largest_to_smallest']:.2f}x** the {_size(small['archive_images'])} night, with "
            f"a peak of {target['largest_peak_rss_gb']:.2f} GB (target: at most {TARGET_RATIO}x, {TARGET_SECONDS} s "
            f"and {TARGET_GB} GB: {verdict}).\n")


def nightly_noise(nightly: dict) -> str:
    """The spread between nights of one size, and the first night after the largest fill."""
    runs = _runs(nightly)
    small, large = runs[0], runs[-1]
    first = large["nights"][0]
    slowest = max(first["stages"], key=lambda key: first["stages"][key]["s"])
    return (f"One bench run, so one draw of this machine's noise: the {_size(small['archive_images'])} nights alone "
            f"range from {min(small['non_detection_s_all']):.1f} to {max(small['non_detection_s_all']):.1f} s. "
            f"The first night after the {_size(large['archive_images'])} fill took "
            f"**{first['non_detection_s']:.1f} s**, {first['stages'][slowest]['s']:.1f} s of it {slowest}, on cold "
            f"caches right after a million records and the last weekly merge were written.\n")


def nightly_setup_costs(nightly: dict) -> str:
    """What growing the archive to each size cost (off the night's path), and the weekly full walk."""
    rows = []
    for run in _runs(nightly):
        s = run["setup_s"]
        rows.append([_size(run["archive_images"])] + [f"{s[k]:.1f}" for k in
                                                      ("files", "records", "vectors", "index", "weekly_merge")]
                    + [f"{run['full_walk_s']:.1f} ({run['full_walk_files']:,} files)", f"{run['mongod_rss_gb']:.2f}",
                       f"{run['disk_gb']:.2f}"])
    merges = sum(run["setup_s"]["weekly_merge"] for run in nightly["runs"])
    return (table(["archive", "files s", "records s", "vectors s", "index s", "weekly merges s",
                   "full walk s", "mongod RSS GB", "disk GB"], rows)
            + f"\nEach row is the growth from the size above (the archive grows in place). The weekly merges took "
              f"{merges:.0f} s over the whole fill.\n")


def nightly_real(nightly: dict) -> str:
    """The whole Prefect flow over real images against bare tapped inference on the same images."""
    real = nightly["real_night"]
    runs = real["runs"]
    verdict = "met" if real["target_met"] else "**not met**"
    ratios = " / ".join(f"{r:.3f}" for r in real["ratios"])
    earlier = real.get("single_runs_earlier_today", {}).get("ratios", [])
    cpu_bare = statistics.mean(c for r in runs for c in r["cpu_s"]["bare_before_and_after"])
    cpu_night = statistics.mean(r["cpu_s"]["night"] for r in runs)
    steal = sum(s for r in runs for s in r["steal_s"]["bare_before_and_after"] + [r["steal_s"]["night"]])
    text = (f"The whole nightly flow over {real['images']} real demo images with the demo's `mobilenet` seed "
            f"(`{real['checkpoint']}`), {len(runs)} runs, took **{real['ratio']:.3f}x** bare inference in the "
            f"median run ({real['nightly_flow_s']:.1f} s against {real['bare_tapped_inference_s']:.1f} s; the runs "
            f"{ratios}); target at most {TARGET_REAL_RATIO}x: {verdict}. The night used {cpu_night:.1f} CPU s on "
            f"average against {cpu_bare:.1f} for bare inference, and the machine reported {steal:.1f} s of steal "
            f"time.")
    if earlier:
        text += (" Single runs the same day, before the median of several was taken, measured "
                 + ", ".join(f"{r:.2f}" for r in earlier) + ".")
    return text + "\n"


def nightly_float16(nightly: dict) -> str:
    """Exact recall@10 with float16 stored vectors against float32."""
    f16 = nightly["float16"]
    return (f"Exact recall@10 of float16 against float32 vectors: **{f16['recall_at_10_float16_vs_float32']:.4f}** "
            f"({f16['n']:,} vectors, {f16['queries']} queries).\n")


BLOCKS = {"nightly-setup": ("nightly.json", nightly_setup), "nightly-sizes": ("nightly.json", nightly_sizes),
          "nightly-target": ("nightly.json", nightly_target), "nightly-noise": ("nightly.json", nightly_noise),
          "nightly-setup-costs": ("nightly.json", nightly_setup_costs),
          "nightly-real": ("nightly.json", nightly_real), "nightly-float16": ("nightly.json", nightly_float16)}
