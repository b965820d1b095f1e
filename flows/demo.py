"""`dataengine demo`: the loop on the embedded synthetic street scenes, as far as it is built.

Today: generate the scenes (once; they are kept in the data home), train the small Mask R-CNN from scratch on the
labelled split and evaluate it with pycocotools, then run it with feature taps over the unlabelled pool into the
feature database, and print what is where. Mining, export and the retrain comparison follow in later issues.
"""

from __future__ import annotations

import time

from dataengine import config
from detectors.evaluate import format_table
from detectors.inference import detect_images
from detectors.pipeline import dataset_split, train_detector
from detectors.synthetic import generate
from fdb.store import connect

FULL = {"train": 300, "val": 100, "pool": 600, "steps": 200}
QUICK = {"train": 120, "val": 40, "pool": 120, "steps": 60}


def run_demo(quick: bool = False) -> int:
    sizes = QUICK if quick else FULL
    start = time.monotonic()
    fdb = connect()
    where = f"embedded mongod 127.0.0.1:{fdb.server.port} ({fdb.server.dbpath})" if fdb.server else "external MongoDB"
    print(f"feature database: {where}, database '{fdb.db.name}'")

    data_dir = config.data_home() / "demo" / ("synthetic-quick" if quick else "synthetic")
    if not (data_dir / "annotations" / "pool.json").is_file():
        print(f"1. generating synthetic street scenes into {data_dir}")
        generate(data_dir, sizes["train"], sizes["val"], sizes["pool"], seed=0)
    else:
        print(f"1. synthetic street scenes already in {data_dir}")
    train_set, val_set = dataset_split(data_dir, "train"), dataset_split(data_dir, "val")

    print(f"2. training the small Mask R-CNN from scratch: {len(train_set)} images, {sizes['steps']} steps")
    checkpoint, result, metrics = train_detector(train_set, val_set, preset="small", steps=sizes["steps"], fdb=fdb)
    print(f"   {result.steps} steps in {result.seconds / 60:.1f} min; model version {checkpoint.version}")
    print("   evaluation on val:\n" + "\n".join("   " + line for line in format_table(metrics["val"]).splitlines()))

    pool = dataset_split(data_dir, "pool")
    uris = [str(pool.image_path(i).resolve()) for i in pool.images]
    print(f"3. detecting with feature taps over the unlabelled pool ({len(uris)} images)")
    report = detect_images(fdb, checkpoint, uris, split="pool", source="demo")
    print(f"   {report}")
    print("records per collection:", {k: v for k, v in fdb.counts().items() if v})
    print(f"demo finished in {(time.monotonic() - start) / 60:.1f} min")
    return 0
