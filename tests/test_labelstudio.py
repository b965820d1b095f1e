"""A batch in a real Label Studio server and its labels back (`annotation_export.labelstudio`).

The server is started once per session by the `labelstudio` fixture (conftest.py, tests/labelstudio_server.py) on
127.0.0.1. The annotation team is simulated through the server's own REST API (as its UI does it): accept the
predictions, move a box, add a missed object, delete a false positive, skip an image.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from annotation_export import labelstudio as ls
from annotation_export.config import ExportConfig
from annotation_export.export import ExportError, export_batch
from annotation_export.importer import LabelImportError
from annotation_export.labelstudio import LabelStudioAccess, pull_labels
from annotation_export.labelstudio_client import LabelStudioClient, LabelStudioError
from fdb import detections as detection_store
from fdb import labels as label_store
from fdb.models import register_model
from records import Detection

MODEL = "m-ls"
SEL = "sel-ls"
# file name -> (width, height, [(rank, category id, box or None for the mask's, score)])
SCENES = {
    "a.png": (80, 60, [(0, 0, [8, 6, 16, 12], 0.9), (1, 1, [40, 30, 20, 15], 0.8), (2, 0, [1, 1, 4, 4], 0.2)]),
    "b.png": (100, 50, [(0, 0, None, 0.93), (1, 1, [60, 10, 20, 20], 0.6)]),
    "c.png": (50, 50, [(0, 1, [5, 5, 20, 10], 0.7)]),
    "d.png": (40, 40, [(0, 0, [2, 2, 10, 10], 0.55)]),
}


@pytest.fixture()
def selection(fdb, tmp_path):
    """Four pool images with the model's detections (boxes, one mask, one below the score threshold), a models
    doc whose category ids start at 0, and a mined selection of them with a reason each."""
    register_model(fdb, MODEL, "/ckpt", ["person", "car"], {"category_ids": [0, 1]})
    rng = np.random.default_rng(0)
    ids, dets = {}, []
    for rank, (name, (w, h, objects)) in enumerate(SCENES.items()):
        uri = str(tmp_path / "pool" / name)
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(uri)
        ids[name] = fdb.images.insert_one({"uri": uri, "width": w, "height": h, "split": "pool", "labelled": False,
                                           "status": "ok", "sha256": name, "processed_by": [MODEL]}).inserted_id
        for r, cat, box, score in objects:
            mask = None
            if box is None:  # a mask: a 20 x 20 square at (10, 5)
                m = np.zeros((h, w), dtype=np.uint8)
                m[5:25, 10:30] = 1
                enc = mask_utils.encode(np.asfortranarray(m))
                mask = {"size": list(enc["size"]), "counts": enc["counts"].decode()}
                box = [10.0, 5.0, 20.0, 20.0]
            dets.append(Detection(r, [float(v) for v in box], score, cat, ["person", "car"][cat], label=cat + 1,
                                  mask=mask, image_id=ids[name]))
        fdb.selections.insert_one({
            "selection_id": SEL, "arm": "mined", "model_version": MODEL, "index_versions": {"box": "idx-1"},
            "params": {}, "export_id": None, "image_id": ids[name], "uri": uri, "rank": rank, "hits": 2,
            "best_distance": 0.1, "queries": [], "reason": f"why {name}: near 2 fp_background queries"})
    detection_store.write_detections(fdb, MODEL, dets)
    return ids


def _access(server, token: str | None = None) -> LabelStudioAccess:
    return LabelStudioAccess(token=token or server.token, document_root=str(server.files_root))


def _target(server, title: str) -> str:
    return f"labelstudio://127.0.0.1:{server.port}/{quote(title, safe='')}"


def _team(server) -> httpx.Client:
    """The annotation team: the server's REST API as its UI uses it."""
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Token {server.token}"}, timeout=60)


def _tasks(team: httpx.Client, project_id: int) -> dict[str, dict]:
    answer = team.get("/api/tasks/", params={"project": project_id, "fields": "all", "page_size": 100})
    answer.raise_for_status()
    return {t["data"]["file_name"]: t for t in answer.json()["tasks"]}


def _annotate(team: httpx.Client, task: dict, result: list[dict], was_cancelled: bool = False) -> None:
    answer = team.post(f"/api/tasks/{task['id']}/annotations/",
                       json={"result": result, "was_cancelled": was_cancelled, "lead_time": 3.5})
    assert answer.status_code == 201, answer.text


def _px(region: dict, w: int, h: int) -> tuple[str, list[float], list]:
    """What the team drew, in pixels (written apart from the importer, from Label Studio's documented units)."""
    v = region["value"]
    if region["type"] == "rectanglelabels":
        return (v["rectanglelabels"][0], [v["x"] * w / 100, v["y"] * h / 100, v["width"] * w / 100,
                                          v["height"] * h / 100], [])
    flat = [c for x, y in v["points"] for c in (x * w / 100, y * h / 100)]
    xs, ys = flat[0::2], flat[1::2]
    return v["polygonlabels"][0], [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], [flat]


def _labels(fdb, batch_id: str, version: int) -> dict[str, list]:
    return {d["file_name"]: sorted((a["category_name"], a["category_id"], [round(c, 3) for c in a["bbox"]],
                                    [[round(c, 3) for c in p] for p in a["segmentation"]])
                                   for a in d["annotations"])
            for d in label_store.read_version(fdb, batch_id, version)}


def test_push_annotate_pull(fdb, selection, labelstudio, mongod, tmp_path, monkeypatch, capsys):
    title = f"gaze round trip {uuid.uuid4().hex[:8]}"
    target = _target(labelstudio, title)
    res = export_batch(fdb, SEL, target, labelstudio=_access(labelstudio))

    # Recorded as a file export is, with where it went; no credential anywhere in the record.
    record = fdb.exports.find_one({"_id": res.batch_id})
    assert (record["status"], record["attempts"], record["target"]) == ("done", 1, target)
    assert record["server"]["project"] == title and record["server"]["kind"] == "labelstudio"
    assert labelstudio.token not in json.dumps(record, default=str)
    assert res.server["tasks_added"] == 4 and res.server["tasks_present"] == 0
    assert {d["export_id"] for d in fdb.selections.find({"selection_id": SEL})} == {res.batch_id}
    staged = Path(record["server"]["staged"])
    assert (staged / "_DONE").is_file() and (staged / "manifest.json").is_file()

    team = _team(labelstudio)
    project_id = record["server"]["project_id"]
    project = team.get(f"/api/projects/{project_id}/").json()
    assert project["title"] == title
    assert "RectangleLabels" in project["label_config"] and "PolygonLabels" in project["label_config"]
    tasks = _tasks(team, project_id)
    assert sorted(tasks) == sorted(SCENES)
    for name, task in tasks.items():
        w, h, _ = SCENES[name]
        assert task["data"]["reason"] == f"why {name}: near 2 fp_background queries"
        assert task["data"]["batch_id"] == res.batch_id and task["data"]["image_id"] == str(selection[name])
        served = team.get(task["data"]["image"])  # the server serves the staged image to the project
        assert served.status_code == 200 and served.content == (staged / "images" / name).read_bytes()
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == MODEL
        scores = [r["score"] for r in prediction["result"]]
        assert prediction["score"] == pytest.approx(sum(scores) / len(scores), abs=1e-4)
        expected = [o for o in SCENES[name][2] if o[3] >= 0.5]
        assert sorted(scores) == sorted(o[3] for o in expected)
        for region in prediction["result"]:
            cat, box, _seg = _px(region, w, h)
            rank = int(region["id"][1:])
            _, cid, want, _ = next(o for o in expected if o[0] == rank)
            assert cat == ["person", "car"][cid]
            assert region["type"] == ("polygonlabels" if want is None else "rectanglelabels")
            assert np.allclose(box, want or [10, 5, 19, 19], atol=1.01)  # a mask's polygon runs along its pixels

    # Pushing again adds nothing, and is recorded as another attempt.
    again = export_batch(fdb, SEL, target, labelstudio=_access(labelstudio))
    assert again.batch_id == res.batch_id and again.server["tasks_added"] == 0 and again.server["tasks_present"] == 4
    assert len(_tasks(team, project_id)) == 4
    assert fdb.exports.find_one({"_id": res.batch_id})["attempts"] == 2

    # The team: accept a.png as predicted; b.png: keep the polygon, delete the false-positive car; c.png: move the
    # box 10 % to the right and add the person the model missed; skip d.png.
    pred = {name: t["predictions"][0]["result"] for name, t in tasks.items()}
    _annotate(team, tasks["a.png"], pred["a.png"])
    _annotate(team, tasks["b.png"], [r for r in pred["b.png"] if r["type"] == "polygonlabels"])
    moved = json.loads(json.dumps(pred["c.png"][0]))
    moved["value"]["x"] += 10
    added = {"id": "missed1", "from_name": "box", "to_name": "image", "type": "rectanglelabels",
             "original_width": 50, "original_height": 50, "image_rotation": 0,
             "value": {"x": 60, "y": 60, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["person"]}}
    _annotate(team, tasks["c.png"], [moved, added])
    _annotate(team, tasks["d.png"], [], was_cancelled=True)

    # The review app's batch page shows the server and the progress there (a skipped task is not done).
    from dataengine.ui import views

    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_TOKEN", labelstudio.token)
    shown = views.batch(fdb, res.batch_id)["server"]
    assert shown["project"] == title and shown["progress"] == {"done": 3, "total": 4} and shown["error"] is None
    from fastapi.testclient import TestClient

    from dataengine.ui.app import AppSettings, build_app

    app = TestClient(build_app(fdb, AppSettings(export_target=str(tmp_path / "queue"), cache_dir=str(tmp_path / "c"),
                                                user="tester")), base_url="http://127.0.0.1:8765")
    page = app.get(f"/batches/{res.batch_id}")
    assert page.status_code == 200 and "<b>3 / 4</b> tasks done" in page.text and title in page.text
    assert app.get(f"/api/batches/{res.batch_id}").json()["server"]["progress"] == {"done": 3, "total": 4}
    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_TOKEN", "wrong-token-0123456789")
    assert "refused the token" in views.batch(fdb, res.batch_id)["server"]["error"]

    report = pull_labels(fdb, target, res.batch_id, _access(labelstudio))
    assert (report.label_version, report.images, report.annotations) == (1, 3, 5)
    assert report.unlabelled == ["d.png"]
    done = {"a.png": pred["a.png"], "b.png": [r for r in pred["b.png"] if r["type"] == "polygonlabels"],
            "c.png": [moved, added]}
    want = {name: sorted((cat, {"person": 0, "car": 1}[cat], [round(c, 3) for c in box],
                          [[round(c, 3) for c in p] for p in seg])
                         for cat, box, seg in (_px(r, *SCENES[name][:2]) for r in regions))
            for name, regions in done.items()}
    assert _labels(fdb, res.batch_id, 1) == want
    assert want["c.png"][0][2] == [10.0, 5.0, 20.0, 10.0]  # the moved box, in pixels
    assert fdb.images.find_one({"_id": selection["d.png"]})["labelled"] is False

    # Nothing new on the server: nothing written.
    same = pull_labels(fdb, target, res.batch_id, _access(labelstudio))
    assert same.unchanged and same.label_version == 1 and label_store.latest_version(fdb, res.batch_id) == 1

    # The last image gets labelled; the next pull, from the command line with a personal access token (a JWT
    # refresh token, what Label Studio hands out today), adds version 2 and keeps version 1.
    _annotate(team, tasks["d.png"], pred["d.png"])
    personal = team.post("/api/token/")
    assert personal.status_code == 201, personal.text
    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_TOKEN", personal.json()["token"])
    from dataengine.cli import main

    assert main(["import-labels", "--from", target, "--batch", res.batch_id]) == 0
    out = capsys.readouterr().out
    assert f"batch {res.batch_id}: label version 2, 4 images, 6 annotations" in out
    assert personal.json()["token"] not in out
    assert sorted(_labels(fdb, res.batch_id, 2)) == sorted(SCENES) and _labels(fdb, res.batch_id, 1) == want


def test_an_interrupted_push_completes_without_a_second_task(fdb, selection, labelstudio, monkeypatch):
    target = _target(labelstudio, f"gaze interrupted {uuid.uuid4().hex[:8]}")
    real = LabelStudioClient.import_tasks
    calls = []

    def dropped_after_the_first_chunk(self, project_id, tasks):
        calls.append(len(tasks))
        if len(calls) == 2:
            raise LabelStudioError("the connection dropped (simulated)")
        return real(self, project_id, tasks)

    monkeypatch.setattr(ls, "IMPORT_CHUNK", 2)
    monkeypatch.setattr(LabelStudioClient, "import_tasks", dropped_after_the_first_chunk)
    with pytest.raises(LabelStudioError, match="dropped"):
        export_batch(fdb, SEL, target, labelstudio=_access(labelstudio))
    (record,) = fdb.exports.find()
    assert (record["status"], record["attempts"]) == ("in_progress", 1)
    assert {d["export_id"] for d in fdb.selections.find({"selection_id": SEL})} == {None}

    res = export_batch(fdb, SEL, target, labelstudio=_access(labelstudio))
    assert res.server["tasks_added"] == 2 and res.server["tasks_present"] == 2
    record = fdb.exports.find_one({"_id": res.batch_id})
    assert (record["status"], record["attempts"]) == ("done", 2)
    tasks = _tasks(_team(labelstudio), record["server"]["project_id"])
    assert sorted(tasks) == sorted(SCENES)  # four tasks, one per image

    # Another batch of the same images (another score threshold) in the same project: its own four tasks; each
    # batch reads only its own.
    other = export_batch(fdb, SEL, target, ExportConfig(min_score=0.6), labelstudio=_access(labelstudio))
    assert other.batch_id != res.batch_id
    assert other.server["tasks_added"] == 4 and other.server["tasks_present"] == 0
    answer = _team(labelstudio).get("/api/tasks/", params={"project": record["server"]["project_id"]}).json()
    assert answer["total"] == 8
    with LabelStudioClient(labelstudio.url, labelstudio.token) as client:
        mine = client.tasks(record["server"]["project_id"], {"batch_id": res.batch_id})
    assert len(mine) == 4 and {t["data"]["batch_id"] for t in mine} == {res.batch_id}


def test_a_night_held_for_review_ships_to_its_label_studio_project(fdb, selection, labelstudio, monkeypatch):
    """A night held for review with a labelstudio:// target: the review app's Export reads the token from the
    environment (never from the night's record) and pushes the night's one batch as tasks; pressing again makes
    nothing new."""
    from dataclasses import asdict

    from dataengine.ui import views
    from fdb import runs as run_store
    from fdb.runs import NightHold

    target = _target(labelstudio, f"gaze held night {uuid.uuid4().hex[:8]}")
    mined = {"selection_id": SEL, "selected": 4}
    run_store.record_export_intent(fdb, "state-ls-night", mined, NightHold(
        target, asdict(ExportConfig()), {"model_version": MODEL, "detect": {}, "mine": mined, "export": None}))
    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_TOKEN", labelstudio.token)
    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT", str(labelstudio.files_root))

    done = views.export_night(fdb, "state-ls-night", "anna")
    assert done["night"]["status"] == "exported" and not done["already_done"]
    record = fdb.exports.find_one({"_id": done["batch_id"]})
    assert record["target"] == target and record["server"]["kind"] == "labelstudio" and done["counts"]["images"] == 4
    assert labelstudio.token not in json.dumps(list(fdb.scheduled_runs.find()), default=str)
    assert sorted(_tasks(_team(labelstudio), record["server"]["project_id"])) == sorted(SCENES)
    again = views.export_night(fdb, "state-ls-night", "ben")
    assert again["already_done"] and again["batch_id"] == done["batch_id"]


def test_refusals_name_the_server_and_lose_nothing(fdb, selection, labelstudio, mongod, tmp_path, monkeypatch,
                                                   capsys):
    target = _target(labelstudio, f"gaze refused {uuid.uuid4().hex[:8]}")
    wrong = "not-the-token-0123456789"
    with pytest.raises(LabelStudioError) as refused:
        export_batch(fdb, SEL, target, labelstudio=_access(labelstudio, wrong))
    message = str(refused.value)
    assert labelstudio.url in message and "refused the token" in message
    assert "DATAENGINE_LABELSTUDIO_TOKEN" in message and wrong not in message
    with pytest.raises(LabelStudioError, match="no token"):
        export_batch(fdb, SEL, target, labelstudio=LabelStudioAccess(None, str(labelstudio.files_root)))
    dead = f"labelstudio://127.0.0.1:{_closed_port()}/x"
    with pytest.raises(LabelStudioError, match="does not answer.*label-studio start"):
        export_batch(fdb, SEL, dead, labelstudio=_access(labelstudio))
    with pytest.raises(ExportError, match="DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT"):
        export_batch(fdb, SEL, target, labelstudio=LabelStudioAccess(labelstudio.token, None))
    with pytest.raises(ExportError, match="must not carry credentials"):
        export_batch(fdb, SEL, f"labelstudio://me:{wrong}@127.0.0.1:{labelstudio.port}/x",
                     labelstudio=_access(labelstudio))
    assert fdb.exports.count_documents({}) == 0  # nothing recorded, nothing lost

    # The command line says the same, with its exit code; then the right token pushes the same batch.
    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT", str(labelstudio.files_root))
    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_TOKEN", wrong)
    from dataengine.cli import main

    assert main(["export", "--selection", SEL, "--to", target]) == 3
    err = capsys.readouterr().err
    assert "refused the token" in err and wrong not in err
    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_TOKEN", labelstudio.token)
    assert main(["export", "--selection", SEL, "--to", target]) == 0
    out = capsys.readouterr().out
    assert "4 tasks added, 0 already there" in out
    (record,) = fdb.exports.find()

    # A pull with a wrong token writes nothing; a pull before anyone labelled anything imports nothing.
    with pytest.raises(LabelStudioError, match="refused the token"):
        pull_labels(fdb, target, record["_id"], _access(labelstudio, wrong))
    with pytest.raises(LabelImportError, match="no task of batch .* has a completed annotation yet"):
        pull_labels(fdb, target, record["_id"], _access(labelstudio))
    assert label_store.latest_version(fdb, record["_id"]) is None
    assert fdb.exports.find_one({"_id": record["_id"]})["status"] == "done"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------- no server
def test_what_a_pull_refuses_is_named():
    export = {"_id": "batch-x", "images": [{"image_id": "i1", "file_name": "a.png", "width": 80, "height": 60}]}
    rotated = {"id": "r1", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5,
                                                                "rotation": 30, "rectanglelabels": ["car"]}}
    tasks = [{"id": 7, "data": {"image_id": "i1"}, "annotations": [{"id": 3, "result": [rotated]}]},
             {"id": 8, "data": {"image_id": "elsewhere"}, "annotations": []}]
    pulled = ls.records_from_tasks(tasks, export)
    assert any("task 7 (a.png), annotation 3, region r1: a rectangle rotated by 30" in p for p in pulled.problems)
    assert any("task 8: image_id 'elsewhere' is not in batch batch-x" in p for p in pulled.problems)
    skipped = [{"id": 9, "data": {"image_id": "i1"}, "annotations": [{"id": 4, "was_cancelled": True,
                                                                       "result": []}]}]
    assert ls.records_from_tasks(skipped, export).waiting == ["a.png"]


def test_labeling_config_holds_the_classes():
    config = ls.labeling_config(["stop sign", "car & bus"], polygons=False)
    assert ls._config_shape(config) == (["stop sign", "car & bus"], False)
    assert ls._config_shape(ls.labeling_config(["a"], polygons=True)) == (["a"], True)
    assert ls._config_shape('<View><Image name="img" value="$image"/></View>') is None
