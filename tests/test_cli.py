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
