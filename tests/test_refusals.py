"""Bad input, command by command: one line on stderr, a non-zero exit code, no traceback (issue 45). The project's
own refusals (a missing file or folder, no production model, malformed labels) are not bugs; `--debug` shows the
traceback for the rare case a person needs it."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from dataengine.cli import main


@pytest.fixture()
def empty_store(store_env, tmp_path):
    """A real feature database with nothing in it: no model, no images."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "annotations").mkdir()
    Image.new("RGB", (20, 20)).save(data / "images" / "a.png")
    labelled = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25,
                                 "iscrowd": 0}], "categories": [{"id": 1, "name": "stop"}]}
    for split in ("train", "val"):
        (data / "annotations" / f"{split}.json").write_text(json.dumps(labelled))
    return data


def _refused(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code not in (0, None), f"{argv} was accepted"
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    return err


def test_no_production_model_is_one_line(empty_store, capsys):
    val = str(empty_store / "annotations" / "val.json")
    for argv in (["evaluate", "--data", str(empty_store), "--split", "val"],
                 ["detect", "--images", str(empty_store / "images")],
                 ["mine", "--gt", val],
                 ["compare", "--data", str(empty_store), "--mined", "nope", "--random", "nope"]):
        err = _refused(capsys, argv)
        assert "error:" in err


def test_missing_paths_are_one_line(empty_store, tmp_path, capsys):
    assert "does not exist" in _refused(capsys, ["fdb", "ingest", str(tmp_path / "nowhere")])
    assert "no image folder" in _refused(capsys, ["nightly", "--images", str(tmp_path / "nowhere"),
                                                  "--gt", str(tmp_path / "nowhere.json")])


def test_debug_shows_the_traceback(empty_store, tmp_path):
    with pytest.raises(NotADirectoryError):
        main(["--debug", "fdb", "ingest", str(tmp_path / "nowhere")])


@pytest.mark.parametrize("bad, named", [
    ('{"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}], "annotations": [{"id": 1, '
     '"image_id": 1, "category_id": 1, "bbox": [NaN, 0, 5, 5], "iscrowd": 0}], "categories": [{"id": 1, '
     '"name": "stop"}]}', "bbox"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_a_nan_box_and_a_deep_file_are_refused_naming_why(empty_store, tmp_path, capsys, bad, named):
    from records.coco import CocoFormatError, load_coco

    path = tmp_path / "bad.json"
    path.write_text(bad)
    with pytest.raises(CocoFormatError, match=named):
        load_coco(path, image_dir=empty_store / "images")
    assert named in _refused(capsys, ["split", "--coco", str(path), "--images", str(empty_store / "images"),
                                      "--out", str(tmp_path / "out")])
