"""A new model reaches the archive (`dataengine rollout`): re-detected on a local Dask cluster, killed mid-way and
resumed without loss or duplicates, then handed production; the old model's listing marks carried over."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from test_dask import BIN, user_env

# Enough images that the kill, after 6 of them, falls mid-way on two workers taking chunks of 4 (160 took CI
# minutes of the same work; 64 in chunks of 8, a minute).
ARCHIVE = 32
KILL_AFTER = 6


def _tiny_candidate(tmp_path, fdb, version: str):
    import torch

    from detectors.checkpoint import load_checkpoint, save_checkpoint
    from detectors.model import build_model, preset_config
    from detectors.synthetic import CATEGORIES
    from jobs.context import register_checkpoint

    torch.manual_seed(1)
    cfg = preset_config("small", [c["name"] for c in CATEGORIES], min_size=96, max_size=128, box_score_thresh=0.0,
                        box_detections_per_img=20)
    register_checkpoint(fdb, load_checkpoint(save_checkpoint(tmp_path / f"{version}.pt", build_model(cfg), cfg,
                                                             version, "h")))


def _rollout(tmp_path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dataengine"), "rollout", "--model", "tiny-v2", "--dask-workers", "2",
                             "--chunk-size", "4", "--commit-every", "2", "--min-score", "0.5", "--no-progress",
                             *extra], cwd=tmp_path, env=user_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_a_rollout_killed_mid_way_resumes_on_two_dask_workers_and_hands_production_over(engine, fdb, tmp_path):
    from detectors.synthetic import generate
    from fdb import models as registry
    from fdb.images import ingest_images
    from storage import list_images

    archive = tmp_path / "archive"
    generate(archive, n_train=0, n_val=0, n_pool=ARCHIVE, seed=9, width=128, height=96, progress=False)
    uris = list_images(archive / "images")
    assert ingest_images(fdb, uris).new == ARCHIVE
    _tiny_candidate(tmp_path, fdb, "tiny-v2")

    run = _rollout(tmp_path)
    deadline = time.monotonic() + 240
    while fdb.images.count_documents({"processed_by": "tiny-v2"}) < KILL_AFTER and run.poll() is None:
        assert time.monotonic() < deadline, "the rollout processed nothing in 4 minutes"
        time.sleep(0.05)
    if run.poll() is not None:  # it ended before the kill: say why rather than fail on the kill
        out, err = run.communicate()
        raise AssertionError(f"the rollout ended (rc {run.returncode}) before the kill:\n{out[-2000:]}{err[-2000:]}")
    os.killpg(run.pid, signal.SIGKILL)  # the command and its Dask workers, mid-way
    run.wait(timeout=30)
    at_kill = fdb.images.count_documents({"processed_by": "tiny-v2"})
    assert 0 < at_kill < ARCHIVE, at_kill
    assert registry.production_version(fdb) == "tiny-v1"  # the old model serves until the rollout is complete

    resumed = _rollout(tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:] + err[-3000:]
    assert f"passes [{ARCHIVE - at_kill}, 0]" in out, out  # only what the kill left, then nothing nights added
    assert fdb.images.count_documents({"processed_by": "tiny-v2"}) == ARCHIVE
    # Exactly once: one image vector per image, one vector per detection, however the kill fell.
    n_det = fdb.detections.count_documents({"model_version": "tiny-v2"})
    assert fdb.features.count_documents({"model_version": "tiny-v2", "owner_kind": "image"}) == ARCHIVE
    assert fdb.features.count_documents({"model_version": "tiny-v2", "owner_kind": "detection"}) == n_det
    assert registry.production_version(fdb) == "tiny-v2"
    assert registry.promotions(fdb)[-1]["why"] == "rollout: the archive re-detected"
    assert "production: tiny-v1 -> tiny-v2" in out
    # With no Prefect API configured, the flow's temporary server is the workers' too: one server, not one each.
    assert err.count("Starting temporary server") == 1, err[-3000:]


def test_a_rollout_carries_the_listing_marks_and_catches_up_with_the_nights(fdb):
    from fdb import listings
    from fdb.images import backlog, mark_processed

    listings.advance(fdb, listings.listing_key("/night", "*", "v1"), 1234, listed=3, scanned=3)
    listings.advance(fdb, listings.listing_key("/other|x", "*.png", "v1"), 99, listed=1, scanned=1)
    listings.advance(fdb, listings.listing_key("/night", "*", "v0"), 5, listed=1, scanned=1)
    assert listings.carry_marks(fdb, "v1", "v2") == 2
    assert listings.carry_marks(fdb, "v1", "v2") == 0  # a mark the new model has is never overwritten
    assert listings.since(fdb, listings.listing_key("/night", "*", "v2")) == \
        listings.since(fdb, listings.listing_key("/night", "*", "v1"))
    assert fdb.listings.find_one({"_id": listings.listing_key("/other|x", "*.png", "v2")})["mark"] == 99

    fdb.images.insert_many([{"uri": f"/night/{i}.png", "status": s, "processed_by": p} for i, (s, p) in
                            enumerate([("ok", ["v1"]), ("ok", ["v1", "v2"]), ("quarantined", []), ("ok", [])])])
    assert backlog(fdb, "v2") == ["/night/0.png", "/night/3.png"]
    mark_processed(fdb, [fdb.images.find_one({"uri": "/night/0.png"})["_id"]], "v2")
    assert backlog(fdb, "v2") == ["/night/3.png"]
