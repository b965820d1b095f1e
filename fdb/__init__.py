"""The MongoDB feature database ("the haystack") and, later, the vector indexes built from it."""

from fdb.store import FeatureDB, WriteReport, connect, stable_id
from fdb.vectors import FeatureShapeError, VectorSet

__all__ = ["FeatureDB", "FeatureShapeError", "VectorSet", "WriteReport", "connect", "stable_id"]
