"""Mining on a hand-made haystack: error records, exclusions, merge and budget, near-duplicates, provenance,
determinism, the random arm, the montage, and dimension checks."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest
from bson import ObjectId
from PIL import Image

from fdb import detections as detection_store
from fdb.images import eligible_among, eligible_pool_ids, pool_generation, random_draw, random_key
from fdb.pool_index import update_pool_index
from fdb.runs import start_run
from mining.config import MatchConfig as MatchParams
from mining.config import MiningConfig
from mining.model_errors import find_errors
from mining.montage import query_montage
from mining.queries import Query, build_queries
from mining.selection import random_selection, select_for_queries
from records import BOX_LAYER, IMAGE_LAYER, Detection
from records.coco import load_coco

MODEL = "m1"
DIM = 16


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture()
def haystack(fdb, tmp_path):
    """Ten pool images with one detection each. p0-p2 look like direction A, p3-p4 like B, the rest random.
    p5 is labelled, p6 quarantined, p7 already exported, p8 is p0's exact copy (same sha256)."""
    rng = np.random.default_rng(0)
    a, b = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    looks = {0: a, 1: a, 2: a, 3: b, 4: b, 5: a, 6: a, 7: a, 8: a}
    ids = []
    for i in range(10):
        path = tmp_path / f"p{i}.png"
        Image.new("RGB", (64, 48), (20 * i, 100, 100)).save(path)
        image_id = ObjectId()
        ids.append(image_id)
        fdb.images.insert_one({"_id": image_id, "uri": str(path), "sha256": "same" if i in (0, 8) else f"h{i}",
                               "split": "pool", "labelled": i == 5, "status": "quarantined" if i == 6 else "ok",
                               "processed_by": [MODEL], "width": 64, "height": 48})
        detection_store.write_detections(fdb, MODEL, [Detection(0, [10.0, 10.0, 20.0, 20.0], 0.9, 1, "stop_sign",
                                                                image_id=image_id)])
        base = looks.get(i, unit(rng.standard_normal(DIM)))
        vec = unit(base + 0.05 * (i + 1) * unit(rng.standard_normal(DIM)))[None]
        fdb.write_features(MODEL, BOX_LAYER, [detection_store.detection_id(image_id, MODEL, 0)], vec,
                           image_ids=[image_id])
        fdb.write_features(MODEL, IMAGE_LAYER, [image_id], unit(rng.standard_normal(DIM))[None] if i != 8 else
                           fdb.read_vectors(MODEL, IMAGE_LAYER, owner_ids=[ids[0]]).vectors,
                           owner_kind="image")
    fdb.selections.insert_one({"selection_id": "old", "image_id": ids[7], "export_id": "batch-1"})
    source = ObjectId()
    queries = [Query(ObjectId(), "fp_background", "stop_sign", source, "detection", a, None, [0, 0, 8, 8]),
               Query(ObjectId(), "fp_background", "stop_sign", source, "detection", unit(a + 0.01), None, [0, 0, 8, 8]),
               Query(ObjectId(), "fp_wrong_class", "car", source, "detection", b, None, [0, 0, 8, 8])]
    Image.new("RGB", (64, 48), (200, 0, 0)).save(tmp_path / "source.png")
    fdb.images.insert_one({"_id": source, "uri": str(tmp_path / "source.png"), "split": "val", "labelled": True,
                           "status": "ok", "processed_by": [MODEL]})
    update_pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx", backend="exact")  # the step before mining
    return ids, queries


def test_pool_excludes_labelled_quarantined_and_exported(fdb, haystack):
    ids, _ = haystack
    expected = {ids[i] for i in (0, 1, 2, 3, 4, 8, 9)}
    assert {ObjectId(bytes(i).ljust(12, b"\0")) for i in eligible_pool_ids(fdb, MODEL)} == expected
    assert set(eligible_among(fdb, MODEL, ids)) == expected  # the question a query's neighbours ask


def test_merge_budget_duplicates_provenance_and_determinism(fdb, haystack, tmp_path):
    ids, queries = haystack
    # Ranked by hits: an image more queries reach comes first (the default splits the budget by cost instead).
    config = MiningConfig(k=3, budget=4, backend="exact", budget_split="hits")
    sel = select_for_queries(fdb, MODEL, queries, config, index_root=tmp_path / "idx")
    chosen = [img.image_id for img in sel.images]
    # Hit by both A-queries first, then B; p8 (a copy of p0) collapsed; the budget caps at 4.
    assert len(chosen) == 4 and set(chosen[:3]) == {ids[0], ids[1], ids[2]} and chosen[3] in (ids[3], ids[4])
    assert ids[8] not in chosen and ids[5] not in chosen and ids[6] not in chosen and ids[7] not in chosen
    top = sel.images[0]
    assert top.hits == 2 and {q.type for q in top.queries} == {"fp_background"}
    assert all(q.source_image_id == queries[0].source_image_id for q in top.queries)
    assert "2 error queries" in top.reason
    stored = list(fdb.selections.find({"selection_id": sel.selection_id}).sort("rank", 1))
    assert [d["image_id"] for d in stored] == chosen
    assert stored[0]["index_versions"][BOX_LAYER] == sel.index_versions[BOX_LAYER]
    assert fdb.indexes.count_documents({}) == 1

    again = select_for_queries(fdb, MODEL, queries, config, index_root=tmp_path / "idx")
    assert again.selection_id == sel.selection_id and [i.image_id for i in again.images] == chosen
    assert fdb.selections.count_documents({"selection_id": sel.selection_id}) == 4
    assert fdb.indexes.count_documents({}) == 1  # same pool, same model: the index was reused

    montage = query_montage(fdb, queries, sel.neighbours, tmp_path / "montage.png")
    with Image.open(montage) as im:
        assert im.width > 96 * 4 and im.height > 96 * 3


def test_class_filter_and_random_arm(fdb, haystack, tmp_path):
    ids, queries = haystack
    only_cars = select_for_queries(fdb, MODEL, [q for q in queries if q.category_name == "car"],
                                   MiningConfig(k=2, budget=10, backend="exact"), index_root=tmp_path / "idx")
    assert {img.image_id for img in only_cars.images} == {ids[3], ids[4]}
    rnd = random_selection(fdb, MODEL, budget=3, seed=1)
    assert len(rnd) == 3 and {i.image_id for i in rnd.images} <= {ids[i] for i in (0, 1, 2, 3, 4, 8, 9)}
    assert random_selection(fdb, MODEL, budget=3, seed=1).selection_id == rnd.selection_id


def test_random_draw_is_an_indexed_uniform_reproducible_range(fdb):
    n = 2000
    docs = [{"_id": ObjectId(), "uri": f"img{i}.png", "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
             "split": "pool", "labelled": False, "status": "ok", "processed_by": [MODEL]} for i in range(n)]
    for doc in docs[: n // 2]:  # the other half was recorded before keys existed: the first draw gives them one
        doc["random_key"] = random_key(doc["sha256"])
    fdb.images.insert_many(docs)
    keys = np.array([random_key(d["sha256"]) for d in docs])
    assert ((keys >= 0) & (keys < 1)).all() and np.histogram(keys, bins=10, range=(0, 1))[0].min() > 0.7 * n / 10

    drawn, eligible = random_draw(fdb, MODEL, 50, seed=3)
    assert eligible == n and len(drawn) == 50 == len({d["_id"] for d in drawn})
    assert fdb.images.count_documents({"random_key": None}) == 0
    assert [d["_id"] for d in random_draw(fdb, MODEL, 50, seed=3)[0]] == [d["_id"] for d in drawn]  # reproducible
    assert {d["_id"] for d in random_draw(fdb, MODEL, 50, seed=4)[0]} != {d["_id"] for d in drawn}
    # Uniform: over many seeds every image is drawn, each about as often.
    times = Counter(d["_id"] for seed in range(800) for d in random_draw(fdb, MODEL, 50, seed=seed)[0])
    assert len(times) == n and max(times.values()) < 4 * 800 * 50 / n
    # Taken images are skipped, the range wraps round, and nothing is drawn twice.
    fdb.selections.insert_one({"selection_id": "old", "image_id": drawn[0]["_id"], "export_id": "batch-1"})
    everything, eligible = random_draw(fdb, MODEL, n, seed=3, exclude=[drawn[1]["_id"]])
    assert eligible == n - 2 == len(everything) == len({d["_id"] for d in everything})
    assert {drawn[0]["_id"], drawn[1]["_id"]}.isdisjoint(d["_id"] for d in everything)
    # Given the processed pool's count (as the pool's generation holds it), the eligible count is that less the
    # processed pool images that are not eligible, exactly: labelled, unreadable, a field missing.
    others = [{"labelled": True, "status": "ok"}, {"labelled": False, "status": "quarantined"},
              {"labelled": False, "status": "duplicate"}, {"labelled": True, "status": "quarantined"},
              {"labelled": False}, {"status": "ok"}, {}]
    fdb.images.insert_many([{"_id": ObjectId(), "uri": f"other{i}.png", "split": "pool", "processed_by": [MODEL],
                             "random_key": 0.5, **fields} for i, fields in enumerate(others)]
                           + [{"_id": ObjectId(), "uri": "val.png", "split": "val", "labelled": False, "status": "ok",
                               "processed_by": [MODEL]},
                              {"_id": ObjectId(), "uri": "unseen.png", "split": "pool", "labelled": False,
                               "status": "ok", "processed_by": ["another-model"]}])
    processed_pool = pool_generation(fdb, MODEL)["processed_pool"]
    assert processed_pool == n + len(others)
    counted = random_draw(fdb, MODEL, 5, seed=3, exclude=[drawn[1]["_id"]])[1]
    derived = random_draw(fdb, MODEL, 5, seed=3, exclude=[drawn[1]["_id"]], processed_pool=processed_pool)[1]
    assert counted == derived == n - 2


def test_query_of_wrong_dimension_is_refused(fdb, haystack, tmp_path):
    _, queries = haystack
    bad = [Query(ObjectId(), "fp_background", "x", queries[0].source_image_id, "detection", np.ones(8, np.float32))]
    with pytest.raises(ValueError, match=r"8.*16|16.*8"):
        select_for_queries(fdb, MODEL, bad, MiningConfig(k=2, budget=2, backend="exact"), index_root=tmp_path / "idx")


def test_find_errors_records_typed_errors_and_queries(fdb, tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "v1.png")
    gt = {"images": [{"id": 1, "file_name": "v1.png", "width": 200, "height": 100}],
          "categories": [{"id": 1, "name": "stop_sign"}, {"id": 3, "name": "car"}],
          "annotations": [{"id": 5, "image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 40], "iscrowd": 0},
                          {"id": 6, "image_id": 1, "category_id": 1, "bbox": [150, 10, 20, 20], "iscrowd": 0}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    coco = load_coco(tmp_path / "gt.json", image_dir=tmp_path)
    image_id = fdb.images.insert_one({"uri": str((tmp_path / "v1.png").resolve()), "split": "val", "labelled": True,
                                      "status": "ok", "processed_by": [MODEL]}).inserted_id
    dets = [Detection(0, [0.0, 0.0, 50.0, 40.0], 0.9, 3, "car", image_id=image_id),
            Detection(1, [90.0, 50.0, 20.0, 20.0], 0.8, 1, "stop_sign", image_id=image_id)]
    detection_store.write_detections(fdb, MODEL, dets)
    det_ids = [detection_store.detection_id(image_id, MODEL, r) for r in (0, 1)]
    fdb.write_features(MODEL, BOX_LAYER, det_ids, np.eye(2, DIM, dtype=np.float32), image_ids=[image_id] * 2)
    fdb.write_features(MODEL, IMAGE_LAYER, [image_id], np.ones((1, DIM), np.float32), owner_kind="image")

    report = find_errors(fdb, MODEL, coco, MatchParams())
    assert report.counts["fp_background"] == {"stop_sign": 1} and report.counts["miss"] == {"stop_sign": 1}
    assert fdb.errors.count_documents({}) == 2
    find_errors(fdb, MODEL, coco, MatchParams())
    assert fdb.errors.count_documents({}) == 2  # idempotent
    queries = build_queries(fdb, MODEL, report.errors)
    by_type = {q.type: q for q in queries}
    assert by_type["fp_background"].level == "detection" and by_type["fp_background"].vector[1] == 1.0
    assert by_type["miss"].level == "image"  # a miss has no detection: its image's vector
    assert "fp_background" in report.table()
    # What each type costs (TIDE, from the same stored detections): the car is found, the stop sign missed (AP 0)
    # beside a background detection. Asking nothing of the missed sign leaves the car alone: 0.5 -> 1.0; deleting
    # the background detection leaves the sign missed: it costs nothing.
    assert report.cost["miss"] == pytest.approx(0.5) and report.cost["fp_background"] == pytest.approx(0.0)
    assert "mAP cost" in report.table()
    # Beside it, the operating-point price: one background FP and one miss at the threshold, x their unit costs.
    rows = {line.split()[0]: line.split() for line in report.table(fp_cost=1.0, miss_cost=3.0).splitlines()}
    assert "op. cost" in report.table() and rows["fp_background"][-1] == "1" and rows["miss"][-1] == "3"
    assert rows["miss"][-2] == "0.5000"  # the mAP column stays beside it


def test_the_last_labelled_set_is_remembered(fdb):
    from mining.selection import last_labelled_set

    assert last_labelled_set(fdb) is None
    start_run(fdb, "mine_hard_cases", {"gt_json": "/a/old.json", "gt_images": "/a"})
    start_run(fdb, "mine_hard_cases", {"gt_json": "/b/val.json", "gt_images": "/b/images"})
    assert last_labelled_set(fdb) == ("/b/val.json", "/b/images")
