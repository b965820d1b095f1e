"""The failures a user acts on, by what the command line does with each: the types live on the floors that raise
them, and are gathered here so that the command line names none of those floors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserErrors:
    """The project's failures that get one line on stderr instead of a traceback."""

    unreachable: tuple[type[BaseException], ...]  # the store or the Dask cluster cannot be used (exit 3)
    refusals: tuple[type[BaseException], ...]  # input the project refuses, named by its field (exit 2)
    store_lost: tuple[type[BaseException], ...]  # the store stopped answering during the run (exit 3)


def user_errors() -> UserErrors:
    """Imported when a command has failed, not before: the store's and the model's imports (pymongo, torch) would
    otherwise cost every `--help`."""
    from pymongo.errors import ServerSelectionTimeoutError

    from annotation_export.importer import LabelImportError
    from detectors.weights import WeightsMismatchError
    from fdb import StoreUnavailable
    from fdb.detections import NonFiniteDetection
    from fdb.vectors import FeatureShapeError
    from flows.runners import ClusterUnusable
    from mining.evaluation import LeakyTestSplit
    from records.coco import CocoFormatError

    # A missing file or folder, no production model or an unknown id (LookupError), malformed input named by its
    # field. Anything else is a bug: its traceback is shown.
    refusals = (FileNotFoundError, NotADirectoryError, LookupError, WeightsMismatchError, LeakyTestSplit,
                CocoFormatError, LabelImportError, FeatureShapeError, NonFiniteDetection)
    return UserErrors(unreachable=(StoreUnavailable, ClusterUnusable), refusals=refusals,
                      store_lost=(ServerSelectionTimeoutError,))
