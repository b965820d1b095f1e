"""The feature database against a real mongod: idempotency, shape checks, bulk reads, quarantine, reconnects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymongo
import pytest
from bson import ObjectId
from PIL import Image

from fdb import FeatureShapeError
from fdb import detections as detection_store
from fdb.images import ingest_images
from fdb.server import EmbeddedMongo
from records import Detection


def _png(path, size=(32, 24), color=(200, 30, 30)):
    Image.new("RGB", size, color).save(path)
    return str(path)


def test_reingest_same_images_leaves_one_record(fdb, tmp_path):
    uris = [_png(tmp_path / f"img{i}.png", color=(i, 0, 0)) for i in range(5)]
    first = ingest_images(fdb, uris, split="pool")
    assert (first.new, first.existing) == (5, 0)
    second = ingest_images(fdb, uris + uris[:2], split="pool")
    assert (second.new, second.existing) == (0, 5)
    assert fdb.images.count_documents({}) == 5
    doc = fdb.images.find_one({"uri": uris[0]})
    assert (doc["width"], doc["height"], doc["status"]) == (32, 24, "ok")
    assert len(doc["sha256"]) == 64


def test_unreadable_images_are_quarantined_with_reason_and_run_continues(fdb, tmp_path):
    good = _png(tmp_path / "good.png")
    truncated = tmp_path / "truncated.png"
    full = (tmp_path / "full.png")
    _png(full, size=(256, 256))
    Image.effect_noise((256, 256), 60).convert("RGB").save(full)
    truncated.write_bytes(full.read_bytes()[:2000])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a jpeg")
    missing = str(tmp_path / "missing.png")

    report = ingest_images(fdb, [good, str(truncated), str(text), missing])
    assert report.new == 4
    reasons = dict(report.quarantined)
    assert set(reasons) == {str(truncated), str(text), missing}
    assert "truncated" in reasons[str(truncated)]
    assert "not an image" in reasons[str(text)]
    assert "not found" in reasons[missing]
    assert fdb.images.find_one({"uri": good})["status"] == "ok"
    stored = fdb.images.find_one({"uri": str(truncated)})
    assert stored["status"] == "quarantined" and "truncated" in stored["reason"]
    assert fdb.counts()["images_quarantined"] == 3

    # Repairing the file brings it back on the next ingest, without a second record (other pixels than good.png,
    # which would make it a duplicate of that image).
    _png(truncated, color=(10, 200, 30))
    again = ingest_images(fdb, [str(truncated)])
    assert again.recovered == 1 and again.new == 0
    assert fdb.images.find_one({"uri": str(truncated)})["status"] == "ok"
    assert fdb.images.count_documents({"uri": str(truncated)}) == 1


def test_a_copy_of_a_known_image_is_a_duplicate_of_the_oldest_holder(fdb, tmp_path):
    # The duplicate check asks the store once per batch: each copy names the oldest readable image with its bytes,
    # never itself, and two copies in one batch are both duplicates.
    first = _png(tmp_path / "a.png", color=(1, 2, 3))
    other = _png(tmp_path / "b.png", color=(4, 5, 6))
    ingest_images(fdb, [first, other])
    copies = [str(tmp_path / name) for name in ("a copy.png", "a copy 2.png")]
    for copy in copies:
        Path(copy).write_bytes(Path(first).read_bytes())
    report = ingest_images(fdb, [*copies, _png(tmp_path / "c.png", color=(7, 8, 9)), first])
    assert sorted(report.duplicates) == sorted((copy, first) for copy in copies)
    for copy in copies:
        assert fdb.images.find_one({"uri": copy})["duplicate_of"] == first
    assert fdb.images.find_one({"uri": str(tmp_path / "c.png")})["status"] == "ok"
    assert fdb.images.find_one({"uri": first})["status"] == "ok"  # known: not read again, not its own copy


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_bulk_read_equals_what_was_written_bit_for_bit(fdb, dtype, monkeypatch):
    import fdb.vectors as vectors_module

    def per_document_decode(*args):  # the fast path must handle what write_features writes
        raise AssertionError("bulk read fell back to per-document decoding")

    monkeypatch.setattr(vectors_module, "decode_documents", per_document_decode)
    rng = np.random.default_rng(0)
    n, dim = 5003, 64  # not a multiple of the raw batch size
    vectors = rng.standard_normal((n, dim)).astype(dtype)
    owners = [ObjectId() for _ in range(n)]
    images = [ObjectId() for _ in range(n)]
    report = fdb.write_features("m1", "box_head.fc7", owners, vectors, image_ids=images)
    assert (report.inserted, report.existing, report.rejected) == (n, 0, [])

    got = fdb.read_vectors("m1", "box_head.fc7", batch_size=700)
    assert got.vectors.dtype == np.dtype(dtype)
    by_owner = {oid: i for i, oid in enumerate(owners)}
    order = [by_owner[o] for o in got.object_ids()]
    assert sorted(order) == list(range(n))
    assert got.vectors.tobytes() == vectors[order].tobytes()
    assert got.image_object_ids() == [images[i] for i in order]

    # A filter selects a subset.
    subset = fdb.read_vectors("m1", "box_head.fc7", filter={"image_id": {"$in": images[:10]}})
    assert sorted(subset.image_object_ids()) == sorted(images[:10])


def test_bulk_read_handles_ids_with_trailing_zero_bytes(fdb):
    owners = [ObjectId(b"\x01" * 11 + b"\x00"), ObjectId(b"\x00" * 12)]
    fdb.write_features("m1", "pool", owners, np.ones((2, 4), "float32"), owner_kind="image")
    assert sorted(fdb.read_vectors("m1", "pool").object_ids()) == sorted(owners)


def test_same_feature_written_twice_leaves_one_record(fdb):
    owners = [ObjectId() for _ in range(10)]
    vectors = np.arange(10 * 8, dtype="float32").reshape(10, 8)
    fdb.write_features("m1", "image.pool", owners, vectors, owner_kind="image")
    again = fdb.write_features("m1", "image.pool", owners, vectors, owner_kind="image")
    assert (again.inserted, again.existing) == (0, 10)
    assert fdb.features.count_documents({}) == 10
    # Another layer or model version for the same owner is a different feature.
    fdb.write_features("m2", "image.pool", owners[:3], vectors[:3], owner_kind="image")
    assert fdb.features.count_documents({}) == 13


def test_wrong_dimension_or_dtype_is_refused_naming_both_sizes(fdb):
    owners = [ObjectId() for _ in range(4)]
    fdb.write_features("m1", "box_head.fc7", owners, np.zeros((4, 1024), "float32"), image_ids=owners)
    with pytest.raises(FeatureShapeError, match=r"1024-d float32.*refused 512-d float32"):
        fdb.write_features("m1", "box_head.fc7", [ObjectId()], np.zeros((1, 512), "float32"), image_ids=owners[:1])
    with pytest.raises(FeatureShapeError, match=r"refused 1024-d float16"):
        fdb.write_features("m1", "box_head.fc7", [ObjectId()], np.zeros((1, 1024), "float16"), image_ids=owners[:1])
    with pytest.raises(FeatureShapeError, match="float32 or float16"):
        fdb.write_features("m1", "other", [ObjectId()], np.zeros((1, 8), "float64"), image_ids=owners[:1])
    # The check also holds for a fresh connection that has no cached shape.
    from fdb.store import FeatureDB

    with pytest.raises(FeatureShapeError, match="1024-d"):
        FeatureDB(fdb.db).write_features("m1", "box_head.fc7", [ObjectId()], np.zeros((1, 4), "float32"),
                                         image_ids=owners[:1])
    assert fdb.features.count_documents({}) == 4


def test_non_finite_vectors_are_rejected_and_reported(fdb):
    vectors = np.ones((3, 4), "float32")
    vectors[1, 2] = np.nan
    owners = [ObjectId() for _ in range(3)]
    report = fdb.write_features("m1", "l", owners, vectors, owner_kind="image")
    assert report.inserted == 2
    assert report.rejected == [(1, "vector holds NaN or infinity")]


def test_a_detection_with_a_non_finite_score_or_box_is_refused_and_nothing_written(fdb):
    image = ObjectId()
    good = Detection(0, [1.0, 2.0, 3.0, 4.0], 0.9, 1, "stop_sign", image_id=image)
    for bad in (Detection(1, [1.0, 2.0, 3.0, 4.0], float("nan"), 1, "stop_sign", image_id=image),
                Detection(1, [1.0, float("inf"), 3.0, 4.0], 0.8, 1, "stop_sign", image_id=image)):
        with pytest.raises(detection_store.NonFiniteDetection, match="must be finite"):
            detection_store.write_detections(fdb, "m1", [good, bad])
    assert fdb.detections.count_documents({}) == 0


def test_detections_are_idempotent(fdb):
    image = ObjectId()
    dets = [Detection(r, [1.0, 2.0, 3.0, 4.0], 0.9 - r / 10, 1, "stop_sign", image_id=image) for r in range(3)]
    assert detection_store.write_detections(fdb, "m1", dets).inserted == 3
    again = detection_store.write_detections(fdb, "m1", dets)
    assert (again.inserted, again.existing) == (0, 3)
    assert fdb.detections.find_one({"rank": 1})["_id"] == detection_store.detection_id(image, "m1", 1)
    # Read back as the same typed records, by rank.
    back = detection_store.read_detections(fdb, "m1", [image])
    assert [(d.rank, d.bbox, d.score, d.category_id) for d in back] == [(d.rank, d.bbox, d.score, 1) for d in dets]
    assert [d.id for d in back] == [detection_store.detection_id(image, "m1", r) for r in range(3)]
    assert [d.rank for d in detection_store.read_detections(fdb, "m1", [image], min_score=0.75)] == [0, 1]


def test_client_reconnects_after_server_restart(tmp_path):
    server = EmbeddedMongo(tmp_path / "db").start()
    try:
        client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=30_000)
        client.t.c.insert_one({"_id": 1, "v": "kept"})
        # Its journal is a few small files, not mongod's default 3 x 100 MB (a suite of such servers filled a disk).
        journal = sum(f.stat().st_size for f in (tmp_path / "db" / "journal").iterdir())
        assert 0 < journal <= 64 * 2**20, journal
        port = server.port
        assert server.stop()
        with pytest.raises(pymongo.errors.PyMongoError):
            pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=300).t.c.find_one({"_id": 1})
        restarted = EmbeddedMongo(tmp_path / "db", port=port).start()
        assert restarted.port == port
        # The old client picks the server up again without being recreated, and the data survived.
        assert client.t.c.find_one({"_id": 1})["v"] == "kept"
        client.t.c.insert_one({"_id": 2})
        assert client.t.c.count_documents({}) == 2
    finally:
        EmbeddedMongo(tmp_path / "db").stop()


def test_embedded_server_is_reused_when_running(tmp_path):
    first = EmbeddedMongo(tmp_path / "db").start()
    try:
        second = EmbeddedMongo(tmp_path / "db").start()
        assert second.port == first.port
        assert second.running()
    finally:
        assert first.stop()
    assert not EmbeddedMongo(tmp_path / "db").running()


def test_bulk_read_decodes_documents_of_another_layout(fdb):
    """A feature written by another tool (fields in another order) is still read, through the slow path."""
    owners = [ObjectId() for _ in range(20)]
    vectors = np.random.default_rng(1).standard_normal((20, 16)).astype("float32")
    fdb.write_features("m1", "l", owners[:19], vectors[:19], owner_kind="image")
    from bson import Binary

    fdb.features.insert_one({"vector": Binary(vectors[19].tobytes()), "layer": "l", "model_version": "m1",
                             "image_id": owners[19], "owner_id": owners[19], "extra": "field"})
    got = fdb.read_vectors("m1", "l")
    index = {o: i for i, o in enumerate(got.object_ids())}
    assert sorted(index) == sorted(owners)
    assert np.array_equal(got.vectors[[index[o] for o in owners]], vectors)


def test_a_database_written_before_a_field_was_renamed_reads_the_same(mongo_client):
    """`label_errors.labels_version` (a sha256) became `labels_sha256`: opening an old database renames the field
    and replaces its index, so its suspects are still found by their labelled set."""
    from fdb import FeatureDB
    from fdb import label_errors as suspect_store

    db = mongo_client[f"test_old_{ObjectId()}"]
    db.label_errors.insert_one({"_id": 1, "model_version": "m1", "labels_version": "abc", "suspicion": 0.9,
                                "is_label_error": True,
                                "params_key": "p"})
    db.label_errors.create_index([("model_version", 1), ("labels_version", 1), ("suspicion", -1)],
                                 name="model_labels_suspicion")
    try:
        fdb = FeatureDB(db)
        assert [s["_id"] for s in suspect_store.read_suspects(fdb, "m1", labels_sha256="abc")] == [1]
        assert "model_labels_suspicion" not in db.label_errors.index_information()
        assert db.label_errors.count_documents({"labels_version": {"$exists": True}}) == 0
        FeatureDB(db)  # a second open finds nothing to rename
    finally:
        mongo_client.drop_database(db.name)


def test_record_ids_are_the_ones_a_database_already_holds():
    """Ids are made from their parts by `records.hashing`; these digests were written by the code before it made
    them in one place, so a re-run over an existing database still finds its records instead of adding twins."""
    from annotation_export.batch import batch_id_for
    from fdb.images import random_key
    from fdb.vectors import feature_id
    from fdb.writes import stable_id

    assert str(stable_id("detection", ObjectId(b"abcdefghijkl"), "m1", 3)) == "7385a89aa55af27d0dc95a9f"
    assert feature_id(b"abcdefghijkl", "m1", "box_fc").hex() == "5958f535653cb1c1bcd93310"
    assert random_key("ab" * 32) == 0.023864573077171644
    assert batch_id_for("sel", ["b", "a"], "m1", 0.5) == "batch-83df9469501bf2a4"
