"""Faults a night brings: bad files, links out of the folder, and a run that stops at any step boundary. The nightly
runs for real (Prefect, a real mongod, the tiny model) and must end with every good image once, every bad one
quarantined with its reason, nothing read from outside its root, and exactly one batch per night."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from fdb.image_files import MAX_IMAGE_PIXELS, UnreadableImage, inspect_image
from mining.config import MiningConfig


def png_declaring(width: int, height: int) -> bytes:
    """A tiny file whose header declares width x height RGB pixels (a decompression bomb when large)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_the_decoder_refuses_what_it_cannot_decode_with_a_reason():
    with pytest.raises(UnreadableImage, match="too large to decode.*900000000 pixels"):
        inspect_image(png_declaring(30_000, 30_000))  # Pillow raises DecompressionBombError (no OSError) here
    with pytest.raises(UnreadableImage, match="above the engine's limit of 100 MP"):
        inspect_image(png_declaring(11_000, 10_000))  # 110 MP: Pillow would only warn
    with pytest.raises(UnreadableImage, match="empty file"):
        inspect_image(b"")
    with pytest.raises(UnreadableImage, match="not an image"):
        inspect_image(b"hello")
    with pytest.raises(UnreadableImage, match="corrupt image"):
        inspect_image(png_declaring(64, 64))  # a valid header over too little pixel data
    assert MAX_IMAGE_PIXELS == 100_000_000


def test_a_night_of_bad_files_quarantines_each_and_reads_nothing_outside(prefect_backend, engine, fdb, tmp_path):
    from flows.nightly import nightly

    images = engine / "images"
    (images / "pool_bomb.png").write_bytes(png_declaring(30_000, 30_000))
    (images / "pool_empty.png").write_bytes(b"")
    good = sorted(images.glob("pool_*.png"))[0]
    shutil.copy(good, images / "pool_straße 7 – copy.png")  # spaces, non-ASCII, and the same bytes as `good`
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(sorted(images.glob("pool_*.png"))[1], outside / "private.png")
    (outside / "private.png").write_bytes((outside / "private.png").read_bytes() + b"\x00")  # other bytes
    (images / "pool_link.png").symlink_to(outside / "private.png")
    (images / "pool_dir").symlink_to(outside, target_is_directory=True)

    result = nightly(images=str(images), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                     mining=MiningConfig(k=3, budget=4))
    reasons = dict(result.detect.quarantined)
    assert "too large to decode" in reasons[str((images / "pool_bomb.png").resolve())]
    assert "empty file" in reasons[str((images / "pool_empty.png").resolve())]
    assert result.detect.images_processed == 6 and result.export.images > 0
    # Nothing outside the root was read or registered.
    assert fdb.images.count_documents({"uri": {"$regex": "elsewhere|pool_link|pool_dir"}}) == 0
    # The same bytes under a second name: recorded as a duplicate, never detected, never mined.
    copy = fdb.images.find_one({"uri": str((images / "pool_straße 7 – copy.png").resolve())})
    assert copy["status"] == "duplicate" and copy["duplicate_of"] == str(good.resolve())
    assert copy["processed_by"] == []
    # A second run: nothing new, the quarantined are looked at again and stay quarantined, no new batch.
    again = nightly(images=str(images), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                    mining=MiningConfig(k=3, budget=4))
    assert again.export.batch_id == result.export.batch_id and fdb.exports.count_documents({}) == 1
    assert fdb.images.count_documents({"status": "quarantined"}) == 2


def test_a_name_with_spaces_and_non_ascii_letters_goes_through_detect_and_export(engine, fdb, tmp_path):
    from annotation_export.export import export_batch
    from detectors.checkpoint import load_checkpoint
    from fdb import selections as selection_store
    from records import SelectedImage, SelectionInfo
    from jobs.detect import detect_images

    folder = tmp_path / "night"
    folder.mkdir()
    name = folder / "Straße 7 – Kreuzung ö.png"
    shutil.copy(sorted((engine / "images").glob("pool_*.png"))[0], name)
    report = detect_images(fdb, load_checkpoint(tmp_path / "m.pt"), [str(name)], progress=False)
    assert report.images_processed == 1 and not report.quarantined
    doc = fdb.images.find_one({"uri": str(name)})
    selection_store.record_selection(fdb, SelectionInfo("sel-names", "mined", "tiny-v1"),
                                     [SelectedImage(doc["_id"], str(name), 1, "test")])
    batch = export_batch(fdb, "sel-names", tmp_path / "queue")
    exported = list((Path(batch.location) / "images").iterdir())
    assert len(exported) == 1 and exported[0].read_bytes() == name.read_bytes()
    manifest = json.loads((Path(batch.location) / "manifest.json").read_text(encoding="utf-8"))
    assert [im["uri"] for im in manifest["images"]] == [str(name)]


def test_an_s3_prefix_is_a_folder(s3env):
    from storage import list_images
    from storage import s3 as s3mod

    for key in ("night1/a.png", "night1/sub/b.png", "night10/c.png", "night1.png"):
        s3mod.put_bytes(b"x", f"s3://{s3env}/{key}")
    expected = [f"s3://{s3env}/night1/a.png", f"s3://{s3env}/night1/sub/b.png"]
    assert list_images(f"s3://{s3env}/night1") == expected
    assert list_images(f"s3://{s3env}/night1/") == expected
    assert len(list_images(f"s3://{s3env}")) == 4


# boundary -> (the step, whether it completes before the run dies)
BOUNDARIES = {
    "after detect": ("nightly_state", False),  # the night's state was never computed
    "after mine": ("mine", True),  # a selection exists, nothing recorded for the night
    "after the intent": ("record_export_intent", True),  # the night's selection is recorded, nothing exported
    "after export": ("export", True),  # the batch is out, the night not marked done
    "before the record": ("record_night", False),
}


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_a_night_ships_exactly_one_batch_however_the_run_ends(prefect_backend, engine, fdb, monkeypatch, boundary):
    """Before the night's selection was recorded, the engine shipped a second batch when a run died after its
    export (the next run mined the pool again, without the exported images)."""
    import flows.nightly as module

    name, completes = BOUNDARIES[boundary]
    real = getattr(module, name)

    def fail_after(*args, **kwargs):
        if completes:
            real(*args, **kwargs)
        raise RuntimeError(f"killed {boundary}")

    args = dict(images=str(engine / "images"), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                mining=MiningConfig(k=3, budget=4))
    monkeypatch.setattr(module, name, fail_after)
    with pytest.raises(RuntimeError, match="killed"):
        module.nightly(**args)
    monkeypatch.setattr(module, name, real)
    finished = module.nightly(**args)
    again = module.nightly(**args)
    assert fdb.exports.count_documents({}) == 1, boundary
    assert finished.export.batch_id == again.export.batch_id
    assert fdb.scheduled_runs.count_documents({"status": "done"}) == 1
    exported = fdb.exports.find_one({})
    assert exported["selection_id"] == finished.mine.selection_id


def test_the_embedded_mongod_killed_mid_run_is_restarted_and_the_night_carries_on(prefect_backend, engine, tmp_path,
                                                                                 monkeypatch):
    import os
    import signal

    import detectors.inference as inference
    from detectors.checkpoint import load_checkpoint
    from fdb import StoreConfig, connect
    from fdb.server import EmbeddedMongo
    from flows.nightly import nightly
    from jobs.context import register_checkpoint

    home = tmp_path / "own-home"
    monkeypatch.delenv("DATAENGINE_MONGODB_URI")  # the engine's own embedded server, under the data home
    monkeypatch.setenv("DATAENGINE_HOME", str(home))
    fdb = connect(StoreConfig(home=str(home), db_name=os.environ["DATAENGINE_DB"]), watch=False)
    register_checkpoint(fdb, load_checkpoint(tmp_path / "m.pt"), first_is_production=True)
    server = EmbeddedMongo(home / "mongodb")
    real, calls = inference.detect_with_features, {"n": 0}

    def kill_the_server_on_the_second_batch(*a):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(json.loads((home / "mongodb" / "dataengine-mongod.json").read_text())["pid"], signal.SIGKILL)
        return real(*a)

    monkeypatch.setattr(inference, "detect_with_features", kill_the_server_on_the_second_batch)
    # A handler on the logger itself: the flow's first run configures Prefect's logging, which replaces the root
    # handlers that `caplog` listens on when this test runs alone.
    warnings = logging.Handler(logging.WARNING)
    warnings.emit = lambda record: caught.append(record.getMessage())
    caught: list[str] = []
    logging.getLogger("fdb.server").addHandler(warnings)
    try:
        result = nightly(images=str(engine / "images"), pattern="pool_*",
                         gt_json=str(engine / "annotations" / "val.json"), mining=MiningConfig(k=3, budget=4))
        assert calls["n"] >= 2 and any("had died; restarted it" in message for message in caught)
        assert result.detect.images_processed == 6 and result.export.images > 0
        n_det = fdb.detections.count_documents({})
        assert fdb.images.count_documents({"processed_by": "tiny-v1", "split": "pool"}) == 6
        assert fdb.features.count_documents({"owner_kind": "detection"}) == n_det == len(fdb.detections.distinct("_id"))
        assert fdb.exports.count_documents({}) == 1
    finally:
        logging.getLogger("fdb.server").removeHandler(warnings)
        server.stop()


def test_an_external_database_that_is_gone_fails_fast_and_says_what_to_do(prefect_backend, tmp_path, capsys,
                                                                          monkeypatch):
    import time

    from dataengine.cli import main
    from fdb.server import free_port

    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATAENGINE_MONGODB_URI", f"mongodb://user:s3cret@127.0.0.1:{free_port()}/")
    start = time.monotonic()
    assert main(["fdb", "status"]) == 3
    err = capsys.readouterr().err
    assert time.monotonic() - start < 15
    assert "does not answer" in err and "DATAENGINE_MONGODB_URI" in err and "run the same command again" in err
    assert "s3cret" not in err and "user:***@127.0.0.1" in err
    # The nightly too: its first task meets the dead server and is not retried (three retries took minutes).
    (tmp_path / "night").mkdir()
    (tmp_path / "val.json").write_text('{"images": [], "annotations": [], "categories": []}')
    start = time.monotonic()
    assert main(["nightly", "--images", str(tmp_path / "night"), "--gt", str(tmp_path / "val.json")]) == 3
    assert time.monotonic() - start < 40
    err = capsys.readouterr().err
    assert "does not answer" in err and "s3cret" not in err


def test_an_s3_read_that_fails_is_retried_not_quarantined_and_a_vanished_object_is(fdb, s3env, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    from fdb.images import ingest_images
    from storage import s3 as s3mod

    uri = f"s3://{s3env}/night/a.png"
    s3mod.put_bytes(png_declaring(8, 8), uri)

    def network_down(*args, **kwargs):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    real = s3mod.read_s3_uri
    monkeypatch.setattr(s3mod, "read_s3_uri", network_down)
    with pytest.raises(EndpointConnectionError):  # the task's retry reads it again later
        ingest_images(fdb, [uri])
    assert fdb.images.count_documents({}) == 0
    monkeypatch.setattr(s3mod, "read_s3_uri", real)
    report = ingest_images(fdb, [f"s3://{s3env}/night/gone.png"])
    assert report.quarantined == [(f"s3://{s3env}/night/gone.png", f"file not found: s3://{s3env}/night/gone.png")]


def test_tasks_do_not_retry_a_database_that_stayed_away():
    """A server-selection timeout means the database did not answer for 30 s: retrying three more times only
    delays the message; any other failure goes to the task's retry policy."""
    from prefect.states import Failed
    from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

    from tasks.retries import worth_retrying

    from fdb import StoreUnavailable

    assert not worth_retrying(None, None, Failed(data=ServerSelectionTimeoutError("no servers")))
    assert not worth_retrying(None, None, Failed(data=StoreUnavailable("the feature database does not answer")))
    assert worth_retrying(None, None, Failed(data=AutoReconnect("primary stepped down")))
    assert worth_retrying(None, None, Failed(data=OSError("disk busy")))
