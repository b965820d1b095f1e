"""A soak of the nightly's fault tolerance: random SIGKILLs of `dataengine nightly` and of its embedded mongod over
one night's folder that holds bad files, then a full run and a repeat. Not a timed test.

    .venv/bin/python benchmarks/soak_bench.py [--kills 20] [--db-kills 2] [--pool 480] [--seed 0]
        [--home /tmp/dataengine-soak] [--out benchmarks/results/soak.json]

The folder: `--pool` synthetic street scenes (128x96), plus a decompression bomb (a PNG declaring 30000 x 30000
pixels), an empty file, a truncated PNG, a text file named .jpg, the same bytes under a second name, a name with
spaces and non-ASCII letters, and a link out of the folder to a real image. The model is an untrained small Mask
R-CNN that keeps every detection (many detections per image: the most writes to lose). Most kills land during
detection, 5-40 images further than the run found it (the bench watches fdb); once every image is detected they
land 0.5-20 s later (in the labelled set's detection, mining, export or the record); the last four land 3-30 s
into a run (in start-up, or after the night finished). Each
database kill SIGKILLs the embedded mongod 5-40 images into a run; the run must carry on (the engine restarts its
server) and detect more, and is then killed too, so later kills still find work. Then a full run and a repeat.
Counted in fdb and in the export folder:

- lost: good images never processed; detections without their feature vector; images without their image vector;
- duplicated: images by uri, detections by (image, model, rank), features by owner and layer;
- batches for the night (target 1), and anything read from outside the folder (target 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def prepare(home: Path, pool: int, seed: int) -> dict:
    """The night's folder with its bad files, the labelled set, and an untrained model in production."""
    import torch

    from detectors.checkpoint import load_checkpoint, save_checkpoint
    from detectors.model import build_model, preset_config
    from detectors.synthetic import CATEGORIES, generate
    from fdb import StoreConfig, connect
    from jobs.context import register_checkpoint

    data = home / "data"
    generate(data, n_train=0, n_val=8, n_pool=pool, seed=seed, width=128, height=96, progress=False)
    images = data / "images"
    good = sorted(images.glob("pool_*.png"))
    (images / "pool_bomb.png").write_bytes(png_declaring(30_000, 30_000))
    (images / "pool_empty.png").write_bytes(b"")
    (images / "pool_truncated.png").write_bytes(good[0].read_bytes()[:200])
    (images / "pool_text.jpg").write_text("not an image")
    shutil.copy(good[1], images / "pool_copy of 1.png")
    (images / "pool_Straße 7 – ö.png").write_bytes(good[2].read_bytes() + b"\x00")  # its own bytes
    outside = home / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "private.png").write_bytes(good[3].read_bytes() + b"\x00")
    (images / "pool_link.png").symlink_to(outside / "private.png")
    torch.manual_seed(0)
    cfg = preset_config("small", [c["name"] for c in CATEGORIES], min_size=96, max_size=128, box_score_thresh=0.0)
    checkpoint = load_checkpoint(save_checkpoint(home / "model.pt", build_model(cfg), cfg, "soak-v1", "soak"))
    fdb = connect(StoreConfig(home=str(home / "store"), db_name="soak"), watch=False)
    register_checkpoint(fdb, checkpoint, first_is_production=True)
    # good files: the scenes and the non-ASCII name; the copy is a duplicate, five files are bad
    return {"data": data, "images": images, "good": len(good) + 1, "duplicates": 1, "bad": 5, "outside": outside}


def run_nightly(env: dict, images: Path, gt: Path, exports: Path, log) -> subprocess.Popen:
    cmd = [str(ROOT / ".venv" / "bin" / "dataengine"), "nightly", "--images", str(images), "--pattern", "pool_*",
           "--gt", str(gt), "--k", "5", "--budget", "12", "--to", str(exports)]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def mongod_pid(home: Path) -> int | None:
    try:
        return json.loads((home / "store" / "mongodb" / "dataengine-mongod.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def count(fdb, prepared: dict, exports: Path) -> dict:
    images = fdb.images
    pool = {"split": "pool"}
    dup = lambda coll, key: sum(g["n"] - 1 for g in coll.aggregate(  # noqa: E731
        [{"$group": {"_id": key, "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}]))
    det_ids = set(fdb.detections.distinct("_id"))
    det_with_vectors = set(fdb.features.distinct("owner_id", {"owner_kind": "detection"}))
    processed = set(images.distinct("_id", {"processed_by": "soak-v1"}))
    image_vectors = set(fdb.features.distinct("owner_id", {"owner_kind": "image"}))
    batches = [p for p in exports.iterdir() if p.is_dir()] if exports.is_dir() else []
    return {
        "images": images.count_documents({}),
        "pool_ok_processed": images.count_documents({**pool, "status": "ok", "processed_by": "soak-v1"}),
        "pool_duplicates_recorded": images.count_documents({**pool, "status": "duplicate"}),
        "quarantined": sorted((d["uri"].rsplit("/", 1)[-1], d["reason"][:60])
                              for d in images.find({"status": "quarantined"})),
        "detections": len(det_ids),
        "lost": {"good_images_not_processed": prepared["good"] - images.count_documents(
                     {**pool, "status": "ok", "processed_by": "soak-v1"}),
                 "detections_without_vector": len(det_ids - det_with_vectors),
                 "processed_images_without_vector": len(processed - image_vectors)},
        "duplicated": {"images_by_uri": dup(images, "$uri"),
                       "detections_by_image_model_rank": dup(fdb.detections,
                                                             {"i": "$image_id", "m": "$model_version", "r": "$rank"}),
                       "features_by_owner_and_layer": dup(fdb.features, {"o": "$owner_id", "l": "$layer"})},
        "batches_for_the_night": {"in_fdb": fdb.exports.count_documents({}), "in_the_queue": len(batches)},
        "read_from_outside": images.count_documents({"uri": {"$regex": "outside|pool_link"}}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--db-kills", type=int, default=2)
    parser.add_argument("--pool", type=int, default=480)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=Path, default=Path("/tmp/dataengine-soak"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    args = parser.parse_args()
    if args.home.exists():
        from fdb.server import EmbeddedMongo

        EmbeddedMongo(args.home / "store" / "mongodb").stop()
        shutil.rmtree(args.home)
    args.home.mkdir(parents=True)
    prepared = prepare(args.home, args.pool, args.seed)
    exports = args.home / "queue"
    env = {**os.environ, "DATAENGINE_HOME": str(args.home / "store"), "DATAENGINE_DB": "soak",
           "PREFECT_HOME": str(args.home / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("DATAENGINE_MONGODB_URI", None)
    gt = prepared["data"] / "annotations" / "val.json"
    rng = random.Random(args.seed)
    timed = min(4, args.kills)
    plan = ["nightly"] * (args.kills - timed) + ["mongod"] * args.db_kills
    rng.shuffle(plan)
    plan += ["nightly-timed"] * timed
    events, start = [], time.monotonic()
    from fdb import StoreConfig, connect

    watcher = connect(StoreConfig(home=str(args.home / "store"), db_name="soak"), watch=False)

    def processed() -> int:
        return watcher.images.count_documents({"split": "pool", "processed_by": "soak-v1"})

    def wait_for(proc, target: int, timeout_s: float = 600) -> bool:
        """True when `target` pool images are processed while `proc` runs; False when it ended first."""
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if processed() >= target:
                return True
            time.sleep(0.2)
        return False

    with open(args.home / "runs.log", "w") as log:
        for n, target in enumerate(plan, start=1):
            before = processed()
            proc = run_nightly(env, prepared["images"], gt, exports, log)
            event = {"run": n, "target": target, "processed_before": before}
            if target == "nightly-timed":
                delay = rng.uniform(3, 30)
                event["at_s"] = round(delay, 1)
                try:
                    proc.wait(delay)
                    event["note"] = "finished before the kill"
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            elif wait_for(proc, min(before + rng.randint(5, 40), prepared["good"])):
                event["killed_at_processed"] = processed()
                if event["killed_at_processed"] >= prepared["good"] and target == "nightly":
                    # Detection is done: the kill lands in the labelled set, mining, export or the record.
                    event["after_detection_s"] = round(rng.uniform(0.5, 20), 1)
                    try:
                        proc.wait(event["after_detection_s"])
                        event["note"] = "finished before the kill"
                    except subprocess.TimeoutExpired:
                        pass
                if target == "mongod":
                    os.kill(mongod_pid(args.home), signal.SIGKILL)
                    # The engine restarts its server; the run must go on and store more images.
                    more = min(event["killed_at_processed"] + 5, prepared["good"])
                    event["carried_on"] = wait_for(proc, more) if more > event["killed_at_processed"] else (
                        proc.wait(600) == 0)  # nothing left to detect: the run must finish the night
                    event["processed_after_restart"] = processed()
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            else:
                event["note"] = "finished before the kill"
            event["exit"] = proc.returncode
            event["processed_so_far"] = processed()
            events.append(event)
            shown = {k: v for k, v in event.items() if k not in ("run", "target")}
            print(f"run {n:>2}: {target:<13} {json.dumps(shown)}", flush=True)
        finals = []
        for label in ("full run", "repeat"):
            proc = run_nightly(env, prepared["images"], gt, exports, log)
            finals.append({"run": label, "exit": proc.wait(1800)})
            print(f"{label}: exit {finals[-1]['exit']}", flush=True)
    result = count(watcher, prepared, exports)
    from fdb.server import EmbeddedMongo

    EmbeddedMongo(args.home / "store" / "mongodb").stop()
    lost = sum(result["lost"].values())
    duplicated = sum(result["duplicated"].values())
    batches = result["batches_for_the_night"]
    summary = {"lost": lost, "duplicated": duplicated, "batches_per_night": batches["in_fdb"],
               "read_from_outside": result["read_from_outside"],
               "target_met": lost == 0 and duplicated == 0 and batches["in_fdb"] == batches["in_the_queue"] == 1
               and result["read_from_outside"] == 0 and all(f["exit"] == 0 for f in finals)
               and all(e.get("carried_on", True) for e in events)}
    out = {"machine": platform.node(), "minutes": round((time.monotonic() - start) / 60, 1),
           "folder": {"pool_scenes": args.pool, "good": prepared["good"], "duplicates": prepared["duplicates"],
                      "bad": prepared["bad"], "link_out": 1},
           "kills": {"nightly": args.kills, "mongod": args.db_kills,
                     "mongod_runs_carried_on": [e.get("carried_on") for e in events if e["target"] == "mongod"]},
           "events": events, "finals": finals,
           "counts": result, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({"counts": {k: v for k, v in result.items() if k != "quarantined"}, "summary": summary},
                     indent=1))


if __name__ == "__main__":
    main()
