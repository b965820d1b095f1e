"""The review app over a database a tiny demo filled: its JSON API (each endpoint, its documented shapes, the
refusals, the token), and a real browser (Debian's chromium, driven by Playwright) clicking from the errors to a
query, to its neighbours, to the selection, rejecting an image and exporting the rest; and rendering the API's
documentation pages with no network."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

import pymongo
import pytest
from fastapi.testclient import TestClient

from dataengine.ui import views
from dataengine.ui.app import AppSettings, build_app
from fdb import StoreConfig
from fdb import images as image_store
from fdb import models as model_store
from fdb.store import FeatureDB

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS") or REPO / "test-artifacts") / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "a-test-token-of-24-chars"


@pytest.fixture(scope="module")
def world(tiny_demo, mongod):
    """The session's tiny demo (seed model, pool detected, mined and random batches exported and labelled), then one
    more mining run whose two selections are left to curate, and a nightly run held for review (its selection waits
    for a person to curate and export it, to the night's own target)."""
    from flows.nightly import nightly
    from mining.config import MatchConfig, MiningConfig
    from tasks.index import update_pool_index
    from tasks.mine import mine, read_labelled_set

    tmp, name = tiny_demo["tmp"], tiny_demo["database"]  # the demo's own database
    client = pymongo.MongoClient(mongod.uri, serverSelectionTimeoutMS=30_000, tz_aware=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
        mp.setenv("DATAENGINE_HOME", str(tiny_demo["home"]))
        fdb = FeatureDB(client[name])
        seed = model_store.production_version(fdb)
        store = StoreConfig(home=str(tiny_demo["home"]), uri=mongod.uri, db_name=name)
        data = tiny_demo["root"] / "synthetic"
        # The night first, so the selection to curate below is the newest that used each query (the query page
        # links it); another budget, so the two are different selections (an id derives from its inputs).
        mp.setenv("DATAENGINE_DB", name)  # the flow reads the environment: the demo's database
        night = nightly(images=str(data / "images"), pattern="pool_*", gt_json=str(data / "annotations" / "val.json"),
                        gt_images=str(data / "images"), mining=MiningConfig(k=3, budget=2, random_arm=False),
                        match=MatchConfig(score_threshold=0.0), export_to=str(tmp / "night-queue"),
                        hold_for_review=True)
        labelled = read_labelled_set.fn(store, str(data / "annotations" / "val.json"), str(data / "images"))
        update_pool_index.fn(store, seed, MiningConfig(k=3, budget=3))
        curate = mine.fn(store, seed, labelled, MiningConfig(k=3, budget=3), MatchConfig(score_threshold=0.0))
    assert curate.selected > 1 and curate.random_selection_id
    assert night.held and night.mine.selected > 1 and night.mine.selection_id != curate.selection_id
    yield {"fdb": fdb, "tmp": tmp, "seed": seed, "mined": curate.selection_id,
           "random": curate.random_selection_id, "night": night.review.night_id,
           "night_selection": night.mine.selection_id, "night_target": str(tmp / "night-queue")}
    client.close()


def make_client(world, **settings) -> TestClient:
    settings = {"export_target": str(world["tmp"] / "queue"), "cache_dir": str(world["tmp"] / "cache"),
                "user": "tester", **settings}
    return TestClient(build_app(world["fdb"], AppSettings(**settings)), base_url="http://127.0.0.1:8765")


@pytest.fixture(scope="module")
def api(world):
    return make_client(world)


# ---------------------------------------------------------------------------------------------------- reads
def test_every_page_and_its_api_twin_answer_with_the_demo_data(world, api):
    overview = api.get("/api/overview").json()
    assert overview["production"] == world["seed"] and overview["counts"]["exports"] == 2
    assert overview["selections"] and overview["batches"] and overview["counts"]["errors"] > 0
    models = api.get("/api/models").json()
    assert models["production"] == world["seed"]
    assert {m["version"] for m in models["models"]} >= {world["seed"]} and len(models["models"]) >= 4
    assert all(isinstance(m["bbox_map"], float) for m in models["models"])  # the seed's val mAP, the arms' superset
    # The demo reported its arms on a test split: each arm shows its test numbers, the seed (never on it) none.
    arms = [m for m in models["models"] if m["role"] == "arm"]
    assert len(arms) == 3 and all(isinstance(m["test"]["superset"], float) for m in arms)
    assert all(isinstance(m["test"]["fp_per_image"], float) for m in arms)
    assert next(m for m in models["models"] if m["version"] == world["seed"])["test"] is None
    page = api.get("/models").text
    assert "test mAP (all / tail)" in page and f"{arms[0]['test']['superset']:.3f}" in page
    assert "on the test split" in api.get(f"/models/{arms[0]['version']}").text
    model = api.get(f"/api/models/{world['seed']}").json()
    assert {r["kind"] for r in model["runs"]} >= {"mine_hard_cases", "compare"}
    compare = next(r for r in model["runs"] if r["kind"] == "compare")
    report = api.get(compare["report"])  # the demo's HTML report, served from the path its run recorded
    assert report.status_code == 200 and "<html" in report.text.lower()

    errors = api.get("/api/errors").json()
    assert errors["model_version"] == world["seed"] and errors["total"] == sum(errors["facets"]["type"].values()) > 0
    one_type = next(iter(errors["facets"]["type"]))
    filtered = api.get("/api/errors", params={"type": one_type}).json()
    assert filtered["total"] == errors["facets"]["type"][one_type]
    assert {e["type"] for e in filtered["errors"]} == {one_type}
    queried = [e for e in errors["errors"] if e["queried_in"]]
    assert queried, "some error was searched with"

    query = api.get(f"/api/queries/{queried[0]['error_id']}").json()
    distances = [n["distance"] for n in query["neighbours"]]
    assert query["index_version"] and 0 < len(distances) <= 3 and distances == sorted(distances)
    assert query["selection_id"] == world["mined"] and "searched with" in query["reason"]

    selection = api.get(f"/api/selections/{world['mined']}").json()
    ranks = [im["rank"] for im in selection["images"]]
    assert ranks == sorted(ranks) and selection["partner"]["selection_id"] == world["random"]
    assert selection["queries"] and all(im["reason"] for im in selection["images"])
    # Its strategy, and what each error type cost the model on the labelled set (TIDE, from the mining run).
    assert selection["strategy"] == "errors" and set(selection["error_cost"]) == {
        "fp_background", "fp_wrong_class", "fp_localisation", "miss"}
    # Beside the mAP, what each type costs at the operating point: its count at the threshold x its unit cost (1).
    priced = selection["operating_point_cost"]
    assert set(priced) == set(selection["error_cost"]) and all(v >= 0 for v in priced.values())
    assert "operating-point cost" in api.get(f"/selections/{world['mined']}").text
    listed = api.get("/api/selections").json()["selections"]
    assert {world["mined"], world["random"]} <= {s["selection_id"] for s in listed}
    nights = api.get("/api/nights").json()
    assert nights["waiting"] == 1 and [n["night_id"] for n in nights["nights"]] == [world["night"]]
    assert nights["nights"][0]["status"] == "awaiting_review" and overview["waiting_nights"] == 1
    assert selection["night"] is None  # a selection no night held

    batches = api.get("/api/batches").json()["batches"]
    labelled = [b for b in batches if b["status"] == "labelled"]
    assert len(labelled) == 2
    batch = api.get(f"/api/batches/{labelled[0]['batch_id']}").json()
    t = batch["changes"]["totals"]
    assert batch["label_versions"][0]["label_version"] == 1
    assert t["kept"] + t["moved"] + t["relabelled"] + t["removed"] == t["sent"]
    assert t["kept"] + t["moved"] + t["relabelled"] + t["added"] == t["returned"] > 0

    image = api.get(f"/api/images/{selection['images'][0]['image_id']}").json()
    assert image["selections"] and image["model_version"] == world["seed"]

    for path in ["/", "/models", f"/models/{world['seed']}", "/errors", f"/errors?type={one_type}",
                 f"/queries/{queried[0]['error_id']}", "/selections", f"/selections/{world['mined']}", "/nights",
                 f"/selections/{world['night_selection']}", "/batches",
                 f"/batches/{labelled[0]['batch_id']}", f"/images/{image['image_id']}", "/docs"]:
        page = api.get(path)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], path
    schema = api.get("/openapi.json").json()
    assert "/api/queries/{error_id}" in schema["paths"]
    # The API documents what it returns: each JSON endpoint names its response model, and the models their fields.
    returned = schema["paths"]["/api/selections/{selection_id}"]["get"]["responses"]["200"]["content"]
    assert returned["application/json"]["schema"] == {"$ref": "#/components/schemas/SelectionWithImages"}
    assert {"images", "partner", "frozen"} <= set(schema["components"]["schemas"]["SelectionWithImages"]["properties"])
    assert all("$ref" in op["responses"]["200"]["content"]["application/json"]["schema"]
               for path, ops in schema["paths"].items() if path.startswith("/api/") for op in ops.values())


def test_pictures_are_cut_from_fdb_images_and_cached_by_content(world, api):
    errors = api.get("/api/errors").json()["errors"]
    cache = world["tmp"] / "cache"
    first = api.get(f"/media/errors/{errors[0]['error_id']}.jpg")
    assert first.status_code == 200 and first.content[:2] == b"\xff\xd8"  # a JPEG
    files = sorted(cache.rglob("*.jpg"))
    again = api.get(f"/media/errors/{errors[0]['error_id']}.jpg")
    assert again.content == first.content and sorted(cache.rglob("*.jpg")) == files  # served from the cache
    assert api.get(f"/media/errors/{errors[0]['error_id']}.jpg?size=96").content != first.content
    assert len(sorted(cache.rglob("*.jpg"))) == len(files) + 1
    # A detection's crop, and a whole image with the detections a selection's queries reached.
    stored = world["fdb"].detections.find_one({"model_version": world["seed"]}) or _a_stored_detection(world)
    image = api.get(f"/api/images/{stored['image_id']}", params={"min_score": 0}).json()
    assert str(stored["_id"]) in {d["detection_id"] for d in image["detections"]}
    detection = api.get(f"/media/detections/{stored['_id']}.jpg")
    assert detection.status_code == 200 and detection.content[:2] == b"\xff\xd8"
    selected = api.get(f"/api/selections/{world['mined']}").json()["images"][0]["image_id"]
    whole = api.get(f"/media/images/{selected}.jpg", params={"selection": world["mined"], "size": 200})
    assert whole.status_code == 200 and whole.content[:2] == b"\xff\xd8"



def _a_stored_detection(world) -> dict:
    """A detection of the seed on a pool image, written through the store. The tiny world's seed (3 steps) may keep
    no detection above the detect stage's min_score on the pool: on some CPUs it does, on others not."""
    from fdb import detections as detection_store
    from records import Detection

    fdb = world["fdb"]
    image = fdb.images.find_one({"split": "pool"})
    detection_store.write_detections(fdb, world["seed"], [Detection(0, [2.0, 2.0, 20.0, 16.0], 0.9, 1, "stop_sign",
                                                                    image_id=image["_id"])])
    return fdb.detections.find_one({"model_version": world["seed"], "image_id": image["_id"]})

# ---------------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("path", [
    "/media/images/..%2F..%2F..%2Fetc%2Fpasswd.jpg",  # a path where an id belongs
    "/media/images/%2Fetc%2Fpasswd.jpg",
    "/media/images/000000000000000000000000.jpg",  # an id no record has
    "/media/detections/not-an-id.jpg",
    "/static/../pyproject.toml",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
    "/reports/000000000000000000000000",
    "/api/selections/sel-does-not-exist",
    "/api/batches/batch-nope",
    "/api/queries/000000000000000000000000",
    "/api/models/no-such-model",
])
def test_paths_that_are_not_records_are_refused(api, path):
    response = api.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert b"root:" not in response.content and b"[project]" not in response.content


def test_writes_must_be_json_from_the_app_itself(world, api):
    image_id = api.get(f"/api/selections/{world['random']}").json()["images"][0]["image_id"]
    url = f"/api/selections/{world['random']}/images/{image_id}/decision"
    assert api.post(url, data={"decision": "reject"}).status_code == 415  # a cross-site form cannot send JSON
    assert api.post(url, json={"decision": "reject"}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert api.get("/api/models", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
    assert api.post(url, json={"decision": "maybe"}).status_code == 422
    assert api.post(f"/api/selections/{world['random']}/images/000000000000000000000000/decision",
                    json={"decision": "reject"}).status_code == 404
    assert views.selection(world["fdb"], world["random"])["counts"]["rejected"] == 0  # nothing was written


def test_a_non_loopback_bind_needs_a_token(world):
    with pytest.raises(ValueError, match="token"):
        AppSettings(host="0.0.0.0").check()
    with pytest.raises(ValueError, match="16 characters"):
        AppSettings(host="0.0.0.0", token="short").check()
    AppSettings(host="0.0.0.0", token=TOKEN).check()
    client = make_client(world, host="0.0.0.0", token=TOKEN)
    assert client.get("/api/models").status_code == 401
    assert client.get("/errors", headers={"Accept": "text/html"}).status_code == 401
    assert client.get("/api/models", headers={"Authorization": "Bearer wrong-token-of-24-chars"}).status_code == 401
    assert client.get("/api/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    login = client.get(f"/errors?token={TOKEN}", follow_redirects=False)
    assert login.status_code == 303 and "token" not in login.headers["location"]
    assert client.get("/errors").status_code == 200  # the cookie the login set
    assert make_client(world).get("/api/models").status_code == 200  # loopback: no token asked


# ---------------------------------------------------------------------------------------------------- writes
def test_decisions_are_recorded_idempotent_and_the_export_ships_the_rest(world, api):
    fdb, selection_id = world["fdb"], world["random"]
    images = api.get(f"/api/selections/{selection_id}").json()["images"]
    rejected, accepted = images[0]["image_id"], images[1]["image_id"]
    url = f"/api/selections/{selection_id}/images/{{}}/decision"
    first = api.post(url.format(rejected), json={"decision": "reject", "by": "anna", "note": "faces"}).json()
    again = api.post(url.format(rejected), json={"decision": "reject", "by": "anna", "note": "faces"}).json()
    assert first["changed"] and not again["changed"] and len(again["history"]) == 1
    assert again["decision"] == "rejected" and again["by"] == "anna"
    api.post(url.format(accepted), json={"decision": "accept"})
    flip = api.post(url.format(accepted), json={"decision": "reject"}).json()
    back = api.post(url.format(accepted), json={"decision": "accept"}).json()
    assert [h["decision"] for h in back["history"]] == ["accepted", "rejected", "accepted"] and flip["by"] == "tester"
    # A rejected image leaves the pool mining draws from, as an exported one does.
    from bson import ObjectId

    assert ObjectId(rejected) not in image_store.eligible_among(fdb, world["seed"], [ObjectId(rejected)])

    shipped = api.post(f"/api/selections/{selection_id}/export", json={}).json()
    manifest = json.loads((Path(shipped["location"]) / "manifest.json").read_text())
    assert shipped["counts"]["images"] == len(images) - 1
    assert rejected not in {row["image_id"] for row in manifest["images"]}
    assert [r["image_id"] for r in manifest["rejected"]] == [rejected]
    assert manifest["rejected"][0]["rejected_by"] == "anna" and manifest["rejected"][0]["note"] == "faces"
    assert {row["image_id"]: row["decision"] for row in manifest["images"]}[accepted] == "accepted"
    # Exported: the decisions are final, and the batch page says what was left out.
    late = api.post(url.format(accepted), json={"decision": "reject"})
    assert late.status_code == 409 and "exported" in late.json()["detail"]
    batch = api.get(f"/api/batches/{shipped['batch_id']}").json()
    assert [r["image_id"] for r in batch["rejected"]] == [rejected] and batch["images"] == len(images) - 1


# ---------------------------------------------------------------------------------------------------- browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def served(world):
    """The app on a real loopback port, served by uvicorn in a thread."""
    import uvicorn

    port = _free_port()
    settings = AppSettings(port=port, export_target=str(world["tmp"] / "queue"),
                           cache_dir=str(world["tmp"] / "cache"), index_root=str(world["tmp"] / "home" / "indexes"),
                           user="tester")
    server = uvicorn.Server(uvicorn.Config(build_app(world["fdb"], settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _browser(p):
    if os.environ.get("GAZE_NO_BROWSER") == "1":
        pytest.skip("GAZE_NO_BROWSER=1: install.sh was told not to install chromium")
    assert Path(CHROMIUM).exists(), "chromium is missing: ./install.sh installs Debian's package"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def test_the_api_docs_render_with_no_network(served):
    """/docs and /redoc load Swagger UI and ReDoc from the app itself: with every request to another host refused,
    the operations are listed (and none was even asked for)."""
    from playwright.sync_api import expect, sync_playwright

    outside = []

    def loopback_only(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    paths = json.loads(urlopen(served + "/openapi.json", timeout=10).read())["paths"]
    operations = sum(len(ops) for ops in paths.values())
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.route("**/*", loopback_only)
        page.goto(served + "/docs")
        expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
        expect(page.locator(".opblock")).to_have_count(operations)
        expect(page.locator(".opblock-summary-path", has_text="/api/queries/{error_id}")).to_be_visible()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "docs.png")
        page.goto(served + "/redoc")
        expect(page.get_by_role("heading", name="gaze data engine: review app")).to_be_visible(timeout=30_000)
        browser.close()
    assert outside == [], f"the documentation pages asked other hosts for {outside}"


def test_a_person_curates_a_selection_in_a_real_browser(world, served):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(served + "/models")
        expect(page.locator("#models")).to_contain_text(world["seed"])
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "models.png", full_page=True)

        page.click("#nav-errors")
        expect(page.locator("#errors .card").first).to_be_visible()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "errors.png", full_page=True)
        page.locator("a.query-link").first.click()

        expect(page.locator("h1")).to_contain_text("Query")
        neighbours = page.locator("#neighbours .card")
        expect(neighbours.first).to_be_visible()
        assert 0 < neighbours.count() <= 3
        page.wait_for_load_state("networkidle")
        assert page.evaluate("() => [...document.querySelectorAll('#neighbours img, #query-crop img')]"
                             ".every(i => i.complete && i.naturalWidth > 0)"), "a crop did not load"
        page.screenshot(path=ARTIFACTS / "query.png", full_page=True)
        page.click("#selection-link")

        expect(page.locator("h1")).to_contain_text(world["mined"])
        cards = page.locator("#images .card")
        n_images = cards.count()
        assert n_images > 1
        page.fill("#reviewer", "browser-tester")
        first = cards.first
        rejected = first.get_attribute("data-image")
        first.locator("button.reject").click()
        expect(first.locator(".status")).to_have_text("rejected by browser-tester")
        expect(page.locator("#counts")).to_contain_text("1 rejected")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "selection.png", full_page=True)

        page.click("#export")
        expect(page.locator("#batch-link")).to_be_visible(timeout=30_000)
        page.click("#batch-link")
        expect(page.locator("h1")).to_contain_text("batch-")
        shipped = page.locator("#batch-images .card").evaluate_all("cards => cards.map(c => c.dataset.image)")
        expect(page.locator("#rejected")).to_contain_text("browser-tester")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "batch.png", full_page=True)
        page.goto(served + "/batches")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "batches.png", full_page=True)
        browser.close()

    assert rejected not in shipped and len(shipped) == n_images - 1
    batch_id = views.selection(world["fdb"], world["mined"])["export_id"]
    location = Path(views.batch(world["fdb"], batch_id)["target"])
    manifest = json.loads((location / "manifest.json").read_text())
    assert rejected not in {row["image_id"] for row in manifest["images"]}
    assert manifest["rejected"][0]["image_id"] == rejected
    assert manifest["rejected"][0]["rejected_by"] == "browser-tester"
    cvat = (location / "annotations.xml").read_text()
    coco = json.loads((location / "annotations" / "instances_default.json").read_text())
    assert len(coco["images"]) == n_images - 1 == cvat.count("<image ")
    assert {p.name for p in ARTIFACTS.glob("*.png")} >= {"models.png", "errors.png", "query.png", "selection.png",
                                                          "batch.png"}


def test_a_held_night_goes_through_its_review_states_in_a_real_browser(world, served):
    """A night held for review is listed as awaiting review; a person accepts and rejects its images and presses
    Export: the night is exported, its one batch at the night's own target (not the app's), and a second press
    makes no other."""
    from playwright.sync_api import expect, sync_playwright

    night = world["night"]
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(served + "/")
        expect(page.locator("#waiting-nights")).to_contain_text("1 night held for review")
        page.click("#nav-nights")
        row = page.locator(f"#nights tr[data-night='{night}']")
        expect(row.locator(".badge")).to_have_text("awaiting review")
        page.screenshot(path=ARTIFACTS / "nights.png", full_page=True)
        row.locator("a.night-selection").click()

        expect(page.locator("h1")).to_contain_text(world["night_selection"])
        expect(page.locator("#night-status")).to_have_text("awaiting review")
        expect(page.locator("#night-target")).to_have_text(world["night_target"])
        cards = page.locator("#images .card")
        n_images = cards.count()
        assert n_images > 1
        page.fill("#reviewer", "night-reviewer")
        accepted, rejected = cards.nth(0), cards.nth(1)
        accepted.locator("button.accept").click()
        expect(accepted.locator(".status")).to_have_text("accepted by night-reviewer")
        rejected.locator("button.reject").click()
        expect(rejected.locator(".status")).to_have_text("rejected by night-reviewer")
        expect(page.locator("#counts")).to_contain_text("1 accepted · 1 rejected")
        shipping = n_images - 1
        expect(page.locator("#export")).to_have_text(f"Export the night: {shipping} image{'' if shipping == 1 else 's'}")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "night-selection.png", full_page=True)
        rejected_id = rejected.get_attribute("data-image")

        page.click("#export")
        expect(page.locator("#batch-link")).to_be_visible(timeout=30_000)
        expect(page.locator("#night-status")).to_have_text("exported")
        page.goto(served + "/nights")
        expect(row.locator(".badge")).to_have_text("exported")
        expect(page.locator("#waiting-count")).to_have_text("0 nights waiting")
        page.screenshot(path=ARTIFACTS / "nights-exported.png", full_page=True)
        page.goto(served + f"/selections/{world['night_selection']}")
        expect(page.locator("#export")).to_have_count(0)  # exported: no button, the batch instead
        expect(page.locator("#batch-link")).to_be_visible()
        browser.close()

    [listed] = views.nights(world["fdb"])["nights"]
    assert listed["status"] == "exported" and listed["export_by"] == "night-reviewer" and listed["batch_id"]
    location = Path(views.batch(world["fdb"], listed["batch_id"])["target"])
    assert location.parent == Path(world["night_target"])  # the night's target, not the app's queue
    manifest = json.loads((location / "manifest.json").read_text())
    assert len(manifest["images"]) == n_images - 1 and [r["image_id"] for r in manifest["rejected"]] == [rejected_id]
    again = views.export_night(world["fdb"], night, "someone-else")
    assert again["already_done"] and again["batch_id"] == listed["batch_id"]
    assert sum(b["selection_id"] == world["night_selection"] for b in views.batches(world["fdb"])["batches"]) == 1


def test_find_similar_from_an_image_page_in_a_real_browser(world, served):
    """An image page's "find similar" opens the pool images nearest to its stored vector, the image itself first."""
    from playwright.sync_api import expect, sync_playwright

    image_id = views.selection(world["fdb"], world["mined"])["images"][0]["image_id"]
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(served + f"/images/{image_id}")
        page.click("#find-similar")
        expect(page.locator("h1")).to_contain_text("Similar to an image")
        hits = page.locator("#similar .card")
        expect(hits.first).to_be_visible()
        first_image = hits.first.get_by_role("link", name="image", exact=True)
        expect(first_image).to_have_attribute("href", f"/images/{image_id}")  # the image itself, at distance 0
        page.wait_for_load_state("networkidle")
        assert page.evaluate("() => [...document.querySelectorAll('#similar img, #similar-query img')]"
                             ".every(i => i.complete && i.naturalWidth > 0)"), "a picture did not load"
        page.screenshot(path=ARTIFACTS / "similar.png", full_page=True)
        browser.close()
