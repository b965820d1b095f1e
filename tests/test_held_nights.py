"""A night held for review (`dataengine nightly --hold-for-review`): its states in fdb (awaiting_review ->
exporting -> exported | rejected) against a real mongod, its one batch however often (or however concurrently)
Export is pressed, and the flow: a held night exports nothing, the next night detects but does not mine, and the
review app's Export ships the night to the target the night recorded."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import run_at_once
from test_export import SEL, haystack  # noqa: F401 - the fixture: a selection of four images ready to export

from annotation_export import held_nights
from annotation_export.config import ExportConfig
from annotation_export.export import ExportError, HeldForReview, export_batch
from fdb import runs as run_store
from fdb import selections as selection_store
from fdb.runs import NightHold, NightNotWaiting

STATE = "state-test-night"


def hold(fdb, target: Path, state: str = STATE, selection_id: str = SEL, **config) -> dict:
    mined = {"selection_id": selection_id, "selected": 4}
    report = {"model_version": "m-test", "detect": {}, "mine": mined, "export": None}
    night = NightHold(str(target), {**asdict(ExportConfig()), **config}, report)
    return run_store.record_export_intent(fdb, state, mined, night)


def test_a_held_night_waits_and_blocks_until_it_is_exported_once(fdb, haystack, tmp_path):  # noqa: F811
    record = hold(fdb, tmp_path / "night-queue")
    assert record["status"] == "awaiting_review" and record["held"]
    waiting = run_store.waiting_night(fdb)
    assert waiting.night_id == STATE and waiting.selection_id == SEL and waiting.target == str(tmp_path / "night-queue")
    # A run of the same night that does not hold loses the race to the held record: it gets the held record back.
    again = run_store.record_export_intent(fdb, STATE, {"selection_id": "sel-other", "selected": 1})
    assert again["held"] and again["selection_id"] == SEL and again["status"] == "awaiting_review"
    assert run_store.night_of_selection(fdb, SEL).night_id == STATE and run_store.night_of_selection(fdb, "x") is None

    ids = [d["image_id"] for d in fdb.selections.find({"selection_id": SEL}).sort("rank", 1)]
    selection_store.decide(fdb, SEL, ids[0], "rejected", "anna", note="a face")
    selection_store.decide(fdb, SEL, ids[1], "accepted", "anna")
    done = held_nights.export_held_night(fdb, STATE, "anna")
    assert not done.already_done and done.night.status == "exported" and done.night.export_by == "anna"
    assert Path(done.export.location).parent == tmp_path / "night-queue" and done.export.images == 3
    manifest = json.loads((Path(done.export.location) / "manifest.json").read_text())
    assert [r["image_id"] for r in manifest["rejected"]] == [str(ids[0])]
    assert done.night.batch_id == done.export.batch_id and done.night.result["export"]["batch_id"] == done.export.batch_id
    assert run_store.waiting_night(fdb) is None  # mining may go on

    # Pressing again makes nothing: the batch the first press made.
    second = held_nights.export_held_night(fdb, STATE, "ben")
    assert second.already_done and second.export.batch_id == done.export.batch_id
    assert fdb.exports.count_documents({}) == 1 and fdb.exports.find_one({})["attempts"] == 1
    assert run_store.held_night(fdb, STATE).export_by == "anna"
    with pytest.raises(selection_store.SelectionFrozen):
        selection_store.decide(fdb, SEL, ids[2], "rejected", "ben")


def test_concurrent_presses_make_one_batch(fdb, haystack, tmp_path):  # noqa: F811
    hold(fdb, tmp_path / "night-queue")
    answers, refused, failures = [], [], []
    start = threading.Barrier(6)

    def press(n: int) -> None:
        start.wait()
        try:
            answers.append(held_nights.export_held_night(fdb, STATE, f"reviewer-{n}"))
        except NightNotWaiting as exc:
            refused.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - every other failure is collected and reported
            failures.append(repr(exc))

    run_at_once(press, range(6))
    assert failures == [] and len(answers) + len(refused) == 6
    made = [a for a in answers if not a.already_done]
    assert len(made) == 1  # one press exported; the others were told it is being exported, or got its batch
    assert all("is being exported" in r for r in refused)
    assert {a.export.batch_id for a in answers} == {made[0].export.batch_id}
    assert fdb.exports.count_documents({}) == 1 and fdb.exports.find_one({})["attempts"] == 1
    assert run_store.held_night(fdb, STATE).status == "exported"


def test_a_night_with_every_image_rejected_ends_without_a_batch(fdb, haystack, tmp_path):  # noqa: F811
    hold(fdb, tmp_path / "night-queue")
    for d in fdb.selections.find({"selection_id": SEL}):
        selection_store.decide(fdb, SEL, d["image_id"], "rejected", "anna")
    done = held_nights.export_held_night(fdb, STATE, "anna")
    assert done.export is None and done.night.status == "rejected" and done.night.batch_id is None
    assert fdb.exports.count_documents({}) == 0 and not (tmp_path / "night-queue").exists()
    assert run_store.waiting_night(fdb) is None
    assert held_nights.export_held_night(fdb, STATE, "ben").already_done


def test_the_night_ships_with_its_own_recorded_options(fdb, haystack, tmp_path):  # noqa: F811
    hold(fdb, tmp_path / "night-queue", only_accepted=True, min_score=0.8)
    ids = [d["image_id"] for d in fdb.selections.find({"selection_id": SEL}).sort("rank", 1)]
    selection_store.decide(fdb, SEL, ids[3], "accepted", "anna")
    done = held_nights.export_held_night(fdb, STATE, "anna")
    assert done.export.images == 1 and fdb.exports.find_one({})["min_score"] == 0.8


def test_a_failed_export_leaves_the_night_waiting_and_a_dead_press_is_taken_over(fdb, haystack, tmp_path,  # noqa: F811
                                                                                   monkeypatch):
    hold(fdb, tmp_path / "night-queue")
    real = held_nights.export_batch

    def storage_down(*args, **kwargs):
        raise ExportError("the target did not answer")

    monkeypatch.setattr(held_nights, "export_batch", storage_down)
    with pytest.raises(ExportError, match="did not answer"):
        held_nights.export_held_night(fdb, STATE, "anna")
    night = run_store.held_night(fdb, STATE)
    assert night.status == "awaiting_review" and night.export_by is None  # the next press tries again at once
    monkeypatch.setattr(held_nights, "export_batch", real)

    # A press whose process died mid-export leaves the night `exporting`: refused within the lease, taken over after.
    claimed = run_store.claim_held_export(fdb, STATE, "dead-press")
    assert claimed.status == "exporting"
    with pytest.raises(NightNotWaiting, match="dead-press"):
        held_nights.export_held_night(fdb, STATE, "anna")
    fdb.scheduled_runs.update_one({"_id": STATE}, {"$set": {
        "export_started_at": claimed.export_started_at - run_store.EXPORT_LEASE - dt.timedelta(minutes=1)}})
    done = held_nights.export_held_night(fdb, STATE, "anna")
    assert done.night.status == "exported" and done.night.export_by == "anna" and fdb.exports.count_documents({}) == 1
    with pytest.raises(LookupError):
        held_nights.export_held_night(fdb, "state-none", "anna")


def test_held_nights_are_listed_waiting_first(fdb, haystack, tmp_path):  # noqa: F811
    hold(fdb, tmp_path / "q", state="state-old")
    for d in fdb.selections.find({"selection_id": SEL}):
        selection_store.decide(fdb, SEL, d["image_id"], "rejected", "anna")
    held_nights.export_held_night(fdb, "state-old", "anna")  # rejected
    hold(fdb, tmp_path / "q", state="state-new", selection_id="sel-new")
    run_store.record_export_intent(fdb, "state-plain", {"selection_id": "sel-plain", "selected": 1})  # not held
    assert [(n.night_id, n.status) for n in run_store.held_nights(fdb)] == [("state-new", "awaiting_review"),
                                                                           ("state-old", "rejected")]
    assert run_store.waiting_night(fdb).night_id == "state-new"


# ---------------------------------------------------------------------------------------------------- the flow
def test_a_held_night_exports_nothing_the_next_does_not_mine_and_the_app_ships_it(prefect_backend, engine, fdb,
                                                                                   tmp_path, capsys):
    from fastapi.testclient import TestClient

    from dataengine.cli import main
    from dataengine.ui.app import AppSettings, build_app
    from detectors.synthetic import generate
    from flows.nightly import nightly
    from mining.config import MiningConfig

    night_queue, app_queue = tmp_path / "night-queue", tmp_path / "app-queue"
    gt = str(engine / "annotations" / "val.json")
    assert main(["nightly", "--images", str(engine / "images"), "--pattern", "pool_*", "--gt", gt, "--k", "3",
                 "--budget", "4", "--to", str(night_queue), "--hold-for-review"]) == 0
    out = capsys.readouterr().out
    [night] = run_store.held_nights(fdb)
    assert night.status == "awaiting_review" and night.target == str(night_queue) and night.selected > 0
    assert f"held for review as night {night.night_id}: nothing exported" in out
    assert fdb.exports.count_documents({}) == 0 and not night_queue.exists()
    mining_runs = fdb.runs.count_documents({"kind": "mine_hard_cases"})
    selections = sorted(fdb.selections.distinct("selection_id"))

    # The next night brings new images: they are detected, but nothing is mined while the night waits, held or not.
    generate(engine / "night2", n_train=0, n_val=0, n_pool=2, seed=6, width=128, height=96, progress=False)
    for png in (engine / "night2" / "images").glob("pool_*.png"):
        png.rename(engine / "images" / f"pool_night2_{png.name}")
    args = dict(images=str(engine / "images"), pattern="pool_*", gt_json=gt, mining=MiningConfig(k=3, budget=4),
                export_to=str(night_queue))
    second = nightly(**args, hold_for_review=True)
    assert second.detect.images_processed == 2 and second.mine is None and second.export is None
    assert second.review.night_id == night.night_id and not second.held
    third = nightly(**args)
    assert third.mine is None and third.review.night_id == night.night_id
    assert fdb.runs.count_documents({"kind": "mine_hard_cases"}) == mining_runs
    assert sorted(fdb.selections.distinct("selection_id")) == selections and fdb.exports.count_documents({}) == 0

    # The review app: the night is listed; a person rejects an image and presses Export. The batch goes to the
    # night's target, not the app's.
    app = TestClient(build_app(fdb, AppSettings(export_target=str(app_queue), cache_dir=str(tmp_path / "cache"),
                                                user="tester")), base_url="http://127.0.0.1:8765")
    listed = app.get("/api/nights").json()
    assert listed["waiting"] == 1 and listed["nights"][0]["night_id"] == night.night_id
    assert app.get("/api/overview").json()["waiting_nights"] == 1
    selection = app.get(f"/api/selections/{night.selection_id}").json()
    assert selection["night"]["status"] == "awaiting_review" and selection["night"]["target"] == str(night_queue)
    generic = app.post(f"/api/selections/{night.selection_id}/export", json={})
    assert generic.status_code == 409 and "held for review" in generic.json()["detail"]
    assert main(["export", "--selection", night.selection_id, "--to", str(app_queue)]) == 2  # nor by hand
    assert "held for review" in capsys.readouterr().err
    with pytest.raises(HeldForReview, match="held for review"):  # nor by a flow or a script: the export refuses it
        export_batch(fdb, night.selection_id, app_queue)
    rejected = selection["images"][0]["image_id"]
    assert app.post(f"/api/selections/{night.selection_id}/images/{rejected}/decision",
                    json={"decision": "reject", "by": "anna"}).status_code == 200
    pressed = app.post(f"/api/nights/{night.night_id}/export", json={"by": "anna"})
    assert pressed.status_code == 200, pressed.text
    shipped = pressed.json()
    assert not shipped["already_done"] and shipped["night"]["status"] == "exported"
    assert Path(shipped["location"]).parent == night_queue and not app_queue.exists()
    assert shipped["counts"]["images"] == night.selected - 1
    again = app.post(f"/api/nights/{night.night_id}/export", json={}).json()
    assert again["already_done"] and again["batch_id"] == shipped["batch_id"]
    assert fdb.exports.count_documents({}) == 1
    for page in ("/nights", f"/selections/{night.selection_id}", "/"):
        assert app.get(page).status_code == 200, page
    assert "exported" in app.get("/nights").text

    # Exported: the next night mines again (held again, as it was told), without the shipped or rejected images.
    fourth = nightly(**args, hold_for_review=True)
    assert fourth.mine is not None and fourth.held and fourth.mine.selection_id != night.selection_id
    taken = set(map(str, fdb.selections.distinct("image_id", {"selection_id": night.selection_id})))
    chosen = set(map(str, fdb.selections.distinct("image_id", {"selection_id": fourth.mine.selection_id})))
    shipped_or_rejected = {str(i["image_id"]) for i in fdb.exports.find_one({})["images"]} | {rejected}
    assert shipped_or_rejected <= taken and not chosen & shipped_or_rejected
    assert fdb.exports.count_documents({}) == 1
