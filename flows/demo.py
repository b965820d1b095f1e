"""`dataengine demo`: the whole loop on the embedded synthetic street scenes, with the generator's ground truth
playing the annotation team.

seed training on a small labelled set -> detect over the unlabelled pool with feature taps -> mine hard cases
(errors on the labelled val set as queries) -> export the mined batch and a random batch of the same budget
(CVAT + COCO, local folder) -> the "team" labels them (the generator's ground truth, as a COCO file) -> import
the labels -> fine-tune the seed on each batch, and a control arm on no new data -> compare with pycocotools on the
superset, the subset without the query images and the query subset -> report (Markdown, HTML, plots) and the same
tables as Prefect artifacts. It runs as a Prefect flow; each step is a plain function call.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from annotation_export.export import export_batch
from annotation_export.importer import import_labels, labels_as_coco
from dataengine import config
from detectors.checkpoint import load_checkpoint
from detectors.compare import retrain_and_compare
from detectors.errors import ERROR_TYPES
from detectors.evaluate import format_table
from detectors.inference import detect_images
from detectors.pipeline import dataset_split, register, train_detector
from detectors.synthetic import generate
from fdb.mining import mine_hard_cases
from fdb.store import connect
from flows.report import errors_markdown, map_markdown, verdict_markdown, write_report

# The seed's labelled drives covered the suburbs (districts 0-3); the market districts, full of sign-like logos,
# balloons and bins, appear only in the val set and the unlabelled pool. Each arm is fine-tuned with two training
# seeds so the report can tell a difference from noise.
FULL = dict(train=150, val=100, pool=300, seed_steps=120, arm_steps=30, seeds=(0, 1), budget=40, k=20,
            oversample=4.0, hard_negatives=0.25, lr=2e-4, width=320, height=240, train_districts=(0, 1, 2, 3))
QUICK = dict(train=60, val=40, pool=80, seed_steps=40, arm_steps=12, seeds=(0,), budget=12, k=10,
             oversample=4.0, hard_negatives=0.25, lr=2e-4, width=320, height=240, train_districts=(0, 1, 2, 3))
QUERY_TYPES = ["fp_background", "fp_wrong_class"]


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


# Not log_prints: pycocotools prints its tables, which would flood the run's logs; the steps are logged instead.
@flow(name="demo")
def demo(quick: bool = False, progress: bool = True, sizes: dict | None = None, root: str | None = None) -> dict:
    """The whole loop; `sizes` overrides the FULL / QUICK sizes (tests run a tiny one; `data_seed` draws other
    scenes, for a check on data the fine-tuning recipe was not chosen on), `root` the work folder."""
    sizes = {**(QUICK if quick else FULL), **(sizes or {})}
    say = get_run_logger().info
    start = time.monotonic()
    fdb = connect()
    where = f"embedded mongod 127.0.0.1:{fdb.server.port} ({fdb.server.dbpath})" if fdb.server else "external MongoDB"
    say(f"feature database: {where}, database '{fdb.db.name}'")
    # One folder per configuration, so a re-run resumes (data, seed model) and a changed one starts clean.
    tag = hashlib.sha256(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:8]
    root = Path(root) if root else config.data_home() / "demo" / f"{'quick' if quick else 'full'}-{tag}"
    data_dir, work = root / "synthetic", root / "work"
    work.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "annotations" / "pool.json").is_file():
        say(f"1. generating synthetic street scenes into {data_dir} (labelled train set from districts "
              f"{sizes['train_districts']}; markets only in val and pool)")
        generate(data_dir, sizes["train"], sizes["val"], sizes["pool"], seed=sizes.get("data_seed", 0),
                 width=sizes["width"], height=sizes["height"], progress=progress,
                 train_districts=sizes["train_districts"])
    else:
        say(f"1. synthetic street scenes already in {data_dir}")
    train, val, pool = (dataset_split(data_dir, s) for s in ("train", "val", "pool"))

    seed_path = work / f"seed-{sizes['seed_steps']}.pt"
    if seed_path.is_file():
        seed = load_checkpoint(seed_path)
        register(fdb, seed)
        say(f"2. seed model {seed.version} already trained ({seed_path})")
    else:
        say(f"2. training the seed Mask R-CNN from scratch: {len(train)} labelled images, {sizes['seed_steps']} steps")
        seed, result, metrics = train_detector(train, val, steps=sizes["seed_steps"], out=seed_path, fdb=fdb,
                                               progress=progress, min_size=min(sizes["height"], 240),
                                               max_size=min(sizes["width"], 320))
        say(f"   {result.seconds / 60:.1f} min; val " + format_table(metrics["val"]).splitlines()[0])

    uris = [str(pool.image_path(i).resolve()) for i in pool.images]
    say(f"3. detecting with feature taps over the unlabelled pool ({len(uris)} images)")
    say("   " + str(detect_images(fdb, seed, uris, split="pool", source="demo", progress=progress)))

    say(f"4. mining: errors on the {len(val)} val images as queries, k={sizes['k']}, budget {sizes['budget']}")
    queried = QUERY_TYPES
    mined = mine_hard_cases(fdb, seed, val, k=sizes["k"], budget=sizes["budget"], types=queried, out_dir=work,
                            progress=progress)
    if not mined.queries:  # a seed without false positives: mine with every error instead
        queried = None
        mined = mine_hard_cases(fdb, seed, val, k=sizes["k"], budget=sizes["budget"], out_dir=work,
                                progress=progress)
    say("   " + mined.errors.table().replace("\n", "\n   "))
    say(f"   {len(mined.queries)} queries -> {len(mined.selection)} mined images; random arm {len(mined.random)}")

    say("5. export both batches (CVAT + COCO), the oracle labels them, import the labels")
    batches = {}
    for arm, selection in (("mined", mined.selection), ("random", mined.random)):
        exported = export_batch(fdb, selection.selection_id, work / "exports")
        batch_dir = Path(exported.location)
        labels = oracle_labels(batch_dir / "manifest.json", data_dir / "annotations" / "pool.json",
                               work / f"labels_{arm}.json")
        if fdb.db["labels"].find_one({"batch_id": exported.batch_id}) is None:
            import_labels(fdb, labels, exported.batch_id)
        batches[arm] = labels_as_coco(fdb, exported.batch_id, train.image_dir)
        say(f"   {arm}: batch {exported.batch_id} ({exported.counts.get('images', len(selection))} images) "
              f"-> {len(batches[arm][1])} labelled objects")

    seeds = tuple(sizes["seeds"])
    say(f"6. fine-tuning three arms from the seed (mined, random, control), {sizes['arm_steps']} steps each, "
          f"training seeds {list(seeds)}; new images drawn {sizes['oversample']:g}x as often, hard negatives "
          f"{sizes['hard_negatives']:.0%} of the background quota")
    val_uri_to_id = {str(val.image_path(i).resolve()): i for i in val.images}
    query_uris = {d["uri"] for d in fdb.images.find({"_id": {"$in": [q.source_image_id for q in mined.queries]}})}
    query_ids = sorted(val_uri_to_id[u] for u in query_uris if u in val_uri_to_id)
    (work / "query_images.json").write_text(json.dumps(query_ids))  # the query subset, for later comparisons
    comparison = retrain_and_compare(seed_path, train, batches, val, query_ids,
                                     steps=sizes["arm_steps"], work_dir=work / "arms", fdb=fdb,
                                     oversample=sizes["oversample"], hard_negatives=sizes["hard_negatives"],
                                     lr=sizes["lr"],
                                     seeds=seeds, progress=progress)

    pool_json = data_dir / "annotations" / "pool.json"
    precision = {"mined": hard_case_share([i["uri"] for i in mined.selection.images], pool_json),
                 "random": hard_case_share([i["uri"] for i in mined.random.images], pool_json),
                 "pool": hard_case_share(uris, pool_json)}
    minutes = (time.monotonic() - start) / 60
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    report = write_report(comparison, root / "reports" / stamp, "gaze data engine demo: mined vs random vs control", {
        "seed model": seed.version, "labelled train images": f"{len(train)} (districts {sizes['train_districts']})",
        "val images": len(val), "pool images": len(uris), "budget": sizes["budget"], "k": sizes["k"],
        "queried error types": ", ".join(queried or ["all"]),
        "fine-tuning steps per arm": sizes["arm_steps"], "training seeds per arm": len(seeds),
        "fine-tuning lr": sizes["lr"], "oversampling of new images": sizes["oversample"],
        "hard-negative share": sizes["hard_negatives"],
        "selection": mined.selection.selection_id, "random selection": mined.random.selection_id,
        "wall time (min)": round(minutes, 1)},
        montage=str(mined.montage) if mined.montage else None, hard_case_precision=precision,
        queried_types=queried or list(ERROR_TYPES))
    publish_artifacts(comparison, precision, queried or list(ERROR_TYPES), report)
    say("7. comparison (bbox/segm mAP, mean ± sd over training seeds):\n" + map_markdown(comparison))
    say(verdict_markdown(comparison, queried or list(ERROR_TYPES)))
    say("   hard-case precision: " + ", ".join(f"{k} {v['share']:.2f}" for k, v in precision.items()))
    say(f"report: {report['html']}\n        {report['markdown']}")
    say(f"demo finished in {minutes:.1f} min")
    return {"report": str(report["html"]), "markdown": str(report["markdown"]), "json": str(report["json"]),
            "minutes": minutes, "hard_case_precision": precision, "queries": len(mined.queries)}


def publish_artifacts(comparison, precision: dict, queried: list[str], report: dict) -> None:
    """The report's tables in the Prefect UI, and a link to the full report with its plots."""
    create_markdown_artifact(key="demo-map", description="mAP by arm and evaluation subset",
                             markdown=verdict_markdown(comparison, queried) + "\n\n" + map_markdown(comparison))
    create_markdown_artifact(key="demo-errors", description="high-score errors by type, before and after",
                             markdown=errors_markdown(comparison))
    create_table_artifact(key="demo-hard-case-precision", description="share of each batch holding a look-alike",
                          table=[{"batch": k, **v} for k, v in precision.items()])
    create_link_artifact(key="demo-report", link=Path(report["html"]).resolve().as_uri(),
                         link_text="report (HTML, plots embedded)", description="the full demo report")


def run_demo(quick: bool = False, progress: bool = True) -> int:
    result = demo(quick=quick, progress=progress)
    print(f"\nreport: {result['report']}\n        {result['markdown']}\ndemo finished in {result['minutes']:.1f} min")
    return 0
