"""The MongoDB feature database ("the haystack") and the vector indexes built from it.

Records in, records out: each module owns one collection and its field names (`images`, `selections`,
`exports`, `labels`, `errors`, `runs`, `models`, `indexes`); `store` holds the connection, detections and
feature vectors. The store knows no model: a model is a record in `models`, loading it is `detectors`' job.
"""

from fdb.store import FeatureDB, StoreConfig, StoreUnavailable, WriteReport, connect, stable_id
from fdb.vectors import FeatureShapeError, VectorSet

__all__ = ["FeatureDB", "FeatureShapeError", "StoreConfig", "StoreUnavailable", "VectorSet", "WriteReport", "connect", "stable_id"]
