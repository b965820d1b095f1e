"""A new model re-detecting the archive (`benchmarks/rollout_bench.py` -> `results/rollout.json`)."""

from __future__ import annotations

from renderers import table


def rollout_throughput(rollout: dict) -> str:
    """Images/s with each number of local Dask workers."""
    rows = [[run["workers"], f"{run['images']:,}", f"{run['backfill_s']:.1f}", f"{run['wall_s']:.1f}",
             f"{run['images_per_s']:.2f}"] for run in rollout["throughput"]]
    return table(["local Dask workers", "images", "backfill s", "wall s", "images/s (backfill)"], rows)


def rollout_summary(rollout: dict) -> str:
    """The measured rates, the projection to a million images and the kill-and-resume check, in sentences."""
    runs = sorted(rollout["throughput"], key=lambda run: run["workers"])
    rates = " and ".join(f"**{run['images_per_s']:.2f} images/s** on {run['workers']} local Dask "
                         f"worker{'s' if run['workers'] > 1 else ''}" for run in runs)
    projection, kill = rollout["projection_1m"], rollout["kill_and_resume"]
    return (f"On {runs[0]['images']:,} images ({rollout['image_size']}) with the demo's `mobilenet` model "
            f"(`{rollout['checkpoint']}`): {rates} ({rollout['cpus']} cores, {rollout['date']}). A million images "
            f"would take about **{projection['hours_this_machine']:.1f} hours** on this machine and, at an assumed "
            f"(not measured) {projection['gpu_images_per_s_per_worker']:.0f} images/s per GPU worker, "
            f"{projection['hours_per_gpu_worker']:.1f} hours per GPU worker (the assumption's source: "
            f"{projection['gpu_source'].removeprefix('assumed, not measured: ')}).\n\n"
            f"A rollout SIGKILLed after {kill['done_at_kill']} of {kill['images']} images, then run again: "
            f"**{kill['lost']} lost, {kill['duplicated']} duplicated**, and production handed over to "
            f"`{kill['production_after']}`.\n")


BLOCKS = {"rollout-throughput": ("rollout.json", rollout_throughput),
          "rollout-summary": ("rollout.json", rollout_summary)}
