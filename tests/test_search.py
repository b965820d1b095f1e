"""Query by example: `dataengine search` over a tiny detected pool (an image finds itself, a pool detection's box
finds its image), its refusals, and the review app's "find similar" over the vectors the store holds."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dataengine.cli import main
from dataengine.ui.app import AppSettings, build_app
from fdb import images as image_store


@pytest.fixture()
def pool(engine, fdb, capsys):
    """The engine's six pool images detected (every detection kept, so each image has some) by its tiny model."""
    assert main(["detect", "--images", str(engine / "images"), "--pattern", "pool_*", "--min-score", "0"]) == 0
    capsys.readouterr()
    return sorted((engine / "images").glob("pool_*.png"))


def _counts(fdb) -> dict:
    return {name: getattr(fdb, name).count_documents({}) for name in ("images", "detections", "features")}


def _listed(out: str, after: str) -> list[str]:
    """The uris of the numbered lines that follow the line starting with `after`, up to the next other line."""
    listed = []
    for line in out.split(after, 1)[1].splitlines()[1:]:
        if not line.strip()[:1].isdigit():
            break
        listed.append(line.split()[-1])
    return listed


def test_an_image_of_the_pool_finds_itself_first(pool, fdb, tmp_path, capsys):
    before = _counts(fdb)
    query = pool[2]
    assert main(["search", "--image", str(query), "--k", "4", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    images = _listed(out, "model ")
    assert len(images) == 4 and images[0] == str(query.resolve())
    assert abs(float(out.split("d=", 1)[1].split()[0])) < 1e-3  # the distance to itself
    montage = next(tmp_path.glob("out/search-*.png"))
    assert f"montage of the query and its nearest hits: {montage}" in out
    assert _counts(fdb) == before  # the query image was not recorded


def test_a_pool_detections_box_finds_its_image_first(pool, fdb, tmp_path, capsys):
    image = image_store.by_uri(fdb, [str(pool[4].resolve())])[str(pool[4].resolve())]
    det = fdb.detections.find_one({"image_id": image["_id"]}, sort=[("score", -1)])
    box = ",".join(f"{v:.2f}" for v in det["box"])
    assert main(["search", "--image", str(pool[4]), "--box", box, "--k", "5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pool detections nearest to the box" in out
    detections = _listed(out, "model ")
    assert detections[0] == image["uri"] and len(detections) == 5
    assert _listed(out, "their ")[0] == image["uri"]


@pytest.mark.parametrize("args, message", [
    (["--image", "/no/such/picture.png"], "no image file /no/such/picture.png"),
    (["--box", "1,2,3"], "--box takes four numbers x,y,w,h"),
    (["--box", "1,2,0,5"], "must be positive"),
    (["--box", "500,500,10,10"], "does not overlap the 128x96 image"),
    (["--image", __file__], "is not an image the model can read"),
])
def test_bad_input_is_one_line_and_exit_2(engine, args, message, capsys):
    image = ["--image", str(next((engine / "images").glob("pool_*.png")))] if args[0] != "--image" else []
    assert main(["search", *image, *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and message in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""


def test_no_production_model_is_one_line(data_home, mongod, fdb, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    Image.new("RGB", (32, 32)).save(tmp_path / "q.png")
    assert main(["search", "--image", str(tmp_path / "q.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no production model yet") and err.count("\n") == 1


def test_the_app_finds_a_detections_own_image_first(pool, fdb, engine, tmp_path):
    app = TestClient(build_app(fdb, AppSettings(cache_dir=str(tmp_path / "cache"),
                                                index_root=str(engine.parent / "home" / "indexes"))),
                     base_url="http://127.0.0.1:8765")
    det = fdb.detections.find_one({}, sort=[("score", -1)])
    found = app.get("/api/similar", params={"owner": str(det["_id"]), "layer": "box", "k": 5}).json()
    assert found["query"]["image_id"] == str(det["image_id"]) and found["model_version"] == "tiny-v1"
    assert found["hits"][0]["image_id"] == str(det["image_id"]) and len(found["hits"]) == 5
    assert found["hits"][0]["detection_id"] == str(det["_id"]) and found["hits"][0]["distance"] < 1e-4
    by_image = app.get("/api/similar", params={"owner": str(det["image_id"]), "layer": "image", "k": 3}).json()
    assert by_image["hits"][0]["image_id"] == str(det["image_id"]) and len(by_image["hits"]) == 3
    page = app.get("/similar", params={"owner": str(det["_id"]), "layer": "box"})
    assert page.status_code == 200 and f"/images/{det['image_id']}" in page.text
    assert app.get(f"/images/{det['image_id']}").text.count("find similar") >= 2  # the image and its detections
    assert app.get("/api/similar", params={"owner": "000000000000000000000000", "layer": "box"}).status_code == 404
