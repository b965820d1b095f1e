"""Prefect flows against a real mongod: the nightly flow twice (no duplicates), and a crash part way that the next
run completes exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectors.config import DetectConfig
from detectors.synthetic import generate
from mining.config import MiningConfig


def counts(fdb):
    return {name: fdb.db[name].count_documents({}) for name in ("images", "detections", "features", "errors",
                                                                  "selections", "exports")}


def test_nightly_twice_adds_nothing_the_second_time(prefect_backend, engine, fdb):
    from flows.nightly import nightly

    args = dict(images=str(engine / "images"), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                mining=MiningConfig(k=3, budget=4))
    first = nightly(**args)
    after_first = counts(fdb)
    assert first.detect.images_processed == 6 and after_first["detections"] > 0
    # The selection went to the labelling queue (the data home's exports/ by default), with its manifest.
    batch = first.export
    assert after_first["exports"] == 1 and batch.images == first.mine.selected > 0
    assert (Path(batch.location) / "annotations.xml").is_file()
    assert len(json.loads((Path(batch.location) / "manifest.json").read_text())["images"]) == batch.images
    second = nightly(**args)
    assert second.detect.images_processed == 0
    assert second.mine.selection_id == first.mine.selection_id
    assert second.export.batch_id == batch.batch_id
    assert counts(fdb) == after_first
    # New imagery the next night: only it is detected, and a new batch is queued.
    generate(engine / "night2", n_train=0, n_val=0, n_pool=2, seed=6, width=128, height=96, progress=False)
    for png in (engine / "night2" / "images").glob("pool_*.png"):
        png.rename(engine / "images" / f"pool_night2_{png.name}")
    third = nightly(**args)
    assert third.detect.images_processed == 2
    assert fdb.exports.count_documents({}) == 2 and third.export.batch_id != batch.batch_id


def test_the_nightly_chooses_its_strategy_by_name_from_the_cli(prefect_backend, engine, fdb, capsys):
    from dataengine.cli import main

    args = ["nightly", "--images", str(engine / "images"), "--pattern", "pool_*",
            "--gt", str(engine / "annotations" / "val.json"), "--budget", "3", "--no-random-arm"]
    assert main(args + ["--strategy", "diversity"]) == 0
    assert "strategy diversity" in capsys.readouterr().out
    [batch] = list(fdb.exports.find())
    chosen = list(fdb.selections.find({"export_id": batch["_id"]}))
    assert len(chosen) == 3 and {d["params"]["strategy"] for d in chosen} == {"diversity"}
    assert all(d["reason"].startswith("core-set pick") for d in chosen)
    # Another strategy is another night's state: it mines what is left and queues a second batch.
    assert main(args + ["--strategy", "uncertainty"]) == 0
    second = [d for d in fdb.selections.find({"params.strategy": "uncertainty"})]
    assert len(second) == 3 and not {d["image_id"] for d in second} & {d["image_id"] for d in chosen}
    assert fdb.exports.count_documents({}) == 2


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
    # A commit point after every forward pass, so the first batch's work stays whatever follows.
    args = dict(images=str(engine / "images"), pattern="pool_*", gt_json=str(engine / "annotations" / "val.json"),
                mining=MiningConfig(k=3, budget=4), detection=DetectConfig(batch_size=4, commit_every=4))
    with pytest.raises(RuntimeError, match="simulated crash"):
        nightly(**args)
    done_before = fdb.images.count_documents({"processed_by": "tiny-v1"})
    assert 0 < done_before < 6
    monkeypatch.setattr(inference, "detect_with_features", real)
    result = nightly(**args)
    assert result.detect.images_processed == 6 - done_before
    assert fdb.images.count_documents({"processed_by": "tiny-v1", "split": "pool"}) == 6
    # Exactly once: every detection and feature once, whatever the crash left behind.
    n_det = fdb.detections.count_documents({})
    assert fdb.features.count_documents({"owner_kind": "detection"}) == n_det
    assert fdb.features.count_documents({"owner_kind": "image"}) == fdb.images.count_documents({"processed_by": "tiny-v1"})
    assert len(fdb.detections.distinct("_id")) == n_det


def test_nightly_ingests_an_s3_prefix_and_queues_to_s3(prefect_backend, engine, fdb, s3env):
    from storage import s3 as s3mod
    from flows.nightly import nightly

    for png in sorted((engine / "images").glob("pool_*.png")):
        s3mod.upload_file(png, f"s3://{s3env}/incoming/2026-11-23/{png.name}")
    s3mod.put_bytes(b"not an image", f"s3://{s3env}/incoming/2026-11-23/notes.txt")  # skipped by suffix
    s3mod.put_bytes(b"\x89PNG truncated", f"s3://{s3env}/incoming/2026-11-23/broken.png")  # quarantined
    result = nightly(images=f"s3://{s3env}/incoming/", gt_json=str(engine / "annotations" / "val.json"),
                     gt_images=str(engine / "images"), mining=MiningConfig(k=3, budget=4), export_to=f"s3://{s3env}/queue")
    assert result.detect.images_processed == 6
    assert [uri for uri, _ in result.detect.quarantined] == [f"s3://{s3env}/incoming/2026-11-23/broken.png"]
    assert fdb.images.count_documents({"uri": {"$regex": "^s3://"}, "processed_by": "tiny-v1"}) == 6
    batch = result.export
    assert batch.location == f"s3://{s3env}/queue/{batch.batch_id}"
    keys = set(s3mod.list_keys(batch.location + "/"))
    assert f"queue/{batch.batch_id}/annotations.xml" in keys
    assert sum(k.startswith(f"queue/{batch.batch_id}/images/") for k in keys) == batch.images > 0


def test_mine_and_reindex_from_the_cli_print_what_they_chose(prefect_backend, engine, fdb, capsys):
    """`dataengine mine` runs the model over the labelled set, types its errors and records a selection (printing the
    table, the selection and why each image was chosen); `dataengine reindex` rebuilds the pool indexes it asked."""
    from dataengine.cli import main

    assert main(["detect", "--images", str(engine / "images"), "--pattern", "pool_*"]) == 0
    gt = str(engine / "annotations" / "val.json")
    assert main(["mine", "--gt", gt, "--budget", "3", "--k", "3", "--score", "0.0", "--show", "2"]) == 0
    out = capsys.readouterr().out
    [selection] = fdb.db["runs"].distinct("metrics.selection_id", {"kind": "mine_hard_cases"})
    assert f"selection {selection} (strategy errors): 3 images" in out and "errors of the labelled set" in out
    assert "queries (" in out and "random arm" in out and out.count("\n        ") == 2  # --show 2: two reasons
    assert main(["reindex", "--backend", "exact"]) == 0
    out = capsys.readouterr().out
    assert "pool vectors of model" in out and "exact index" in out
    assert main(["mine", "--budget", "3", "--k", "3", "--score", "0.0"]) == 0  # the last labelled set by default
    assert f"labelled set of the last mining run: {gt}" in capsys.readouterr().out


def test_no_task_asks_the_server_for_tag_concurrency_slots():
    """A tagged task run first asks Prefect's server for its tags' concurrency slots; after a detection chunk that
    write waited ~2 s behind the ephemeral server here, 40 % of the chunk. No task carries a tag."""
    import importlib
    import pkgutil

    import tasks
    from prefect import Task

    modules = [importlib.import_module(f"tasks.{m.name}") for m in pkgutil.iter_modules(tasks.__path__)]
    found = {name: t for module in modules for name, t in vars(module).items() if isinstance(t, Task)}
    assert len(found) > 20
    assert {name: t.tags for name, t in found.items() if t.tags} == {}
