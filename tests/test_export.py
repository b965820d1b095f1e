"""annotation_export against a real mongod (the `fdb` fixture) and a real S3 endpoint (moto_server on loopback)."""

from __future__ import annotations

import json
import os
import urllib.request
import zipfile
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from conftest import _start_moto, _stop, run_at_once
from PIL import Image
from pycocotools import mask as mask_utils

from annotation_export import batch as batch_mod
from annotation_export.config import ExportConfig
from storage import s3 as s3mod
from annotation_export.export import DONE, ExportError, export_batch
from annotation_export.formats import mask_polygons, unique_file_names
from annotation_export.importer import LabelImportError, import_labels
from fdb import detections as detection_store
from fdb.models import register_model
from records import Detection
from storage import read_uri

MODEL = "m-test"
SEL = "sel-test"


# ---------------------------------------------------------------------------------------------------- haystack
def _rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode()}


@pytest.fixture()
def haystack(fdb, tmp_path):
    """Four pool images (two share a basename, one has a `..` uri, one an odd name), detections with masks,
    a models doc whose category ids start at 0, and a selection doc per image as record_selection writes it."""
    (tmp_path / "etc").mkdir()
    uris = [str(tmp_path / "a" / "img.png"), str(tmp_path / "b" / "img.png"),
            str(tmp_path / "d1" / "d2" / ".." / ".." / "etc" / "passwd.png"), str(tmp_path / "c" / "we ird:näme.png")]
    rng = np.random.default_rng(0)
    images = []
    for i, uri in enumerate(uris):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        w, h = 64 + 8 * i, 48
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(uri)
        images.append({"uri": uri, "width": w, "height": h, "split": "pool", "labelled": False, "status": "ok",
                       "sha256": str(i), "processed_by": [MODEL]})
    ids = fdb.images.insert_many(images).inserted_ids
    register_model(fdb, MODEL, "/ckpt", ["person", "car"], {"category_ids": [0, 1]})
    dets = []
    for i, image_id in enumerate(ids):
        w, h = 64 + 8 * i, 48
        yy, xx = np.mgrid[:h, :w]
        masks = [((xx - 20) ** 2 + (yy - 20) ** 2 <= 100),  # a disc
                 (xx >= 35) & (xx < 55) & (yy >= 10) & (yy < 40),  # a rectangle
                 (xx >= 2) & (xx < 6) & (yy >= 40) & (yy < 44)]  # low score: filtered out
        for rank, (m, score, cat) in enumerate(zip(masks, [0.93, 0.71, 0.2], [0, 1, 0])):
            rle = _rle(m)
            box = [float(v) for v in mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()})]
            dets.append(Detection(rank, box, score, cat, ["person", "car"][cat], label=cat + 1, mask=rle,
                                  image_id=image_id))
    detection_store.write_detections(fdb, MODEL, dets)
    fdb.selections.insert_many([
        {"selection_id": SEL, "arm": "mined", "model_version": MODEL, "index_versions": {"box": "idx-1"},
         "params": {"k": 20}, "export_id": None, "image_id": image_id, "uri": uris[r], "rank": r, "hits": 2,
         "best_distance": 0.1 * (r + 1),
         "queries": [{"error_id": f"e{r}", "type": "fp_background", "category": "person",
                      "source_image_id": "v1", "level": "detection", "distance": 0.1 * (r + 1)}],
         "reason": "nearest pool image to 2 error queries (fp_background; classes person)"}
        for r, image_id in enumerate(ids)])
    return {"uris": uris, "ids": ids, "dets": dets}


# ---------------------------------------------------------------------------------------------------- formats
def test_names_are_sanitised_and_unique():
    names = unique_file_names(["/x/../../etc/passwd.png", "/a/img.png", "/b/img.png", "/c/IMG.png", "..", "a\\b\\..\\c.png",
                               "s3://bkt/k/we ird:na/me?.png"])
    assert names["/x/../../etc/passwd.png"] == "passwd.png"
    assert len(set(n.lower() for n in names.values())) == len(names)
    for n in names.values():
        assert "/" not in n and "\\" not in n and not n.startswith(".") and ".." not in n
    assert names["/a/img.png"].startswith("img-") and names["/a/img.png"] != names["/b/img.png"]
    assert names == unique_file_names(list(reversed(list(names))))  # stable whatever the order


def test_local_export_roundtrips_through_datumaro_and_pycocotools(fdb, haystack, tmp_path):
    res = export_batch(fdb, SEL, tmp_path / "out")
    root = Path(res.location)
    assert (root / DONE).is_file() and res.counts == {"images": 4, "objects": 8, "polygons": 8}
    names = sorted(p.name for p in (root / "images").iterdir())
    assert "passwd.png" in names and len(names) == 4 and all(".." not in n for n in names)
    assert fdb.exports.find_one({"_id": res.batch_id})["status"] == "done"
    assert {d["export_id"] for d in fdb.selections.find({"selection_id": SEL})} == {res.batch_id}

    expected = {}  # (file name, rank) -> (box, polygon)
    record = fdb.exports.find_one({"_id": res.batch_id})
    name_of = {im["image_id"]: im["file_name"] for im in record["images"]}
    for d in haystack["dets"]:
        if d.score >= 0.5:
            expected[(name_of[d.image_id], d.rank)] = (d.bbox, mask_polygons(d.mask)[0])

    from datumaro.components.annotation import AnnotationType
    from datumaro.components.dataset import Dataset

    cvat = Dataset.import_from(str(root / "annotations.xml"), "cvat")
    label_names = [c.name for c in cvat.categories()[AnnotationType.label]]
    assert label_names == ["person", "car"]
    n_boxes = n_polys = 0
    for item in cvat:
        fname = Path(item.id).name
        for ann in item.annotations:
            rank = ann.group - 1
            box, poly = expected[(next(n for n in name_of.values() if Path(n).stem == fname or n == fname), rank)]
            if ann.type == AnnotationType.bbox:
                n_boxes += 1
                assert np.allclose([ann.x, ann.y, ann.w, ann.h], box, atol=0.01)
                assert abs(ann.attributes["score"] - (0.93 if rank == 0 else 0.71)) < 1e-6
            elif ann.type == AnnotationType.polygon:
                n_polys += 1
                assert np.allclose(ann.points, poly, atol=0.01)
    assert (n_boxes, n_polys) == (8, 8)

    coco_path = root / "annotations" / "instances_default.json"
    coco = Dataset.import_from(str(coco_path), "coco_instances")
    assert [c.name for c in coco.categories()[AnnotationType.label]] == ["person", "car"]
    n = 0
    for item in coco:
        for ann in item.annotations:
            if ann.type == AnnotationType.polygon:
                n += 1
                key = next(k for k in expected if Path(k[0]).stem == Path(item.id).name and k[1] == ann.attributes["rank"])
                assert np.allclose(ann.points, expected[key][1], atol=0.01)
    assert n == 8

    from pycocotools.coco import COCO
    c = COCO(str(coco_path))
    assert sorted(c.getCatIds()) == [1, 2]  # project ids 0, 1 shifted: CVAT refuses 0
    anns = c.loadAnns(c.getAnnIds())
    assert len(anns) == 8 and all(a["attributes"]["score"] in (0.93, 0.71) for a in anns)
    for a in anns:
        key = (c.loadImgs(a["image_id"])[0]["file_name"], a["attributes"]["rank"])
        assert np.allclose(a["bbox"], expected[key][0], atol=0.01)
        assert c.annToMask(a).sum() > 0


def test_reexport_is_byte_identical(fdb, haystack, tmp_path):
    a = export_batch(fdb, SEL, tmp_path / "one")
    b = export_batch(fdb, SEL, tmp_path / "two")
    c = export_batch(fdb, SEL, tmp_path / "one")  # over the top of a finished batch
    assert a.batch_id == b.batch_id == c.batch_id and a.files == b.files
    for f in a.files + [DONE]:
        assert (Path(a.location) / f).read_bytes() == (Path(b.location) / f).read_bytes(), f
    assert fdb.exports.find_one({"_id": a.batch_id})["attempts"] == 3
    assert export_batch(fdb, SEL, tmp_path / "x", ExportConfig(min_score=0.8)).batch_id != a.batch_id


def test_interrupted_local_export_leaves_nothing_done(fdb, haystack, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = batch_mod.read_uri

    def flaky(uri):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk went away")
        return real(uri)

    monkeypatch.setattr(batch_mod, "read_uri", flaky)
    with pytest.raises(OSError):
        export_batch(fdb, SEL, tmp_path / "out")
    rec = fdb.exports.find_one({})
    assert rec["status"] == "in_progress"
    assert fdb.selections.count_documents({"export_id": {"$ne": None}}) == 0
    assert not any((tmp_path / "out").rglob(DONE)) and list((tmp_path / "out").iterdir()) == []
    res = export_batch(fdb, SEL, tmp_path / "out")  # retry completes
    assert (Path(res.location) / DONE).exists()
    assert fdb.exports.find_one({"_id": res.batch_id})["status"] == "done"
    assert fdb.selections.count_documents({"export_id": res.batch_id}) == 4


def test_manifest(fdb, haystack, tmp_path):
    res = export_batch(fdb, SEL, tmp_path)
    text = (Path(res.location) / "manifest.csv").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("file_name,uri,image_id,rank,reason,error_types")
    assert len(lines) == 5 and "fp_background" in lines[1] and SEL in lines[1] and "idx-1" in lines[1]
    rows = json.loads((Path(res.location) / "manifest.json").read_text())["images"]
    assert [r["rank"] for r in rows] == [0, 1, 2, 3] and rows[0]["uri"] == haystack["uris"][0]
    assert rows[0]["presigned_url"] == ""


def test_curated_export_ships_what_a_person_let_through(fdb, haystack, tmp_path):
    from fdb import selections as selection_store

    from fdb import images as image_store

    ids = [d["image_id"] for d in fdb.selections.find({"selection_id": SEL}).sort("rank", 1)]
    assert "decisions" not in image_store.pool_generation(fdb, MODEL)  # keys of uncurated engines stay as they were
    selection_store.decide(fdb, SEL, ids[0], "accepted", "anna")
    selection_store.decide(fdb, SEL, ids[1], "rejected", "ben", note="blurred")
    selection_store.decide(fdb, SEL, ids[1], "rejected", "ben", note="blurred")  # again: nothing new
    # The pool changed (a rejected image left it): mining again must not reuse the old selection's id.
    assert image_store.pool_generation(fdb, MODEL)["decisions"] == 2
    res = export_batch(fdb, SEL, tmp_path, ExportConfig(only_accepted=True))
    manifest = json.loads((Path(res.location) / "manifest.json").read_text())
    assert [r["image_id"] for r in manifest["images"]] == [str(ids[0])] and res.counts["images"] == 1
    assert manifest["images"][0]["decision"] == "accepted" and manifest["images"][0]["decided_by"] == "anna"
    assert [(r["image_id"], r["rejected_by"], r["note"]) for r in manifest["rejected"]] == [(str(ids[1]), "ben",
                                                                                             "blurred")]
    assert {r["image_id"] for r in manifest["not_accepted"]} == {str(ids[2]), str(ids[3])}
    csv_rows = (Path(res.location) / "manifest.csv").read_text().splitlines()
    assert len(csv_rows) == 2 and csv_rows[0].endswith("decision,decided_by,decided_at")
    # From the export on, the decisions are final; the shipped and the rejected image leave the pool, the
    # two nobody accepted stay in it.
    with pytest.raises(selection_store.SelectionFrozen, match="exported"):
        selection_store.decide(fdb, SEL, ids[2], "accepted", "anna")
    assert set(selection_store.taken_image_ids(fdb)) == {ids[0], ids[1]}


def test_concurrent_reviewers_never_see_a_frozen_selection_before_its_export(fdb, haystack):
    """8 reviewers send 240 accept/reject decisions for 3 images of an unexported selection at once: none is refused
    as frozen, and each image's history alternates and ends at the decision that stands."""
    import random
    
    from fdb import selections as selection_store

    ids = [d["image_id"] for d in fdb.selections.find({"selection_id": SEL}).sort("rank", 1)][:3]
    failures, answers = [], []

    def reviewer(n: int) -> None:
        rng = random.Random(n)
        for _ in range(30):
            image = rng.choice(ids)
            try:
                answers.append(selection_store.decide(fdb, SEL, image, rng.choice(["accepted", "rejected"]),
                                                      f"reviewer-{n}"))
            except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
                failures.append(repr(exc))

    run_at_once(reviewer, range(8))
    assert failures == [] and len(answers) == 240
    assert all(a["decision"] in ("accepted", "rejected") for a in answers)
    for image in ids:
        doc = fdb.selections.find_one({"selection_id": SEL, "image_id": image})
        assert doc["decision"] in ("accepted", "rejected")
        history = [h["decision"] for h in doc.get("decisions", [])]
        assert all(a != b for a, b in zip(history, history[1:])), history  # every recorded entry is a change
        assert not history or history[-1] == doc["decision"]
    # Once an export has really started, a decision is refused as frozen.
    selection_store.freeze(fdb, SEL)
    with pytest.raises(selection_store.SelectionFrozen, match="being exported"):
        selection_store.decide(fdb, SEL, image, "rejected" if doc["decision"] == "accepted" else "accepted", "x")


def test_a_selection_with_every_image_rejected_exports_nothing(fdb, haystack, tmp_path):
    from fdb import selections as selection_store

    for d in fdb.selections.find({"selection_id": SEL}):
        selection_store.decide(fdb, SEL, d["image_id"], "rejected", "anna")
    with pytest.raises(ExportError, match="nothing to export"):
        export_batch(fdb, SEL, tmp_path / "queue")
    assert fdb.exports.count_documents({}) == 0 and not (tmp_path / "queue").exists()


def test_unknown_selection_refused(fdb):
    with pytest.raises(ExportError, match="no selection"):
        export_batch(fdb, "sel-nope", "/tmp/never")


# ---------------------------------------------------------------------------------------------------- S3
def test_s3_upload_list_presign_read(s3env, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello")
    s3mod.upload_file(big, f"s3://{s3env}/p/big.bin", multipart_threshold=5 * 1024 * 1024)  # multipart
    s3mod.upload_file(small, f"s3://{s3env}/p/small.txt")
    assert list(s3mod.list_keys(f"s3://{s3env}/p/")) == ["p/big.bin", "p/small.txt"]
    url = s3mod.presign_get(f"s3://{s3env}/p/big.bin", expires_in=60)
    assert "Signature" in url and "testing-secret" not in url
    assert urllib.request.urlopen(url).read() == big.read_bytes()
    assert read_uri(f"s3://{s3env}/p/small.txt") == b"hello"  # fdb.image_files.read_uri goes through us
    assert s3mod.parse_s3_uri("s3://b/k/x") == ("b", "k/x")
    with pytest.raises(ValueError):
        s3mod.parse_s3_uri("http://b/k")


def test_s3_retry_after_transient_failure(s3env, tmp_path, monkeypatch):
    f = tmp_path / "f.txt"
    f.write_bytes(b"data")
    client = s3mod.s3_client()
    real = client.upload_file
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return real(*a, **kw)

    monkeypatch.setattr(client, "upload_file", flaky)
    s3mod.upload_file(f, f"s3://{s3env}/r/f.txt", client=client, base_delay=0.01)
    assert calls["n"] == 2 and s3mod.read_s3_uri(f"s3://{s3env}/r/f.txt", client) == b"data"
    # a permanent error is not retried: an object that is not there reads as a missing file
    with pytest.raises(FileNotFoundError, match="no such object"):
        s3mod.read_s3_uri(f"s3://{s3env}/r/missing")


def test_s3_wrong_credentials_refused(monkeypatch):
    """moto enforces IAM auth after INITIAL_NO_AUTH_ACTION_COUNT requests (a separate server: presigned GETs
    fail on moto with auth enforced)."""
    proc, url = _start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="exporter")
        key = iam.create_access_key(UserName="exporter")["AccessKey"]
        iam.put_user_policy(UserName="exporter", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        monkeypatch.setenv("DATAENGINE_S3_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        s3mod.s3_client().create_bucket(Bucket="auth-bucket")
        s3mod.put_bytes(b"x", "s3://auth-bucket/k")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
            s3mod.read_s3_uri("s3://auth-bucket/k")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY")
        with pytest.raises(ClientError, match="InvalidAccessKeyId"):
            list(s3mod.list_keys("s3://auth-bucket/"))
    finally:
        _stop(proc)


def test_s3_export_and_interrupted_upload(fdb, haystack, s3env, monkeypatch, tmp_path):
    real = s3mod.upload_file
    calls = {"n": 0}

    def dying(path, uri, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise ConnectionResetError("network died half way")
        return real(path, uri, *a, **kw)

    monkeypatch.setattr(s3mod, "upload_file", dying)
    target = f"s3://{s3env}/batches"
    with pytest.raises(ConnectionResetError):
        export_batch(fdb, SEL, target)
    keys = list(s3mod.list_keys(target + "/"))
    assert keys and not any(k.endswith(DONE) for k in keys)
    assert fdb.exports.find_one({})["status"] == "in_progress"
    assert fdb.selections.count_documents({"export_id": {"$ne": None}}) == 0

    monkeypatch.setattr(s3mod, "upload_file", real)
    res = export_batch(fdb, SEL, target)
    keys = list(s3mod.list_keys(res.location + "/"))
    assert f"batches/{res.batch_id}/{DONE}" in keys and f"batches/{res.batch_id}/annotations.xml" in keys
    assert fdb.exports.find_one({"_id": res.batch_id})["status"] == "done"
    rows = json.loads(s3mod.read_s3_uri(f"{res.location}/manifest.json"))["images"]
    got = urllib.request.urlopen(rows[0]["presigned_url"]).read()
    assert got == Path(haystack["uris"][0]).read_bytes()
    local = export_batch(fdb, SEL, tmp_path)  # same bytes locally and on S3
    assert s3mod.read_s3_uri(f"{res.location}/annotations.xml") == (Path(local.location) / "annotations.xml").read_bytes()


# ---------------------------------------------------------------------------------------------------- import
def _coco_labels(root: Path) -> dict:
    return json.loads((root / "annotations" / "instances_default.json").read_text())


def _write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_import_validation_errors(fdb, haystack, tmp_path):
    res = export_batch(fdb, SEL, tmp_path / "out")
    root = Path(res.location)
    base = _coco_labels(root)

    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(LabelImportError, match="empty file"):
        import_labels(fdb, empty, res.batch_id)
    with pytest.raises(LabelImportError, match="no images"):
        import_labels(fdb, _write_json(tmp_path / "e2.json", {"images": [], "annotations": []}), res.batch_id)

    doc = json.loads(json.dumps(base))
    doc["categories"].append({"id": 9, "name": "dragon"})
    doc["annotations"][1]["category_id"] = 9
    with pytest.raises(LabelImportError, match=r"annotation id 2 .*unknown category 'dragon'"):
        import_labels(fdb, _write_json(tmp_path / "cat.json", doc), res.batch_id)

    doc = json.loads(json.dumps(base))
    doc["images"][0]["file_name"] = "stranger.png"
    with pytest.raises(LabelImportError, match="image 'stranger.png': not in batch"):
        import_labels(fdb, _write_json(tmp_path / "img.json", doc), res.batch_id)

    doc = json.loads(json.dumps(base))
    doc["annotations"][0]["bbox"] = [50, 30, 40, 40]
    with pytest.raises(LabelImportError, match=r"annotation id 1 .*outside the \d+x48 image"):
        import_labels(fdb, _write_json(tmp_path / "box.json", doc), res.batch_id)

    # NaN passes every range check (NaN < 0 is False): it is refused as a number, and so is a file nested deeper
    # than a parser's stack.
    doc = json.loads(json.dumps(base))
    doc["annotations"][0]["bbox"] = [float("nan"), 0, 5, 5]
    with pytest.raises(LabelImportError, match=r"annotation id 1 .*finite numbers"):
        import_labels(fdb, _write_json(tmp_path / "nan.json", doc), res.batch_id)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LabelImportError, match="nested too deeply"):
        import_labels(fdb, deep, res.batch_id)

    xml = (root / "annotations.xml").read_text().replace('label="car"', 'label="bus"', 1)
    (tmp_path / "bad.xml").write_text(xml)
    with pytest.raises(LabelImportError, match="unknown category 'bus'"):
        import_labels(fdb, tmp_path / "bad.xml", res.batch_id)

    with pytest.raises(LabelImportError, match="no export batch"):
        import_labels(fdb, root / "annotations" / "instances_default.json", "batch-nope")
    assert fdb.labels.count_documents({}) == 0  # nothing half-written
    assert fdb.images.count_documents({"labelled": True}) == 0
    assert fdb.exports.find_one({"_id": res.batch_id})["status"] == "done"


def test_import_versions(fdb, haystack, tmp_path):
    res = export_batch(fdb, SEL, tmp_path / "out")
    root = Path(res.location)
    # v1: the team's COCO file (they deleted one object)
    doc = _coco_labels(root)
    doc["annotations"] = doc["annotations"][1:]
    rep = import_labels(fdb, _write_json(tmp_path / "labels.json", doc), res.batch_id)
    assert (rep.label_version, rep.images, rep.annotations) == (1, 4, 7)
    assert fdb.images.count_documents({"labelled": True}) == 4
    assert fdb.exports.find_one({"_id": res.batch_id})["status"] == "labelled"
    v1 = list(fdb.labels.find({"label_version": 1}))
    assert {a["category_id"] for lab in v1 for a in lab["annotations"]} == {0, 1}  # back to the project's ids
    # v2: a CVAT zip (box + polygons of a group merged into one object)
    zpath = tmp_path / "cvat.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(root / "annotations.xml", "annotations.xml")
    rep2 = import_labels(fdb, zpath, res.batch_id)
    assert (rep2.label_version, rep2.annotations) == (2, 8)
    assert fdb.labels.count_documents({"label_version": 1}) == 4  # the earlier version is kept
    v2 = fdb.labels.find_one({"label_version": 2, "image_id": haystack["ids"][0]})
    person = next(a for a in v2["annotations"] if a["category_name"] == "person")
    assert np.allclose(person["bbox"], haystack["dets"][0].bbox, atol=0.01) and len(person["segmentation"]) == 1
    with pytest.raises(ExportError, match="already labelled"):
        export_batch(fdb, SEL, tmp_path / "again")


def test_a_killed_import_leaves_no_partial_label_version(fdb, haystack, tmp_path, monkeypatch):
    """The import dies after its label documents are written and before its commit point: no label version is
    visible, and the next import writes version 1 again over the remains (on a standalone server; on a replica
    set the import is one transaction, see tests/test_replica_set.py)."""
    import fdb.images as image_store
    from annotation_export.importer import labels_as_coco
    from fdb import labels as label_store

    res = export_batch(fdb, SEL, tmp_path / "out")
    labels = _write_json(tmp_path / "labels.json", _coco_labels(Path(res.location)))
    real = image_store.mark_label_version

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-import")

    monkeypatch.setattr(image_store, "mark_label_version", killed)
    with pytest.raises(KeyboardInterrupt):
        import_labels(fdb, labels, res.batch_id)
    assert fdb.labels.count_documents({}) == 4  # written, but not committed: nobody reads them
    assert label_store.latest_version(fdb, res.batch_id) is None
    assert fdb.exports.find_one({"_id": res.batch_id})["status"] == "done"
    with pytest.raises(LookupError):
        labels_as_coco(fdb, res.batch_id, tmp_path)
    monkeypatch.setattr(image_store, "mark_label_version", real)
    report = import_labels(fdb, labels, res.batch_id)
    assert report.label_version == 1 and fdb.labels.count_documents({}) == 4
    assert label_store.latest_version(fdb, res.batch_id) == 1
    assert len(labels_as_coco(fdb, res.batch_id, tmp_path)[0]) == 4
