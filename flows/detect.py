"""`dataengine detect` by hand: a folder of images through a model into the store, outside any night. A plain
function, no Prefect run (the nightly flow lists and detects in chunks as tasks)."""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.config import DetectConfig
from fdb import StoreConfig
from jobs.context import connection, resolve_checkpoint
from jobs.detect import DetectReport, detect_images
from storage import list_images


@dataclass
class FolderDetect:
    report: DetectReport
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): links out of the folder


def detect_folder(store: StoreConfig, folder: str, config: DetectConfig = DetectConfig(), pattern: str = "*",
                  model_version: str | None = None, checkpoint: str | None = None, allow_links_out: bool = False,
                  split: str = "pool", source: str = "local") -> FolderDetect:
    """The images under `folder` whose names match `pattern`, run through the model (a checkpoint file, registered
    on the way; a registered version; default production) into the store. Images it processed are skipped."""
    fdb = connection(store)
    loaded = resolve_checkpoint(fdb, model_version, checkpoint)
    refused: list[tuple[str, str]] = []
    uris = list_images(folder, pattern=pattern, allow_links_out=allow_links_out, refused=refused)
    return FolderDetect(detect_images(fdb, loaded, uris, config, split=split, source=source), refused)
