"""The pool index grows with the night instead of being rebuilt (fdb.pool_index), and mining asks it only about
images that may still be selected."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from bson import ObjectId

from fdb import detections as detection_store
from fdb import images as image_store
from fdb import vector_index as fdb_index
from fdb import pool_index as pool_index_module
from fdb.vector_index import build_index, list_versions
from fdb.pool_index import PoolIndexBehind, merge_recent_index, pool_key, update_pool_index
from fdb.vectors import to_object_ids
from mining.config import MiningConfig
from mining.queries import Query
from mining.selection import pool_state, random_selection, select_for_queries
from records import BOX_LAYER, IMAGE_LAYER, Detection
from records.hashing import sha256_hex

MODEL = "m1"
DIM = 16
RNG = np.random.default_rng(42)


def add_pool_images(fdb, tmp_path, vectors: np.ndarray, split: str = "pool") -> list[ObjectId]:
    """One processed image per vector, each with one detection carrying it, as the detect task writes them."""
    ids = []
    for vec in vectors:
        image_id = ObjectId()
        ids.append(image_id)
        fdb.images.insert_one({"_id": image_id, "uri": str(tmp_path / f"{image_id}.png"), "sha256": str(image_id),
                               "split": split, "labelled": split != "pool", "status": "ok",
                               "processed_by": [MODEL]})
        detection_store.write_detections(fdb, MODEL, [Detection(0, [1.0, 1.0, 9.0, 9.0], 0.9, 1, "sign",
                                                                image_id=image_id)])
        fdb.write_features(MODEL, BOX_LAYER, [detection_store.detection_id(image_id, MODEL, 0)],
                           vec[None].astype(np.float32), image_ids=[image_id])
        # Image vectors of their own: near-identical ones would be collapsed as copies of one picture.
        fdb.write_features(MODEL, IMAGE_LAYER, [image_id], RNG.standard_normal((1, DIM)).astype(np.float32),
                           owner_kind="image")
    return ids


def query(vec, source) -> Query:
    return Query(ObjectId(), "fp_background", "sign", source, "detection", np.asarray(vec, np.float32), None,
                 [0, 0, 4, 4])


def test_the_pool_index_grows_by_the_night_and_keeps_its_centre(fdb, tmp_path):
    rng = np.random.default_rng(0)
    first = add_pool_images(fdb, tmp_path, rng.standard_normal((30, DIM)))
    add_pool_images(fdb, tmp_path, rng.standard_normal((5, DIM)), split="val")  # the labelled set: not the pool
    built = update_pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx")
    assert built.rebuilt and len(built.index) == 30 and built.index.spec.backend == "exact"
    assert update_pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx").added == 0  # nothing new: the same index

    night = add_pool_images(fdb, tmp_path, rng.standard_normal((4, DIM)))
    grown = update_pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx")
    assert grown.added == 4 and not grown.rebuilt and len(grown.index) == 34
    np.testing.assert_array_equal(grown.centre, built.centre)  # queries stay comparable with the first vectors
    # The night's vectors are found, centred on the same mean as the first ones.
    found = fdb.read_vectors(MODEL, BOX_LAYER, image_ids=night)
    ids, _ = grown.index.query(found.vectors - grown.centre, 1)
    assert set(ids[:, 0]) == set(found.owner_ids)
    records = list(fdb.indexes.find({"pool_key": {"$exists": True}}))
    assert len(records) == 2 and sorted(r["added"] for r in records) == [4, 30]
    assert len(first) == 30


def test_an_exact_pool_index_becomes_hnsw_once_it_is_large(fdb, tmp_path):
    rng = np.random.default_rng(1)
    add_pool_images(fdb, tmp_path, rng.standard_normal((40, DIM)))
    small = update_pool_index(fdb, MODEL, IMAGE_LAYER, tmp_path / "idx", exact_threshold=50)
    assert small.index.spec.backend == "exact"
    add_pool_images(fdb, tmp_path, rng.standard_normal((20, DIM)))
    large = update_pool_index(fdb, MODEL, IMAGE_LAYER, tmp_path / "idx", exact_threshold=50)
    assert large.rebuilt and large.index.spec.backend == "hnsw" and len(large.index) == 60
    add_pool_images(fdb, tmp_path, rng.standard_normal((3, DIM)))
    grown = update_pool_index(fdb, MODEL, IMAGE_LAYER, tmp_path / "idx", exact_threshold=50)
    # The HNSW main is left as saved: the night's vectors sit beside it in an exact side index.
    assert grown.added == 3 and not grown.rebuilt and grown.index.spec.backend == "hnsw+exact"
    assert grown.index.main.spec.version == large.index.spec.version and grown.recent == 3


def test_mining_skips_exported_and_labelled_neighbours_without_a_rebuild(fdb, tmp_path):
    rng = np.random.default_rng(2)
    target = rng.standard_normal(DIM)
    # Five images near the query, nearest first, and twenty far away.
    near = np.stack([target + 0.05 * (i + 1) * rng.standard_normal(DIM) for i in range(5)])
    ids = add_pool_images(fdb, tmp_path, np.concatenate([near, 5 * rng.standard_normal((20, DIM))]))
    update_pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx", backend="exact")  # the step before mining
    source = ObjectId()
    ranked = select_for_queries(fdb, MODEL, [query(target, source)], MiningConfig(k=5, budget=5, backend="exact"),
                                index_root=tmp_path / "idx")
    order = [img.image_id for img in ranked.images]
    assert set(order) == set(ids[:5])
    config = MiningConfig(k=2, budget=2, backend="exact")
    first = select_for_queries(fdb, MODEL, [query(target, source)], config, index_root=tmp_path / "idx")
    assert [img.image_id for img in first.images] == order[:2]
    # The two nearest leave the pool (one exported, one labelled): the same index serves, and the query still
    # gets k eligible neighbours, fetched from further down its list.
    fdb.selections.insert_one({"selection_id": "old", "image_id": order[0], "export_id": "batch-1"})
    image_store.mark_labelled(fdb, [fdb.images.find_one({"_id": order[1]})["uri"]], split="pool")
    second = select_for_queries(fdb, MODEL, [query(target, source)], config, index_root=tmp_path / "idx")
    assert [img.image_id for img in second.images] == order[2:4]
    assert second.index_versions == first.index_versions
    assert second.selection_id != first.selection_id  # another pool, another selection
    assert fdb.indexes.count_documents({"pool_key": {"$exists": True}}) == 1
    assert random_selection(fdb, MODEL, budget=30).images  # draws from what is eligible only
    assert {i.image_id for i in random_selection(fdb, MODEL, budget=30).images} == set(ids) - set(order[:2])


def test_ranking_only_reads_the_index_and_refuses_one_behind_the_pool(fdb, tmp_path):
    """The index grows at its upkeep, a step of its own before mining, not as ranking asks for it: a ranking that
    finds it missing or behind the pool refuses, naming the step; vectors that are not the pool's (the labelled
    set's) leave it up to date."""
    rng = np.random.default_rng(5)
    add_pool_images(fdb, tmp_path, rng.standard_normal((4, DIM)))
    config, root = MiningConfig(k=2, budget=2, backend="exact"), tmp_path / "idx"
    queries = [query(rng.standard_normal(DIM), ObjectId())]
    with pytest.raises(PoolIndexBehind, match="no pool index .*bring the pool index up to date"):
        select_for_queries(fdb, MODEL, queries, config, index_root=root)
    update_pool_index(fdb, MODEL, BOX_LAYER, root, backend="exact")
    assert len(select_for_queries(fdb, MODEL, queries, config, index_root=root)) == 2
    add_pool_images(fdb, tmp_path, rng.standard_normal((2, DIM)), split="val")  # the labelled set's vectors
    assert len(select_for_queries(fdb, MODEL, queries, config, index_root=root)) == 2
    saved = fdb.indexes.count_documents({})
    add_pool_images(fdb, tmp_path, rng.standard_normal((1, DIM)))  # a night's image, after the upkeep
    with pytest.raises(PoolIndexBehind, match="1 pool vectors written since its last upkeep"):
        select_for_queries(fdb, MODEL, queries, config, index_root=root)
    assert fdb.indexes.count_documents({}) == saved  # ranking wrote nothing
    assert update_pool_index(fdb, MODEL, BOX_LAYER, root, backend="exact").added == 1
    assert len(select_for_queries(fdb, MODEL, queries, config, index_root=root)) == 2


def test_only_a_query_whose_neighbours_left_the_pool_searches_further(fdb, tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    target, other = rng.standard_normal(DIM), rng.standard_normal(DIM)
    near = np.stack([target + 0.05 * (i + 1) * rng.standard_normal(DIM) for i in range(6)])
    ids = add_pool_images(fdb, tmp_path, np.concatenate([near, other + 0.05 * rng.standard_normal((3, DIM)),
                                                          5 * rng.standard_normal((20, DIM))]))
    for image_id in ids[:4]:  # the four nearest to `target` were exported on earlier nights
        fdb.selections.insert_one({"selection_id": "old", "image_id": image_id, "export_id": "batch-1"})
    update_pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx", backend="exact")
    asked = []
    real_query = fdb_index.ExactIndex.query
    monkeypatch.setattr(fdb_index.ExactIndex, "query",
                        lambda self, vectors, k, *rest: asked.append((len(vectors), k)) or
                        real_query(self, vectors, k, *rest))
    exhausted, untouched = query(target, ObjectId()), query(other, ObjectId())
    mined = select_for_queries(fdb, MODEL, [exhausted, untouched], MiningConfig(k=2, budget=4, backend="exact"),
                               index_root=tmp_path / "idx")
    assert [image_id for _, image_id, _ in mined.neighbours[str(exhausted.error_id)]] == ids[4:6]
    assert {image_id for _, image_id, _ in mined.neighbours[str(untouched.error_id)]} <= set(ids[6:9])
    assert asked == [(2, 4), (1, 16)]  # both queries first, then only the one short of k, further down its list


def test_the_nightly_state_key_follows_the_pool_not_its_size(fdb, tmp_path):
    gt = sha256_hex("{}")  # the labelled set's bytes
    rng = np.random.default_rng(3)
    ids = add_pool_images(fdb, tmp_path, rng.standard_normal((3, DIM)))
    before = pool_state(fdb, MODEL, gt, {"k": 1})
    assert pool_state(fdb, MODEL, gt, {"k": 1}) == before
    add_pool_images(fdb, tmp_path, rng.standard_normal((1, DIM)))
    after_new_image = pool_state(fdb, MODEL, gt, {"k": 1})
    assert len({before, after_new_image, pool_state(fdb, MODEL, gt, {"k": 2})}) == 3
    # The night's own export does not make it a new night (that would queue a second batch).
    fdb.selections.insert_one({"selection_id": "s", "image_id": ids[0], "export_id": "b"})
    assert pool_state(fdb, MODEL, gt, {"k": 1}) == after_new_image


@pytest.mark.parametrize("layer", [BOX_LAYER, IMAGE_LAYER])
def test_no_vectors_no_index(fdb, tmp_path, layer):
    assert update_pool_index(fdb, MODEL, layer, tmp_path / "idx") is None


def test_pool_ids_are_read_raw_and_sorted(fdb):
    ids = [ObjectId() for _ in range(2500)]
    fdb.images.insert_many([{"_id": i, "uri": str(i), "split": "pool", "labelled": False, "status": "ok",
                             "processed_by": [MODEL]} for i in reversed(ids)])
    got = image_store.eligible_pool_ids(fdb, MODEL)
    assert [bytes(x).ljust(12, b"\0") for x in got] == sorted(i.binary for i in ids)
    assert len(image_store.pool_image_ids(fdb, MODEL)) == 2500 and len(image_store.eligible_pool_ids(fdb, "m2")) == 0


# ---------------------------------------------------------------------- a night beside a graph: the recent side index
GRAPH_AT = 100  # exact_threshold: a few hundred vectors make an HNSW main


def pool_vectors(fdb, centre):
    """Every pool vector of the box layer, centred as the pool index's, with its owner ids."""
    vs = fdb.read_vectors(MODEL, BOX_LAYER, image_ids=to_object_ids(image_store.pool_image_ids(fdb, MODEL)))
    return vs.vectors.astype(np.float32) - centre, vs.owner_ids


def recall_at_10(fdb, pool, queries) -> float:
    """The share of each query's exact 10 nearest pool vectors that `pool.index` returns."""
    vectors, ids = pool_vectors(fdb, pool.centre)
    exact = build_index(vectors, ids, MODEL, BOX_LAYER, backend="exact")
    want, _ = exact.query(queries, 10)
    got, _ = pool.index.query(queries, 10)
    return float(np.mean([len(set(w) & set(g)) / 10 for w, g in zip(want, got)]))


def night(fdb, tmp_path, rng, n: int, root, **kwargs):
    """`n` new pool images (and two labelled ones, not the pool's), then the pool index asked for."""
    ids = add_pool_images(fdb, tmp_path, rng.standard_normal((n, DIM)))
    add_pool_images(fdb, tmp_path, rng.standard_normal((2, DIM)), split="val")
    grown = update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT, **kwargs)
    return grown, set(fdb.read_vectors(MODEL, BOX_LAYER, image_ids=ids).owner_ids)


def directory_state(path: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in path.iterdir()}


def test_nights_beside_an_hnsw_main_leave_its_directory_alone(fdb, tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "idx"
    add_pool_images(fdb, tmp_path, rng.standard_normal((300, DIM)))
    built = update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT)
    assert built.index.spec.backend == "hnsw" and built.recent == 0
    main_dir = Path(fdb.indexes.find_one({"_id": built.index.spec.version})["path"])
    before = directory_state(main_dir)
    first, first_ids = night(fdb, tmp_path, rng, 7, root)
    second, second_ids = night(fdb, tmp_path, rng, 5, root)  # its range read overlaps the first night's rows
    assert (first.added, second.added) == (7, 5) and second.recent == 12 and not second.merge_due
    assert second.index.main.spec.version == built.index.spec.version and len(second.index) == 312
    assert list_versions(root, pool_key(MODEL, BOX_LAYER, "auto")) == [built.index.spec.version]
    assert directory_state(main_dir) == before  # not one file of the main rewritten
    assert set(second.index.recent.ids) == first_ids | second_ids
    side = fdb.indexes.find_one({"pool_key": pool_key(MODEL, BOX_LAYER, "auto") + "-recent"},
                                sort=[("created_at", -1)])
    assert side["base_version"] == built.index.spec.version and side["n"] == 12
    np.testing.assert_array_equal(np.frombuffer(side["centre"], np.float32), built.centre)
    again = update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT)  # nothing new: the same two parts
    assert again.added == 0 and again.index.spec.version == second.index.spec.version


def test_the_layered_index_answers_as_exact_search_over_the_whole_pool(fdb, tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "idx"
    add_pool_images(fdb, tmp_path, rng.standard_normal((300, DIM)))
    update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT)
    night(fdb, tmp_path, rng, 20, root)
    layered, _ = night(fdb, tmp_path, rng, 20, root)
    vectors, ids = pool_vectors(fdb, layered.centre)
    exact = build_index(vectors, ids, MODEL, BOX_LAYER, backend="exact")
    # Queries near the night's vectors as well as the first ones, so both parts answer.
    queries = np.concatenate([vectors[-30:], vectors[:30]]) + 0.1 * rng.standard_normal((60, DIM))
    want_ids, want_dist = exact.query(queries, 10)
    got_ids, got_dist = layered.index.query(queries, 10)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_dist, want_dist, atol=2e-3)  # the graph re-ranks with float16 vectors
    assert layered.index.check_query(queries, MODEL).shape == (60, DIM)


def test_the_merge_puts_the_side_into_the_main_once(fdb, tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "idx"
    add_pool_images(fdb, tmp_path, rng.standard_normal((300, DIM)))
    built = update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT)
    built_version = built.index.spec.version  # the merge grows the loaded main in place: a new version
    _, first_ids = night(fdb, tmp_path, rng, 15, root)
    _, second_ids = night(fdb, tmp_path, rng, 10, root)
    merged = merge_recent_index(fdb, MODEL, BOX_LAYER, root)
    recent_key = pool_key(MODEL, BOX_LAYER, "auto") + "-recent"
    assert merged.merged == 25 and merged.added == 25 and merged.recent == 0 and not merged.rebuilt
    assert merged.index.spec.backend == "hnsw" and merged.index.spec.version != built_version
    assert fdb.indexes.count_documents({"pool_key": recent_key}) == 0 and not (root / recent_key).exists()
    np.testing.assert_array_equal(merged.centre, built.centre)
    assert first_ids | second_ids <= set(merged.index.ids) and len(merged.index) == 325
    # The next night asks the merged main alone, and a side starts beside it again.
    asked = update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT)
    assert asked.index is merged.index and asked.added == 0
    queries = pool_vectors(fdb, merged.centre)[0][::5] + 0.1 * rng.standard_normal((65, DIM))
    assert recall_at_10(fdb, merged, queries) >= 0.99
    rebuilt = update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT, rebuild=True)
    assert set(rebuilt.index.ids) == set(merged.index.ids)
    assert recall_at_10(fdb, rebuilt, queries + merged.centre - rebuilt.centre) >= 0.99


def test_the_side_is_due_by_size_or_age_and_past_the_hard_limit_a_night_merges(fdb, tmp_path, monkeypatch):
    monkeypatch.setattr(pool_index_module, "RECENT_MIN", 6)
    monkeypatch.setattr(pool_index_module, "RECENT_SHARE", 0.0)  # merge limit 6, hard limit 24
    rng = np.random.default_rng(7)
    root = tmp_path / "idx"
    add_pool_images(fdb, tmp_path, rng.standard_normal((300, DIM)))
    built_version = update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT).index.spec.version
    small, _ = night(fdb, tmp_path, rng, 4, root)
    assert small.recent == 4 and not small.merge_due
    recent_key = pool_key(MODEL, BOX_LAYER, "auto") + "-recent"
    fdb.indexes.update_many({"pool_key": recent_key}, {"$set": {"opened_at": pool_index_module.utcnow()
                                                                - dt.timedelta(days=8)}})
    assert update_pool_index(fdb, MODEL, BOX_LAYER, root, exact_threshold=GRAPH_AT).merge_due  # a week old
    due, _ = night(fdb, tmp_path, rng, 6, root)
    assert due.recent == 10 and due.merge_due and due.index.main.spec.version == built_version
    merged, last_ids = night(fdb, tmp_path, rng, 15, root)  # 25 would sit beside the main: past 4 x 6
    assert merged.merged == 10 and merged.added == 15 and merged.recent == 0 and not merged.merge_due
    assert merged.index.spec.backend == "hnsw" and len(merged.index) == 325 and last_ids <= set(merged.index.ids)
    assert fdb.indexes.count_documents({"pool_key": recent_key}) == 0


def test_an_annoy_main_is_rebuilt_at_the_merge_not_at_night(fdb, tmp_path):
    rng = np.random.default_rng(8)
    root = tmp_path / "idx"
    add_pool_images(fdb, tmp_path, rng.standard_normal((200, DIM)))
    built = update_pool_index(fdb, MODEL, BOX_LAYER, root, backend="annoy")
    grown, _ = night(fdb, tmp_path, rng, 9, root, backend="annoy")
    assert not grown.rebuilt and grown.recent == 9 and grown.index.spec.backend == "annoy+exact"
    assert grown.index.main is built.index  # the forest as built: no rebuild for a night
    merged = merge_recent_index(fdb, MODEL, BOX_LAYER, root, backend="annoy")
    assert merged.rebuilt and merged.merged == 9 and len(merged.index) == 209 and merged.recent == 0


def test_reindex_merge_recent_from_the_cli(mongod, fdb, tmp_path, monkeypatch, capsys):
    from dataengine.cli import main
    from fdb import models as registry

    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    registry.register_model(fdb, MODEL, "m1.pt", ["sign"], {})
    root = tmp_path / "home" / "indexes"
    rng = np.random.default_rng(9)
    add_pool_images(fdb, tmp_path, rng.standard_normal((150, DIM)))
    for layer in (BOX_LAYER, IMAGE_LAYER):
        assert update_pool_index(fdb, MODEL, layer, root, exact_threshold=GRAPH_AT).index.spec.backend == "hnsw"
    add_pool_images(fdb, tmp_path, rng.standard_normal((4, DIM)))
    for layer in (BOX_LAYER, IMAGE_LAYER):
        assert update_pool_index(fdb, MODEL, layer, root, exact_threshold=GRAPH_AT).recent == 4
    assert main(["reindex", "--merge-recent", "--model", MODEL]) == 0
    out = capsys.readouterr().out
    assert out.count("merged 4 recent vectors (4 added to the main index); 154 pool vectors") == 2
    assert fdb.indexes.count_documents({"pool_key": {"$regex": "-recent$"}}) == 0
    assert main(["reindex", "--merge-recent", "--model", MODEL]) == 0
    assert capsys.readouterr().out.count("nothing recent to merge; 154 pool vectors") == 2
