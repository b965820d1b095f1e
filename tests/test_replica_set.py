"""The engine on a 3-member replica set of real `mongod` processes on loopback: the nightly carries on when the
primary is killed mid-detection (an election, retryable writes), and a labels import is one transaction."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pymongo
import pytest

from fdb.server import SMALL_JOURNAL_ARGS, find_mongod, free_port
from mining.config import MiningConfig


@pytest.fixture(scope="module")
def replica_set(tmp_path_factory):
    """rs0: three mongod processes, elections after 1 s without a primary (the default is 10 s)."""
    root = tmp_path_factory.mktemp("rs")
    ports = [free_port() for _ in range(3)]
    procs = {}
    for i, port in enumerate(ports):
        dbpath = root / f"m{i}"
        dbpath.mkdir()
        procs[port] = subprocess.Popen(
            [str(find_mongod()), "--replSet", "rs0", "--dbpath", str(dbpath), "--bind_ip", "127.0.0.1", "--port",
             str(port), "--wiredTigerCacheSizeGB", "0.25", *SMALL_JOURNAL_ARGS,
             "--logpath", str(dbpath / "mongod.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Every member must answer before the set is initiated: its quorum check connects to all three, and on a busy
    # machine (CI's two cores) the second and third mongod were still starting ("Connection refused").
    members = [pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                                   serverSelectionTimeoutMS=30_000) for port in ports]
    deadline = time.monotonic() + 60
    for member in members:
        while True:
            try:
                member.admin.command("ping")
                break
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    first, others = members[0], members[1:]
    for member in others:
        member.close()
    first.admin.command("replSetInitiate", {
        "_id": "rs0", "members": [{"_id": i, "host": f"127.0.0.1:{p}"} for i, p in enumerate(ports)],
        "settings": {"electionTimeoutMillis": 1000, "heartbeatIntervalMillis": 500}})
    first.close()
    uri = f"mongodb://{','.join(f'127.0.0.1:{p}' for p in ports)}/?replicaSet=rs0"
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=60_000)
    client.admin.command("ping")  # waits for the first primary
    yield {"uri": uri, "procs": procs, "client": client}
    client.close()
    # Killed, not terminated: a throwaway set in a temporary folder has nothing to flush, and a terminated primary
    # first waits for a secondary to catch up (30 s of CI time at teardown).
    for proc in procs.values():
        proc.kill()
        proc.wait(20)


def primary_port(client) -> int:
    return int(client.admin.command("hello")["primary"].rsplit(":", 1)[1])


def test_the_nightly_carries_on_when_the_primary_is_killed_mid_detection(prefect_backend, engine, replica_set,
                                                                        tmp_path, monkeypatch):
    import detectors.inference as inference
    from detectors.checkpoint import load_checkpoint
    from fdb import StoreConfig, connect
    from flows.nightly import nightly
    from jobs.context import register_checkpoint

    db_name = f"rs_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATAENGINE_MONGODB_URI", replica_set["uri"])
    monkeypatch.setenv("DATAENGINE_DB", db_name)
    fdb = connect(StoreConfig(home=str(tmp_path / "home"), uri=replica_set["uri"], db_name=db_name))
    register_checkpoint(fdb, load_checkpoint(tmp_path / "m.pt"), first_is_production=True)
    real, killed = inference.detect_with_features, {}

    def kill_the_primary_on_the_second_batch(*a):
        if len(killed) == 0 and getattr(kill_the_primary_on_the_second_batch, "calls", 0) == 1:
            port = primary_port(replica_set["client"])
            os.kill(replica_set["procs"][port].pid, signal.SIGKILL)
            killed["port"] = port
        kill_the_primary_on_the_second_batch.calls = getattr(kill_the_primary_on_the_second_batch, "calls", 0) + 1
        return real(*a)

    monkeypatch.setattr(inference, "detect_with_features", kill_the_primary_on_the_second_batch)
    result = nightly(images=str(engine / "images"), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                     mining=MiningConfig(k=3, budget=4))
    assert killed and primary_port(replica_set["client"]) != killed["port"]  # an election happened
    assert result.detect.images_processed == 6 and result.export.images > 0
    n_det = fdb.detections.count_documents({})
    assert n_det > 0 and len(fdb.detections.distinct("_id")) == n_det
    assert fdb.features.count_documents({"owner_kind": "detection"}) == n_det
    assert fdb.images.count_documents({"processed_by": "tiny-v1", "split": "pool"}) == 6
    assert fdb.exports.count_documents({}) == 1
    again = nightly(images=str(engine / "images"), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                    mining=MiningConfig(k=3, budget=4))
    assert again.detect.images_processed == 0 and fdb.exports.count_documents({}) == 1
    assert fdb.detections.count_documents({}) == n_det


def test_a_labels_import_killed_on_a_replica_set_writes_nothing(replica_set, tmp_path, monkeypatch):
    """Inside the transaction: killed after its label documents were written, the import leaves none."""
    import fdb.images as image_store
    from annotation_export.importer import import_labels
    from fdb import FeatureDB
    from fdb import labels as label_store

    fdb = FeatureDB(replica_set["client"][f"rs_{uuid.uuid4().hex[:8]}"])
    image_id = fdb.images.insert_one({"uri": "/x/a.png", "width": 64, "height": 48, "status": "ok", "split": "pool",
                                      "labelled": False, "processed_by": []}).inserted_id
    fdb.exports.insert_one({"_id": "batch-rs", "status": "done", "images": [
        {"image_id": image_id, "file_name": "a.png", "uri": "/x/a.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "car"}], "category_map": {"1": 1}})
    labels = tmp_path / "labels.json"
    labels.write_text('{"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}], "annotations": '
                      '[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "area": 100, '
                      '"iscrowd": 0}], "categories": [{"id": 1, "name": "car"}]}')

    def killed(*args, **kwargs):
        assert fdb.labels.count_documents({}, session=kwargs["session"]) == 1  # written inside the transaction
        raise KeyboardInterrupt("killed mid-import")

    real = image_store.mark_label_version
    monkeypatch.setattr(image_store, "mark_label_version", killed)
    with pytest.raises(KeyboardInterrupt):
        import_labels(fdb, labels, "batch-rs")
    assert fdb.labels.count_documents({}) == 0 and label_store.latest_version(fdb, "batch-rs") is None
    monkeypatch.setattr(image_store, "mark_label_version", real)
    assert import_labels(fdb, labels, "batch-rs").label_version == 1
    assert fdb.labels.count_documents({}) == 1 and fdb.images.find_one({"_id": image_id})["label_version"] == 1
