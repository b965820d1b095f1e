"""Which database the review app opens: after `dataengine demo` the README's next command, `dataengine ui`, must
show the demo's data, which lives in a database of its own (`<name>-demo-<hash>`)."""

from __future__ import annotations

import datetime as dt

from dataengine.ui.server import newest_demo_if_empty
from fdb.store import FeatureDB


def test_an_empty_default_database_gives_way_to_the_newest_demo(mongo_client, fdb, store):
    said = []
    for suffix, day in (("old", 1), ("new", 2)):
        mongo_client[f"{store.db_name}-demo-{suffix}"]["runs"].insert_one(
            {"kind": "demo", "started_at": dt.datetime(2026, 12, day, tzinfo=dt.timezone.utc)})
    try:
        opened, opened_store = newest_demo_if_empty(fdb, store, said.append)
        assert opened.db.name == opened_store.db_name == f"{store.db_name}-demo-new"
        assert "is empty: opening the newest demo's" in said[0]
        # A default database that holds images is the one opened, demo or not.
        fdb.images.insert_one({"uri": "/a.png"})
        kept, kept_store = newest_demo_if_empty(fdb, store, said.append)
        assert kept.db.name == kept_store.db_name == store.db_name and len(said) == 1
    finally:
        for suffix in ("old", "new"):
            mongo_client.drop_database(f"{store.db_name}-demo-{suffix}")


def test_without_a_demo_the_empty_database_stays(fdb, store):
    opened, _ = newest_demo_if_empty(fdb, store, lambda line: None)
    assert isinstance(opened, FeatureDB) and opened.db.name == store.db_name


def test_an_empty_database_gets_a_page_that_says_what_to_run_not_a_table_of_zeros(fdb, tmp_path):
    from fastapi.testclient import TestClient

    from dataengine.ui.app import AppSettings, build_app

    app = TestClient(build_app(fdb, AppSettings(cache_dir=str(tmp_path / "cache"))), base_url="http://127.0.0.1:8765")
    page = app.get("/").text
    assert 'id="empty-database"' in page and "dataengine demo" in page and "DATAENGINE_DB" in page
    assert "images quarantined" not in page  # the counts table is not shown
    fdb.images.insert_one({"uri": "/a.png", "status": "ok"})
    page = app.get("/").text
    assert 'id="empty-database"' not in page and "images quarantined" in page
