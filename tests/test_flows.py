"""Prefect flows against a real mongod: the nightly flow twice (no duplicates), and a crash part way that the next
run completes exactly once."""

from __future__ import annotations

import pytest
import torch
from prefect.testing.utilities import prefect_test_harness

from detectors.checkpoint import load_checkpoint, save_checkpoint
from detectors.model import build_model, preset_config
from detectors.pipeline import register
from detectors.synthetic import CATEGORIES, generate


@pytest.fixture(scope="module")
def prefect_backend():
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture()
def engine(mongod, fdb, tmp_path, monkeypatch):
    """A tiny dataset and an untrained tiny model registered in the test database the tasks connect to."""
    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    generate(data, n_train=0, n_val=3, n_pool=6, seed=5, width=128, height=96, progress=False)
    torch.manual_seed(0)
    cfg = preset_config("small", [c["name"] for c in CATEGORIES], min_size=96, max_size=128, box_score_thresh=0.0)
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg, "tiny-v1", "h"))
    register(fdb, checkpoint)
    return data


def counts(fdb):
    return {name: fdb.db[name].count_documents({}) for name in ("images", "detections", "features", "errors",
                                                                  "selections")}


def test_nightly_twice_adds_nothing_the_second_time(prefect_backend, engine, fdb):
    from flows.nightly import nightly

    args = dict(images=str(engine / "images"), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                k=3, budget=4)
    first = nightly(**args)
    after_first = counts(fdb)
    assert first["detect"]["processed"] == 6 and after_first["detections"] > 0
    second = nightly(**args)
    assert second["detect"]["processed"] == 0
    assert second["mine"]["selection_id"] == first["mine"]["selection_id"]
    assert counts(fdb) == after_first


def test_a_crash_part_way_is_completed_once_by_the_next_run(prefect_backend, engine, fdb, monkeypatch):
    import detectors.inference as inference
    from flows.nightly import detect, nightly

    monkeypatch.setattr(detect, "retry_delay_seconds", [0, 0, 0])
    real = inference.detect_with_features
    calls = {"n": 0}

    def crash_after_first_batch(*a):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("simulated crash")
        return real(*a)

    monkeypatch.setattr(inference, "detect_with_features", crash_after_first_batch)
    args = dict(images=str(engine / "images"), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                k=3, budget=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        nightly(**args)
    done_before = fdb.images.count_documents({"processed_by": "tiny-v1"})
    assert 0 < done_before < 6
    monkeypatch.setattr(inference, "detect_with_features", real)
    result = nightly(**args)
    assert result["detect"]["processed"] == 6 - done_before
    assert fdb.images.count_documents({"processed_by": "tiny-v1", "split": "pool"}) == 6
    # Exactly once: every detection and feature once, whatever the crash left behind.
    n_det = fdb.detections.count_documents({})
    assert fdb.features.count_documents({"owner_kind": "detection"}) == n_det
    assert fdb.features.count_documents({"owner_kind": "image"}) == fdb.images.count_documents({"processed_by": "tiny-v1"})
    assert len(fdb.detections.distinct("_id")) == n_det
