"""Records as JSON, through FastAPI's own `jsonable_encoder` with the types the feature database hands back.

Ids (bson ObjectId) become hex text, times ISO 8601 (a naive time is UTC, as the store writes them), numpy scalars
and arrays plain numbers and lists, a number that is not finite (NaN, inf) null, paths text; a raw-bytes value of a
record is left out. The API's response models and the pages' templates both take what `encode` returns.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
from bson import ObjectId
from fastapi.encoders import jsonable_encoder


def _record(doc: dict) -> dict:
    # Keys as text (JSON has no other), bytes (a vector, a mask) left out: nothing a person reads.
    return {str(encode(k)): encode(v) for k, v in doc.items() if not isinstance(v, (bytes, bytearray))}


def _time(value: dt.datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


# Looked up by exact type first, then in this order by isinstance: numpy's float64 is a float, so numpy comes first.
ENCODERS: dict[type, Any] = {
    np.generic: lambda v: encode(v.item()),
    np.ndarray: lambda v: encode(v.tolist()),
    ObjectId: str,
    dt.datetime: _time,
    float: _number,
    dict: _record,
}


def encode(value: Any) -> Any:
    """`value` (a view's data, records from the store inside it) as JSON-ready Python: dicts, lists, text, numbers."""
    return jsonable_encoder(value, custom_encoder=ENCODERS)
