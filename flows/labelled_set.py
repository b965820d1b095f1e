"""The labelled set a command works on when none is named: the one the last mining run used."""

from __future__ import annotations

from fdb import StoreConfig
from jobs.context import connection
from mining.selection import last_labelled_set as last_mined_with


def last_labelled_set(store: StoreConfig) -> tuple[str, str] | None:
    """(COCO json, image folder) of the labelled set the last mining run used; None before the first."""
    return last_mined_with(connection(store))
