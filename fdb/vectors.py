"""Feature vectors as BSON binary, and reading many of them back without per-document Python work.

A vector is stored as the raw little-endian bytes of a float32 or float16 array (BSON binary subtype 0), next to
its `dim` and `dtype`. Bulk reads use `find_raw_batches`: every document written by `FeatureDB.write_features` has
the same fields in the same order and of the same size, so a batch of raw BSON is a 2-D byte matrix whose columns
at fixed offsets are the owner id, the image id and the vector. numpy slices those columns in one go.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import bson
import numpy as np
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from records.hashing import part_digest

ALLOWED_DTYPES = ("float32", "float16")


class FeatureShapeError(ValueError):
    """A vector whose dimension or dtype does not match what its (model version, layer) already holds."""


@dataclass
class VectorSet:
    """Vectors read back from the database, row i belonging to owner `owner_ids[i]` on image `image_ids[i]`.

    Ids are kept as a numpy array of 12-byte ObjectId values (dtype S12): compact, sortable, savable beside an
    index. `object_ids()` turns them into `bson.ObjectId`s where needed.
    """

    owner_ids: np.ndarray
    image_ids: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.owner_ids)

    def object_ids(self) -> list[bson.ObjectId]:
        return to_object_ids(self.owner_ids)

    def image_object_ids(self) -> list[bson.ObjectId]:
        return to_object_ids(self.image_ids)


def to_object_ids(ids: np.ndarray) -> list[bson.ObjectId]:
    # numpy drops trailing NUL bytes when an S12 item becomes `bytes`; pad them back.
    return [bson.ObjectId(bytes(b).ljust(12, b"\0")) for b in ids]


def from_object_ids(ids) -> np.ndarray:
    return np.array([oid.binary for oid in ids], "S12")


def check_dtype(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    if name not in ALLOWED_DTYPES:
        raise FeatureShapeError(f"feature vectors must be float32 or float16, got {name}")
    return name


# BSON element layout: type byte, field name as a C string, then the value. Fixed sizes: ObjectId, double, int32,
# int64, bool, datetime, Timestamp (a replica set's reply carries `operationTime`), Decimal128, null, min/max key.
_FIXED_SIZES = {0x07: 12, 0x01: 8, 0x10: 4, 0x12: 8, 0x08: 1, 0x09: 8, 0x11: 8, 0x13: 16, 0x0A: 0, 0xFF: 0, 0x7F: 0}


def _field_offsets(buf: bytes, start: int = 0) -> dict[str, tuple[int, int, int]]:
    """Offsets of each element of the BSON document at `buf[start:]`: name -> (element, value start, value end)."""
    out = {}
    pos = start + 4
    end = start + struct.unpack_from("<i", buf, start)[0] - 1
    while pos < end:
        etype = buf[pos]
        name_end = buf.index(b"\x00", pos + 1)
        name = buf[pos + 1:name_end].decode()
        vstart = name_end + 1
        if etype in _FIXED_SIZES:
            vend = vstart + _FIXED_SIZES[etype]
        elif etype == 0x05:  # binary: int32 length, subtype byte, bytes
            vend = vstart + 5 + struct.unpack_from("<i", buf, vstart)[0]
        elif etype == 0x02:  # string: int32 length incl. NUL, bytes
            vend = vstart + 4 + struct.unpack_from("<i", buf, vstart)[0]
        elif etype in (0x03, 0x04):  # embedded document or array
            vend = vstart + struct.unpack_from("<i", buf, vstart)[0]
        else:
            raise ValueError(f"unsupported BSON type 0x{etype:02x} in field {name!r}")
        out[name] = (pos, vstart, vend)
        pos = vend
    return out


def _uniform_rows(buf: bytes, start: int, end: int) -> np.ndarray | None:
    """The documents of the BSON array at `buf[start:end]` as one (n, doc size) byte matrix, or None when they
    are not all the same size.

    Element i of an array is: type byte, the key str(i) and a NUL, then the document. With documents of one size,
    the elements whose keys have the same number of digits sit at a fixed stride, so each such run is one reshape.
    """
    body = np.frombuffer(buf, np.uint8, count=end - start - 5, offset=start + 4)  # without length and final NUL
    if len(body) == 0:
        return np.empty((0, 0), np.uint8)
    size = struct.unpack_from("<i", buf, start + 7)[0]  # after the length: type, "0", NUL, then the document
    runs, pos, first, digits = [], 0, 0, 1
    while pos < len(body):
        stride = 2 + digits + size
        count = min(10 ** digits - first, (len(body) - pos) // stride)
        if count <= 0:
            return None
        elements = body[pos:pos + count * stride].reshape(count, stride)
        block = elements[:, 2 + digits:]
        lengths = block[:, :4].copy().view("<i4")[:, 0]
        if (elements[:, 0] != 0x03).any() or (lengths != size).any():
            return None
        runs.append(block)
        pos += count * stride
        first += count
        digits += 1
    return runs[0] if len(runs) == 1 else np.concatenate(runs)


def parse_rows(rows: np.ndarray, dtype: str, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(owner_ids, image_ids, vectors) from a byte matrix of same-size {owner_id, image_id, vector} documents,
    or None when their layouts differ (the caller then decodes them one by one)."""
    offsets = _field_offsets(rows[0].tobytes())
    if not {"owner_id", "image_id", "vector"} <= offsets.keys():
        return None
    o, i, v = offsets["owner_id"], offsets["image_id"], offsets["vector"]
    # Same element headers (type, name, binary length) at the same offsets in every document, or fall back.
    header_cols = np.r_[o[0]:o[1], i[0]:i[1], v[0]:v[1] + 5]
    headers = rows[:, header_cols]
    if not (headers == headers[0]).all() or v[2] - v[1] - 5 != dim * np.dtype(dtype).itemsize:
        return None
    # Strided views: the caller copies them once, into its result array.
    return (rows[:, o[1]:o[2]].view("S12")[:, 0], rows[:, i[1]:i[2]].view("S12")[:, 0],
            rows[:, v[1] + 5:v[2]].view(dtype))


def decode_documents(docs: list[dict], dtype: str, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slow path, for documents of mixed layouts: decode each one."""
    owner = np.array([d["owner_id"].binary for d in docs], "S12")
    image = np.array([d["image_id"].binary for d in docs], "S12")
    vec = np.frombuffer(b"".join(bytes(d["vector"]) for d in docs), dtype).reshape(len(docs), dim)
    return owner, image, vec


RAW = CodecOptions(document_class=RawBSONDocument)


def iter_raw_batches(collection, query: dict, projection: dict, batch_size: int = 4000, hint: str | None = None):
    """Yield (reply, start, end) per server batch of `find(query)`: the raw reply and where its batch array lies.

    pymongo's `find_raw_batches` still wraps every document of a getMore reply in a Python object (a million small
    documents: seconds); here the `find` and `getMore` commands run with raw replies, left for numpy to slice."""
    db = collection.database
    with db.client.start_session() as session:
        command = {"find": collection.name, "filter": query, "projection": projection, "batchSize": batch_size}
        if hint:
            command["hint"] = hint
        reply = db.command(command, codec_options=RAW, session=session).raw
        cursor_id = 0
        try:
            while True:
                cursor = _field_offsets(reply)["cursor"]
                fields = _field_offsets(reply, cursor[1])
                cursor_id = struct.unpack_from("<q", reply, fields["id"][1])[0]
                array = fields.get("firstBatch") or fields["nextBatch"]
                yield reply, array[1], array[2]
                if cursor_id == 0:
                    return
                reply = db.command({"getMore": bson.Int64(cursor_id), "collection": collection.name,
                                    "batchSize": batch_size}, codec_options=RAW, session=session).raw
        finally:
            if cursor_id:
                db.command({"killCursors": collection.name, "cursors": [bson.Int64(cursor_id)]}, session=session)


def iter_vector_batches(collection, query: dict, dtype: str, dim: int, batch_size: int = 4000,
                        hint: str | None = None):
    """Yield (owner_ids, image_ids, vectors) per server batch of `find(query)`, each batch array sliced by
    `_uniform_rows` (documents of another layout are decoded one by one)."""
    projection = {"_id": 0, "owner_id": 1, "image_id": 1, "vector": 1}
    for reply, start, end in iter_raw_batches(collection, query, projection, batch_size, hint):
        rows = _uniform_rows(reply, start, end)
        parsed = parse_rows(rows, dtype, dim) if rows is not None and len(rows) else None
        if parsed is None:
            docs = list(bson.decode(reply[start:end]).values())
            parsed = decode_documents(docs, dtype, dim) if docs else None
        if parsed is not None:
            yield parsed


def iter_id_batches(collection, query: dict, batch_size: int = 100_000):
    """Yield the `_id`s (ObjectIds, as S12 arrays) of the documents matching `query`, batch by batch."""
    for reply, start, end in iter_raw_batches(collection, query, {"_id": 1}, batch_size):
        rows = _uniform_rows(reply, start, end)
        if rows is None:  # not all ObjectIds: decode them
            yield np.array([d["_id"].binary for d in bson.decode(reply[start:end]).values()], dtype="S12")
        elif len(rows):
            # {_id: ObjectId} is 22 bytes: length (4), type (1), "_id" and its NUL (4), the id (12), final NUL.
            yield np.ascontiguousarray(rows[:, 9:21]).view("S12")[:, 0]


def feature_id(owner_id: bytes, model_version: str, layer: str) -> bytes:
    """The `_id` of a feature: a hash of (owner, model version, layer), so the `_id` index alone keeps one
    record per feature and no second unique index slows writes down."""
    return part_digest(owner_id, model_version, layer, size=12)


def encode_feature_batch(owner_ids: np.ndarray, image_ids: np.ndarray, vectors: np.ndarray, owner_kind: str,
                         model_version: str, layer: str, created_at) -> list[RawBSONDocument]:
    """BSON documents for a batch of features, built as one byte matrix from a template.

    Every document has the same fields, in the same order and of the same size (the layout `parse_raw_batch`
    reads back), so the per-document Python work is one hash and one slice instead of a dict and its encoding.
    """
    n, dim = vectors.shape
    template = bson.encode({
        "_id": bson.ObjectId(b"\0" * 12), "owner_id": bson.ObjectId(b"\0" * 12),
        "image_id": bson.ObjectId(b"\0" * 12), "vector": bson.Binary(bytes(vectors.dtype.itemsize * dim)),
        "owner_kind": owner_kind, "model_version": model_version, "layer": layer, "dim": dim,
        "dtype": vectors.dtype.name, "created_at": created_at})
    size = len(template)
    offsets = _field_offsets(template)
    rows = np.tile(np.frombuffer(template, np.uint8), (n, 1))
    ids = b"".join(feature_id(bytes(o).ljust(12, b"\0"), model_version, layer) for o in owner_ids)
    for name, column in (("_id", np.frombuffer(ids, np.uint8).reshape(n, 12)),
                         ("owner_id", owner_ids.view(np.uint8).reshape(n, 12)),
                         ("image_id", image_ids.view(np.uint8).reshape(n, 12))):
        _, start, end = offsets[name]
        rows[:, start:end] = column
    _, start, end = offsets["vector"]
    rows[:, start + 5:end] = np.ascontiguousarray(vectors).view(np.uint8).reshape(n, -1)
    buf = rows.tobytes()
    return [RawBSONDocument(buf[i * size:(i + 1) * size]) for i in range(n)]
