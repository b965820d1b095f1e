"""The pool index grows with the night instead of being rebuilt (fdb.pool_index), and mining asks it only about
images that may still be selected."""

from __future__ import annotations

import numpy as np
import pytest
from bson import ObjectId

from fdb import detections as detection_store
from fdb import images as image_store
from fdb.pool_index import pool_index
from mining.config import MiningConfig
from mining.queries import Query
from mining.selection import mine, pool_state, random_selection
from records import BOX_LAYER, IMAGE_LAYER, Detection

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
    built = pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx")
    assert built.rebuilt and len(built.index) == 30 and built.index.spec.backend == "exact"
    assert pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx").added == 0  # nothing new: the same index

    night = add_pool_images(fdb, tmp_path, rng.standard_normal((4, DIM)))
    grown = pool_index(fdb, MODEL, BOX_LAYER, tmp_path / "idx")
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
    small = pool_index(fdb, MODEL, IMAGE_LAYER, tmp_path / "idx", exact_threshold=50)
    assert small.index.spec.backend == "exact"
    add_pool_images(fdb, tmp_path, rng.standard_normal((20, DIM)))
    large = pool_index(fdb, MODEL, IMAGE_LAYER, tmp_path / "idx", exact_threshold=50)
    assert large.rebuilt and large.index.spec.backend == "hnsw" and len(large.index) == 60
    add_pool_images(fdb, tmp_path, rng.standard_normal((3, DIM)))
    grown = pool_index(fdb, MODEL, IMAGE_LAYER, tmp_path / "idx", exact_threshold=50)
    # The HNSW main is left as saved: the night's vectors sit beside it in an exact side index.
    assert grown.added == 3 and not grown.rebuilt and grown.index.spec.backend == "hnsw+exact"
    assert grown.index.main.spec.version == large.index.spec.version and grown.recent == 3


def test_mining_skips_exported_and_labelled_neighbours_without_a_rebuild(fdb, tmp_path):
    rng = np.random.default_rng(2)
    target = rng.standard_normal(DIM)
    # Five images near the query, nearest first, and twenty far away.
    near = np.stack([target + 0.05 * (i + 1) * rng.standard_normal(DIM) for i in range(5)])
    ids = add_pool_images(fdb, tmp_path, np.concatenate([near, 5 * rng.standard_normal((20, DIM))]))
    source = ObjectId()
    ranked = mine(fdb, MODEL, [query(target, source)], MiningConfig(k=5, budget=5, backend="exact"),
                  index_root=tmp_path / "idx")
    order = [img.image_id for img in ranked.images]
    assert set(order) == set(ids[:5])
    config = MiningConfig(k=2, budget=2, backend="exact")
    first = mine(fdb, MODEL, [query(target, source)], config, index_root=tmp_path / "idx")
    assert [img.image_id for img in first.images] == order[:2]
    # The two nearest leave the pool (one exported, one labelled): the same index serves, and the query still
    # gets k eligible neighbours, fetched from further down its list.
    fdb.selections.insert_one({"selection_id": "old", "image_id": order[0], "export_id": "batch-1"})
    image_store.mark_labelled(fdb, [fdb.images.find_one({"_id": order[1]})["uri"]], split="pool")
    second = mine(fdb, MODEL, [query(target, source)], config, index_root=tmp_path / "idx")
    assert [img.image_id for img in second.images] == order[2:4]
    assert second.index_versions == first.index_versions
    assert second.selection_id != first.selection_id  # another pool, another selection
    assert fdb.indexes.count_documents({"pool_key": {"$exists": True}}) == 1
    assert random_selection(fdb, MODEL, budget=30).images  # draws from what is eligible only
    assert {i.image_id for i in random_selection(fdb, MODEL, budget=30).images} == set(ids) - set(order[:2])


def test_the_nightly_state_key_follows_the_pool_not_its_size(fdb, tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
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
    assert pool_index(fdb, MODEL, layer, tmp_path / "idx") is None


def test_pool_ids_are_read_raw_and_sorted(fdb):
    ids = [ObjectId() for _ in range(2500)]
    fdb.images.insert_many([{"_id": i, "uri": str(i), "split": "pool", "labelled": False, "status": "ok",
                             "processed_by": [MODEL]} for i in reversed(ids)])
    got = image_store.eligible_pool_ids(fdb, MODEL)
    assert [bytes(x).ljust(12, b"\0") for x in got] == sorted(i.binary for i in ids)
    assert len(image_store.pool_image_ids(fdb, MODEL)) == 2500 and len(image_store.eligible_pool_ids(fdb, "m2")) == 0
