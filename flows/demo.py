"""`dataengine demo`: the whole loop on the embedded synthetic street scenes, with the generator's ground truth
playing the annotation team.

seed training on a small labelled set -> detect over the unlabelled pool with feature taps -> mine hard cases
(errors on the labelled val set as queries) -> export the mined batch and a random batch of the same budget
(CVAT + COCO, local folder) -> the "team" labels them (the generator's ground truth, as a COCO file) -> import
the labels -> fine-tune the seed on each batch, and a control arm on no new data -> compare with pycocotools on the
superset, the subset without the query images and the query subset -> report (Markdown, HTML, plots).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from annotation_export.export import export_batch
from annotation_export.importer import import_labels, labels_as_coco
from dataengine import config
from detectors.compare import retrain_and_compare
from detectors.evaluate import format_table
from detectors.inference import detect_images
from detectors.pipeline import dataset_split, register, train_detector
from detectors.checkpoint import load_checkpoint
from detectors.synthetic import generate
from fdb.mining import mine_hard_cases
from fdb.store import connect
from flows.report import map_markdown, write_report

FULL = dict(train=150, val=100, pool=300, seed_steps=150, arm_steps=60, budget=40, k=20)
QUICK = dict(train=60, val=40, pool=80, seed_steps=40, arm_steps=15, budget=12, k=10)


def oracle_labels(manifest: Path, pool_json: Path, out: Path) -> Path:
    """What the annotation team would send back: the generator's ground truth for the batch, as COCO."""
    rows = json.loads(manifest.read_text())
    rows = rows["images"] if isinstance(rows, dict) else rows
    gt = json.loads(pool_json.read_text())
    by_name = {im["file_name"]: im for im in gt["images"]}
    images, annotations = [], []
    for n, row in enumerate(rows, start=1):
        source = by_name[Path(row["uri"]).name]
        images.append({"id": n, "file_name": row["file_name"], "width": source["width"], "height": source["height"]})
        for ann in gt["annotations"]:
            if ann["image_id"] == source["id"]:
                annotations.append({**ann, "id": len(annotations) + 1, "image_id": n})
    out.write_text(json.dumps({"images": images, "annotations": annotations, "categories": gt["categories"]}))
    return out


def hard_case_share(uris: list[str], pool_json: Path) -> dict:
    meta = {im["file_name"]: im for im in json.loads(pool_json.read_text())["images"]}
    hits = sum(bool(meta[Path(u).name]["distractors"]) for u in uris)
    return {"images": len(uris), "hits": hits, "share": hits / max(1, len(uris))}


def run_demo(quick: bool = False, progress: bool = True) -> int:
    sizes = QUICK if quick else FULL
    start = time.monotonic()
    fdb = connect()
    where = f"embedded mongod 127.0.0.1:{fdb.server.port} ({fdb.server.dbpath})" if fdb.server else "external MongoDB"
    print(f"feature database: {where}, database '{fdb.db.name}'")
    root = config.data_home() / "demo" / ("quick" if quick else "full")
    data_dir, work = root / "synthetic", root / "work"
    work.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "annotations" / "pool.json").is_file():
        print(f"1. generating synthetic street scenes into {data_dir}")
        generate(data_dir, sizes["train"], sizes["val"], sizes["pool"], seed=0, progress=progress)
    else:
        print(f"1. synthetic street scenes already in {data_dir}")
    train, val, pool = (dataset_split(data_dir, s) for s in ("train", "val", "pool"))

    seed_path = work / f"seed-{sizes['seed_steps']}.pt"
    if seed_path.is_file():
        seed = load_checkpoint(seed_path)
        register(fdb, seed)
        print(f"2. seed model {seed.version} already trained ({seed_path})")
    else:
        print(f"2. training the seed Mask R-CNN from scratch: {len(train)} labelled images, {sizes['seed_steps']} steps")
        seed, result, metrics = train_detector(train, val, steps=sizes["seed_steps"], out=seed_path, fdb=fdb,
                                               progress=progress)
        print(f"   {result.seconds / 60:.1f} min; val " + format_table(metrics["val"]).splitlines()[0])

    uris = [str(pool.image_path(i).resolve()) for i in pool.images]
    print(f"3. detecting with feature taps over the unlabelled pool ({len(uris)} images)")
    print("   " + str(detect_images(fdb, seed, uris, split="pool", source="demo", progress=progress)))

    print(f"4. mining: errors on the {len(val)} val images as queries, k={sizes['k']}, budget {sizes['budget']}")
    mined = mine_hard_cases(fdb, seed, val, k=sizes["k"], budget=sizes["budget"],
                            types=["fp_background", "fp_wrong_class"], out_dir=work, progress=progress)
    if not mined.queries:  # a seed without false positives: mine with every error instead
        mined = mine_hard_cases(fdb, seed, val, k=sizes["k"], budget=sizes["budget"], out_dir=work,
                                progress=progress)
    print("   " + mined.errors.table().replace("\n", "\n   "))
    print(f"   {len(mined.queries)} queries -> {len(mined.selection)} mined images; random arm {len(mined.random)}")

    print("5. export both batches (CVAT + COCO), the oracle labels them, import the labels")
    batches = {}
    for arm, selection in (("mined", mined.selection), ("random", mined.random)):
        exported = export_batch(fdb, selection.selection_id, work / "exports")
        batch_dir = Path(exported.location)
        labels = oracle_labels(batch_dir / "manifest.json", data_dir / "annotations" / "pool.json",
                               work / f"labels_{arm}.json")
        existing = fdb.db["labels"].find_one({"batch_id": exported.batch_id})
        if existing is None:
            import_labels(fdb, labels, exported.batch_id)
        batches[arm] = labels_as_coco(fdb, exported.batch_id, train.image_dir)
        print(f"   {arm}: batch {exported.batch_id} ({exported.counts.get('images', len(selection))} images) "
              f"-> {len(batches[arm][1])} labelled objects")

    print(f"6. fine-tuning three arms from the seed, {sizes['arm_steps']} steps each (mined, random, control)")
    val_uri_to_id = {str(val.image_path(i).resolve()): i for i in val.images}
    query_uris = {d["uri"] for d in fdb.images.find({"_id": {"$in": [q.source_image_id for q in mined.queries]}})}
    comparison = retrain_and_compare(seed_path, train, batches, val, [val_uri_to_id[u] for u in query_uris
                                                                       if u in val_uri_to_id],
                                     steps=sizes["arm_steps"], work_dir=work / "arms", fdb=fdb, progress=progress)

    precision = {"mined": hard_case_share([i["uri"] for i in mined.selection.images], data_dir / "annotations" / "pool.json"),
                 "random": hard_case_share([i["uri"] for i in mined.random.images], data_dir / "annotations" / "pool.json"),
                 "pool": hard_case_share(uris, data_dir / "annotations" / "pool.json")}
    minutes = (time.monotonic() - start) / 60
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    report = write_report(comparison, root / "reports" / stamp, "gaze data engine demo: mined vs random vs control", {
        "seed model": seed.version, "labelled train images": len(train), "val images": len(val),
        "pool images": len(uris), "budget": sizes["budget"], "k": sizes["k"],
        "fine-tuning steps per arm": sizes["arm_steps"], "selection": mined.selection.selection_id,
        "random selection": mined.random.selection_id, "wall time (min)": round(minutes, 1)},
        montage=str(mined.montage) if mined.montage else None, hard_case_precision=precision)
    print("7. comparison (bbox/segm mAP):\n" + map_markdown(comparison))
    print("   hard-case precision: " + ", ".join(f"{k} {v['share']:.2f}" for k, v in precision.items()))
    print(f"report: {report['html']}\n        {report['markdown']}")
    print(f"demo finished in {minutes:.1f} min")
    return 0
