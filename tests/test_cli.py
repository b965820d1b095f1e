"""The command line: every command explains itself, and `fdb status` starts, reuses and stops the embedded server."""

from __future__ import annotations

import pytest

from dataengine.cli import build_parser, main
from fdb.server import EmbeddedMongo


def _subcommands(parser):
    for action in parser._subparsers._group_actions:
        yield from action.choices.items()


def test_every_command_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    top = capsys.readouterr().out
    names = dict(_subcommands(build_parser()))
    assert {"demo", "fdb", "synth", "train", "evaluate", "detect", "convert-pennfudan", "mine", "export", "import-labels",
            "review-labels"} <= set(names)
    for name, sub in names.items():
        assert name in top
        assert sub.description, f"`dataengine {name}` has no description"
        for action in sub._actions:
            if action.option_strings and action.dest not in ("help",) and action.help is None:
                # options whose meaning is self-evident from their name and default are allowed
                assert action.dest in ("batch_size", "lr", "seed"), f"{name} {action.option_strings} lacks help"


def test_fdb_status_starts_then_reuses_then_stops_the_embedded_server(data_home, capsys):
    assert main(["fdb", "status"]) == 0
    out = capsys.readouterr().out
    assert "embedded mongod at 127.0.0.1:" in out and "images" in out and "features" in out
    server = EmbeddedMongo(data_home / "mongodb")
    assert server.running()
    assert main(["fdb", "start"]) == 0
    port = capsys.readouterr().out.split("127.0.0.1:")[1].split(",")[0]
    assert f"127.0.0.1:{port}" in out  # attached to the same server
    assert main(["fdb", "stop"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not server.running()


def test_fdb_ingest_reports_quarantine(data_home, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    try:
        assert main(["fdb", "ingest", str(folder)]) == 0
        out = capsys.readouterr().out
        assert "1 quarantined" in out and "broken.jpg" in out
    finally:
        EmbeddedMongo(data_home / "mongodb").stop()


def test_ui_refuses_a_public_bind_without_a_token(data_home, monkeypatch, capsys):
    monkeypatch.delenv("DATAENGINE_UI_TOKEN", raising=False)
    assert main(["ui", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "DATAENGINE_UI_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("DATAENGINE_UI_TOKEN", "short")
    assert main(["ui", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "16 characters" in capsys.readouterr().err


def test_models_list_shows_the_mAP_the_app_shows(mongod, fdb, tmp_path, monkeypatch, capsys):
    """The three places a model's bbox mAP is kept (a retrain's evaluation, an arm's superset, the seed's val at
    training time) read the same in `dataengine models list` as in the review app: one reading, in fdb.models."""
    from fastapi.testclient import TestClient

    from dataengine.ui.app import AppSettings, build_app
    from fdb import models as registry

    test = {"mAP": {"superset": {"bbox": 0.61}, "tail": {"bbox": 0.52}}}
    registry.register_model(fdb, "seed-v1", "seed.pt", ["sign"], {}, metrics={"val": {"bbox": {"mAP": 0.4321}}})
    registry.register_model(fdb, "arm-v2", "arm.pt", ["sign"], {}, role="arm", parent="seed-v1",
                            metrics={"superset": {"bbox": 0.5432}, "test": test})
    registry.register_model(fdb, "cand-v3", "cand.pt", ["sign"], {}, parent="seed-v1")
    registry.set_metrics(fdb, "cand-v3", {"mAP": {"superset": {"bbox": 0.6543}}})
    registry.register_model(fdb, "bare-v4", "bare.pt", ["sign"], {})
    app = TestClient(build_app(fdb, AppSettings(export_target=str(tmp_path / "q"), cache_dir=str(tmp_path / "c"))),
                     base_url="http://127.0.0.1:8765")
    shown = {m["version"]: m["bbox_map"] for m in app.get("/api/models").json()["models"]}
    assert shown == {"seed-v1": 0.4321, "arm-v2": 0.5432, "cand-v3": 0.6543, "bare-v4": None}

    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    assert main(["models", "list"]) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()}
    for version, value in shown.items():
        assert (f"bbox mAP {value:.3f}" if value is not None else "bbox mAP") in rows[version] or value is None
    assert "bbox mAP" not in rows["bare-v4"]
    assert "test superset 0.610, test tail 0.520" in rows["arm-v2"]
