"""A night lists what arrived since the last complete night (storage.list_images_since, fdb.listings), so the
database is asked about the night's images, not the archive's."""

from __future__ import annotations

import os
import shutil

from PIL import Image

from fdb import listings
from storage import list_images, list_images_since


def image(path, shade: int = 0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(path)
    return path


def test_a_local_listing_from_a_mark_finds_only_what_arrived_after_it(tmp_path):
    root = tmp_path / "incoming"
    old = [image(root / "2026-11-29" / f"{i}.png", i) for i in range(3)]
    first = list_images_since(root)
    assert first.uris == sorted(str(p.resolve()) for p in old) and first.scanned == 3
    assert first.mark == max(p.stat().st_ctime_ns for p in old)
    # The next night: a new folder, and a file copied in with its old modification time kept (rsync -a, cp -p):
    # its change time is still the time it arrived.
    new = image(root / "2026-11-30" / "a.png", 10)
    kept_mtime = root / "2026-11-30" / "copied.png"
    shutil.copy2(old[0], kept_mtime)
    os.utime(kept_mtime, ns=(0, 0))
    second = list_images_since(root, since=first.mark)
    assert second.uris == sorted([str(new.resolve()), str(kept_mtime.resolve())])
    # Only the new folder's files were stat'ed: nothing arrived in the old one since the mark.
    assert second.scanned == 2 and second.mark > first.mark
    assert list_images_since(root, since=second.mark).uris == []
    assert list_images(root) == list_images_since(root).uris  # the full listing is the listing from no mark


def test_a_listing_from_a_mark_still_refuses_links_out_of_the_root(tmp_path):
    root = tmp_path / "incoming"
    image(root / "a.png")
    first = list_images_since(root)
    outside = image(tmp_path / "elsewhere" / "private.png")
    (root / "link.png").symlink_to(outside)
    refused = []
    later = list_images_since(root, since=first.mark, refused=refused)
    assert later.uris == [] and [p for p, _ in refused] == [str(root / "link.png")]
    assert "a link out of the image root" in refused[0][1]


def test_an_s3_listing_starts_after_the_last_key(s3env):
    from storage import s3 as s3mod

    for key in ("cam1/20261129/a.png", "cam1/20261129/b.png"):
        s3mod.put_bytes(b"x", f"s3://{s3env}/{key}")
    first = list_images_since(f"s3://{s3env}/cam1")
    assert first.mark == "cam1/20261129/b.png" and len(first.uris) == 2
    s3mod.put_bytes(b"x", f"s3://{s3env}/cam1/20261130/c.png")
    s3mod.put_bytes(b"x", f"s3://{s3env}/cam1/20261128/late.png")  # written late under an earlier key
    second = list_images_since(f"s3://{s3env}/cam1", since=first.mark)
    assert second.uris == [f"s3://{s3env}/cam1/20261130/c.png"] and second.scanned == 1  # only keys after the mark
    # The weekly full listing finds the late one.
    assert f"s3://{s3env}/cam1/20261128/late.png" in list_images_since(f"s3://{s3env}/cam1").uris


def test_the_mark_never_moves_back_and_is_used_with_slack(fdb):
    key = listings.listing_key("/data/incoming", "*", "m1")
    assert listings.since(fdb, key) is None  # no night finished: list everything
    listings.advance(fdb, key, 5 * 10**12, listed=3, scanned=3)
    listings.advance(fdb, key, 4 * 10**12, listed=1, scanned=3)  # an older listing finishing late
    assert listings.since(fdb, key) == 5 * 10**12 - listings.LOCAL_SLACK_NS
    s3_key = listings.listing_key("s3://b/cam1", "*", "m1")
    listings.advance(fdb, s3_key, "cam1/b.png", listed=2, scanned=2)
    listings.advance(fdb, s3_key, "cam1/a.png", listed=1, scanned=1)
    assert listings.since(fdb, s3_key) == "cam1/b.png"


def test_the_task_asks_the_database_only_about_the_night(store, fdb, tmp_path, monkeypatch):
    from fdb import images as image_store
    from tasks.detect import list_new_images, record_listing

    monkeypatch.setattr(listings, "LOCAL_SLACK_NS", 0)
    root = tmp_path / "incoming"
    archive = [image(root / "old" / f"{i}.png", i) for i in range(4)]
    first = list_new_images.fn(store, str(root), model_version="m1")
    assert first.since is None and len(first.uris) == 4
    image_store.ingest_images(fdb, first.uris)
    docs = image_store.by_uri(fdb, first.uris)
    image_store.mark_processed(fdb, [d["_id"] for d in docs.values()], "m1")
    record_listing.fn(store, first)
    tonight = image(root / "new" / "x.png", 99)
    second = list_new_images.fn(store, str(root), model_version="m1")
    assert second.uris == [str(tonight.resolve())] and second.listed == 1 and second.scanned == 1
    # A night that died before recording its listing is listed again from the old mark; what it processed is
    # dropped by the database check.
    assert list_new_images.fn(store, str(root), model_version="m1").uris == [str(tonight.resolve())]
    # Another model has no mark: its first night lists the whole root.
    assert len(list_new_images.fn(store, str(root), model_version="m2").uris) == 5
    assert len(list_new_images.fn(store, str(root), model_version="m1", full_listing=True).uris) == 1
    assert len(archive) == 4
