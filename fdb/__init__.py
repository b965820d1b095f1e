"""The MongoDB feature database ("the haystack") and the vector indexes built from it.

Records in, records out: each module owns one collection and its field names (`images`, `detections`,
`selections`, `exports`, `labels`, `errors`, `runs`, `models`, `indexes`); `store` holds the connection and the
feature vectors, `catalogue` every collection's indexes, `writes` the write helpers they share. The store knows no
model: a model is a record in `models`, loading it is `detectors`' job.
"""

from fdb.store import FeatureDB, StoreConfig, StoreUnavailable, connect
from fdb.vectors import FeatureShapeError, VectorSet
from fdb.writes import WriteReport, stable_id

__all__ = ["FeatureDB", "FeatureShapeError", "StoreConfig", "StoreUnavailable", "VectorSet", "WriteReport", "connect", "stable_id"]
