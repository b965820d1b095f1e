"""Where the engine keeps its state, read from the environment so nothing is hard-coded in library code."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """Root for the embedded database, indexes, checkpoints and exports.

    `DATAENGINE_HOME` wins; otherwise the XDG data directory, as command-line tools on Linux do.
    """
    explicit = os.environ.get("DATAENGINE_HOME")
    if explicit:
        home = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        home = Path(xdg) / "dataengine"
    home.mkdir(parents=True, exist_ok=True)
    return home


def mongodb_uri() -> str | None:
    """An external MongoDB (replica set, managed cluster) when users outgrow the embedded one."""
    return os.environ.get("DATAENGINE_MONGODB_URI") or None


def database_name() -> str:
    return os.environ.get("DATAENGINE_DB", "dataengine")
