"""The feature database as `dataengine fdb` manages it: its status, the embedded mongod started and stopped, a
folder of images registered. Plain functions, no Prefect run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fdb import StoreConfig, connect
from fdb.images import IngestReport, ingest_images
from fdb.server import EmbeddedMongo
from storage import list_images


@dataclass(frozen=True)
class EmbeddedServer:
    port: int  # on 127.0.0.1
    dbpath: Path


@dataclass(frozen=True)
class StoreStatus:
    name: str  # the database's name
    embedded: EmbeddedServer | None  # None: the server DATAENGINE_MONGODB_URI names
    counts: dict[str, int]  # records per collection, quarantined images among them


@dataclass(frozen=True)
class FolderIngest:
    listed: int  # image files found under the folder
    report: IngestReport
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): links out of the folder


def store_status(store: StoreConfig) -> StoreStatus:
    """Starts or attaches to the database, and counts its records."""
    fdb = connect(store)
    server = EmbeddedServer(fdb.server.port, fdb.server.dbpath) if fdb.server else None
    return StoreStatus(fdb.db.name, server, fdb.counts())


def start_embedded(store: StoreConfig) -> EmbeddedServer | None:
    """The embedded mongod, started or found running; None when DATAENGINE_MONGODB_URI names another server."""
    if store.uri:
        return None
    server = EmbeddedMongo(Path(store.home) / "mongodb", binary=store.mongod).start()
    return EmbeddedServer(server.port, server.dbpath)


def stop_embedded(store: StoreConfig) -> bool:
    """Shuts the embedded mongod down cleanly; False when none was running."""
    return EmbeddedMongo(Path(store.home) / "mongodb").stop()


def ingest_folder(store: StoreConfig, folder: str, allow_links_out: bool = False, source: str = "local",
                  split: str = "pool", labelled: bool = False) -> FolderIngest:
    """Every image under `folder` registered; links out of it are refused unless `allow_links_out`."""
    refused: list[tuple[str, str]] = []
    uris = list_images(folder, allow_links_out=allow_links_out, refused=refused)
    report = ingest_images(connect(store), uris, source=source, split=split, labelled=labelled)
    return FolderIngest(len(uris), report, refused)
