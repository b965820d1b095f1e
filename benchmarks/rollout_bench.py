"""Rollout benchmark: how fast a new model re-detects the archive on local Dask workers, what a million images would
take, and whether a rollout killed mid-way resumes with nothing lost or duplicated.

    .venv/bin/python benchmarks/rollout_bench.py --checkpoint SEED.pt [--images 2000] [--work /tmp/rollout-bench]

The archive is --images of the demo's street scenes (generated, 320 x 240), ingested into a throwaway embedded
mongod; the serving model is the checkpoint, the new model the same weights under another version (the cost of a
rollout is the model's, not its weights'), e.g. the quick demo's seed `<data home>/demo/quick-*/work/seed-40.pt`.
Each measurement is `dataengine rollout` run as a user runs it (a subprocess), in a database of its own:

- **throughput** with 1 and 2 local Dask workers (each worker's torch takes an equal share of the cores): images/s
  over the backfill (cluster start, pool index and hand-over excluded: `RolloutReport.seconds`) and the wall time;
- **the projection** for 1M images: hours on this machine at the best measured rate, and per GPU worker at an
  assumed throughput (stated with its source; measured here when a GPU is lent);
- **kill and resume**: the rollout SIGKILLed (with its workers) once a quarter of the archive is done, then run
  again: images lost (not processed) and duplicated (a second image vector or detection vector) are counted.

Writes `benchmarks/results/rollout.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
# A GPU's rate for this model is not measured here (no GPU was lent to the session that wrote this). detectron2's
# model zoo lists about 0.04-0.05 s/image inference for its R50-FPN Mask R-CNN on a V100 at 800 px (20-25 images/s);
# the demo's MobileNet model at 320 x 240 is cheaper on the GPU, and decoding and writes on the worker's CPU then
# bound it, so 20 images/s per GPU worker is an assumption to replace with a measurement.
ASSUMED_GPU_IMAGES_PER_S = 20.0
ASSUMED_GPU_SOURCE = ("assumed, not measured: detectron2's model zoo lists about 0.04-0.05 s/image inference for "
                      "R50-FPN Mask R-CNN on a V100 at 800 px; the demo's MobileNet model at 320x240 is cheaper on the "
                      "GPU, and the worker's decoding and writes then bound it")


def setup(work: Path, checkpoint: str, n_images: int) -> tuple[dict, list[str]]:
    from detectors.checkpoint import load_checkpoint, save_checkpoint  # noqa: PLC0415
    from detectors.synthetic import generate  # noqa: PLC0415
    from fdb.server import EmbeddedMongo  # noqa: PLC0415
    from storage import list_images  # noqa: PLC0415

    generate(work / "scenes", n_train=0, n_val=0, n_pool=n_images, seed=11, progress=False)
    server = EmbeddedMongo(work / "db").start()
    serving = load_checkpoint(checkpoint)
    new = save_checkpoint(work / "new.pt", serving.model, serving.config, serving.version + "-rollout", "bench")
    env = {**os.environ, "DATAENGINE_HOME": str(work / "home"), "DATAENGINE_MONGODB_URI": server.uri,
           "PREFECT_HOME": str(work / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    env.pop("PYTHONPATH", None)
    return {"env": env, "server": server, "serving": checkpoint, "new": str(new),
            "new_version": load_checkpoint(new).version}, list_images(work / "scenes" / "images")


def fresh_database(ctx: dict, name: str, uris: list[str]):
    """A database holding the archive (ingested) and both models, the serving one in production."""
    from detectors.checkpoint import load_checkpoint  # noqa: PLC0415
    from fdb import StoreConfig, connect  # noqa: PLC0415
    from fdb.images import ingest_images  # noqa: PLC0415
    from jobs.context import register_checkpoint  # noqa: PLC0415

    fdb = connect(StoreConfig(home=ctx["env"]["DATAENGINE_HOME"], uri=ctx["server"].uri, db_name=name), watch=False)
    register_checkpoint(fdb, load_checkpoint(ctx["serving"]), first_is_production=True)
    register_checkpoint(fdb, load_checkpoint(ctx["new"]))
    ingest_images(fdb, uris, source="archive")
    return fdb


def rollout_command(ctx: dict, workers: int) -> list[str]:
    return [str(BIN / "dataengine"), "rollout", "--model", ctx["new_version"], "--dask-workers", str(workers),
            "--chunk-size", "64", "--no-progress"]


def throughput(ctx: dict, uris: list[str], workers: int) -> dict:
    fdb = fresh_database(ctx, f"rollout_{workers}w", uris)
    env = {**ctx["env"], "DATAENGINE_DB": f"rollout_{workers}w"}
    t0 = time.perf_counter()
    done = subprocess.run(rollout_command(ctx, workers), env=env, capture_output=True, text=True, cwd="/tmp")
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    seconds = float(re.search(r" in ([\d.]+) s ", done.stdout).group(1))
    processed = fdb.images.count_documents({"processed_by": ctx["new_version"]})
    return {"workers": workers, "images": processed, "backfill_s": seconds, "wall_s": round(wall, 1),
            "images_per_s": round(processed / seconds, 2), "said": done.stdout.strip()}


def kill_and_resume(ctx: dict, uris: list[str], workers: int) -> dict:
    fdb = fresh_database(ctx, "rollout_kill", uris)
    env = {**ctx["env"], "DATAENGINE_DB": "rollout_kill"}
    version, total = ctx["new_version"], len(uris)
    run = subprocess.Popen(rollout_command(ctx, workers), env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, cwd="/tmp", start_new_session=True)
    while fdb.images.count_documents({"processed_by": version}) < total // 4 and run.poll() is None:
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    at_kill = fdb.images.count_documents({"processed_by": version})
    resumed = subprocess.run(rollout_command(ctx, workers), env=env, capture_output=True, text=True, cwd="/tmp")
    if resumed.returncode != 0:
        raise SystemExit(resumed.stdout[-3000:] + resumed.stderr[-3000:])
    processed = fdb.images.count_documents({"processed_by": version})
    image_vectors = fdb.features.count_documents({"model_version": version, "owner_kind": "image"})
    detections = fdb.detections.count_documents({"model_version": version})
    box_vectors = fdb.features.count_documents({"model_version": version, "owner_kind": "detection"})
    return {"images": total, "done_at_kill": at_kill, "lost": total - processed,
            "duplicated": (image_vectors - processed) + (box_vectors - detections),
            "production_after": fdb.registry.find_one({"_id": "production"})["version"], "said": resumed.stdout.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="the serving model's checkpoint (the new one is a copy)")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--work", default="/tmp/rollout-bench", help="scratch folder (emptied first)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rollout.json"))
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx, uris = setup(work, args.checkpoint, args.images)
    try:
        runs = [throughput(ctx, uris, workers) for workers in (1, 2)]
        kill = kill_and_resume(ctx, uris[: max(400, args.images // 4)], workers=2)
    finally:
        ctx["server"].stop()
    best = max(r["images_per_s"] for r in runs)
    result = {"benchmark": "rollout", "date": time.strftime("%Y-%m-%d"), "machine": platform.node(),
              "cpus": os.cpu_count(), "checkpoint": Path(args.checkpoint).name, "image_size": "320x240",
              "throughput": runs,
              "projection_1m": {"hours_this_machine": round(1e6 / best / 3600, 1),
                                "gpu_images_per_s_per_worker": ASSUMED_GPU_IMAGES_PER_S,
                                "gpu_source": ASSUMED_GPU_SOURCE,
                                "hours_per_gpu_worker": round(1e6 / ASSUMED_GPU_IMAGES_PER_S / 3600, 1)},
              "kill_and_resume": kill}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "kill_and_resume"}, indent=1))
    print("kill and resume:", {k: v for k, v in kill.items() if k != "said"})


if __name__ == "__main__":
    main()
