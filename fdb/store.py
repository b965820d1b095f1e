"""The feature database's entry point: `connect(StoreConfig)` opens it (a given server, or the embedded mongod), and
`FeatureDB` holds its collections, transactions and the feature vectors.

See `fdb/README.md` for every collection's fields and indexes (`fdb.catalogue`). Each other collection has a module
of its own (`fdb.images`, `fdb.detections`, ...); the write helpers they share are in `fdb.writes`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pymongo
from bson import ObjectId
from pymongo import WriteConcern
from pymongo.database import Database
from pymongo.errors import CollectionInvalid

from fdb.catalogue import COLLECTION_INDEXES, RENAMED_FIELDS
from fdb.server import EmbeddedMongo
from fdb.vectors import (
    FeatureShapeError,
    VectorSet,
    check_dtype,
    encode_feature_batch,
    feature_id,
    from_object_ids,
    iter_vector_batches,
)
from fdb.writes import WriteReport, bulk_insert, stable_id, utcnow


class FeatureDB:
    """The haystack: one MongoDB database holding everything the engine knows about its images."""

    def __init__(self, db: Database, server: EmbeddedMongo | None = None):
        self.db = db
        self.server = server
        self.images = db["images"]
        self.detections = db["detections"]
        self.features = db["features"]
        self.feature_layers = db["feature_layers"]
        self.runs = db["runs"]
        self.selections = db["selections"]
        self.queries = db["queries"]
        self.models = db["models"]
        self.errors = db["errors"]
        self.label_errors = db["label_errors"]
        self.labelled_sets = db["labelled_sets"]
        self.indexes = db["indexes"]
        self.exports = db["exports"]
        self.labels = db["labels"]
        self.scheduled_runs = db["scheduled_runs"]
        self.listings = db["listings"]
        self.registry = db["registry"]
        self.promotions = db["promotions"]
        self._layer_cache: dict[str, tuple[int, str]] = {}
        self.ensure_indexes()

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def transaction(self):
        """A session in a transaction where the server supports one (a replica set or a sharded cluster): the
        writes that take it are all applied or none. On a standalone server it yields None and the writes are
        made in order, so callers put their commit point last."""
        hello = self.db.client.admin.command("hello")
        if not (hello.get("setName") or hello.get("msg") == "isdbgrid"):
            yield None
            return
        with self.db.client.start_session() as session:
            with session.start_transaction(write_concern=WriteConcern(w="majority")):
                yield session

    # ------------------------------------------------------------------ setup
    def ensure_indexes(self) -> None:
        if "features" not in self.db.list_collection_names(filter={"name": "features"}):
            # Float vectors do not compress: snappy cost a quarter of the write throughput here for nothing.
            with contextlib.suppress(CollectionInvalid):
                self.db.create_collection(
                    "features", storageEngine={"wiredTiger": {"configString": "block_compressor=none"}})
        self._rename_old_fields()
        for name, indexes in COLLECTION_INDEXES.items():
            if indexes:
                self.db[name].create_indexes(indexes)

    def _rename_old_fields(self) -> None:
        for name, renames in RENAMED_FIELDS.items():
            collection = self.db[name]
            for old, new, old_index in renames:
                if old_index and old_index in collection.index_information():
                    collection.drop_index(old_index)
                if collection.find_one({old: {"$exists": True}}, {"_id": 1}) is not None:
                    collection.update_many({old: {"$exists": True}}, {"$rename": {old: new}})

    def counts(self) -> dict[str, int]:
        counts = {name: self.db[name].estimated_document_count() for name in COLLECTION_INDEXES}
        counts["images_quarantined"] = self.images.count_documents({"status": "quarantined"})
        return counts

    # ------------------------------------------------------------------ features
    def _check_layer(self, model_version: str, layer: str, dim: int, dtype: str) -> None:
        key = f"{model_version}|{layer}"
        known = self._layer_cache.get(key)
        if known is None:
            # Upsert so the first writer of a layer fixes its shape, atomically even across processes.
            doc = self.feature_layers.find_one_and_update(
                {"_id": key},
                {"$setOnInsert": {"model_version": model_version, "layer": layer, "dim": dim, "dtype": dtype,
                                  "created_at": utcnow()}},
                upsert=True, return_document=pymongo.ReturnDocument.AFTER)
            known = (doc["dim"], doc["dtype"])
            self._layer_cache[key] = known
        if known != (dim, dtype):
            raise FeatureShapeError(
                f"layer {layer!r} of model {model_version!r} holds {known[0]}-d {known[1]} vectors; "
                f"refused {dim}-d {dtype} vectors")

    def layer_shape(self, model_version: str, layer: str) -> tuple[int, str] | None:
        doc = self.feature_layers.find_one({"_id": f"{model_version}|{layer}"})
        return (doc["dim"], doc["dtype"]) if doc else None

    def write_features(self, model_version: str, layer: str, owner_ids: Sequence[ObjectId],
                       vectors: np.ndarray, image_ids: Sequence[ObjectId] | None = None,
                       owner_kind: str = "detection", batch_size: int = 2000) -> WriteReport:
        """Store one vector per owner (a detection or an image). Shapes are checked before anything is written;
        rows that are not finite are rejected and reported, the others stored."""
        if owner_kind not in ("detection", "image", "ground_truth"):
            raise ValueError(f"owner_kind must be 'detection', 'image' or 'ground_truth', got {owner_kind!r}")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise FeatureShapeError(f"vectors must be a 2-D array (n, dim), got shape {vectors.shape}")
        dtype = check_dtype(vectors.dtype)
        n, dim = vectors.shape
        if len(owner_ids) != n:
            raise ValueError(f"{len(owner_ids)} owner ids for {n} vectors")
        if image_ids is None:
            if owner_kind != "image":
                raise ValueError("detection features need the image id of each detection")
            image_ids = owner_ids
        if len(image_ids) != n:
            raise ValueError(f"{len(image_ids)} image ids for {n} vectors")
        self._check_layer(model_version, layer, dim, dtype)

        vectors = np.ascontiguousarray(vectors, dtype=vectors.dtype.newbyteorder("<"))
        owners = from_object_ids(owner_ids)
        images = from_object_ids(image_ids)
        finite = np.isfinite(vectors).all(axis=1)
        report = WriteReport()
        report.rejected = [(int(i), "vector holds NaN or infinity") for i in np.flatnonzero(~finite)]
        keep = np.flatnonzero(finite)
        now = utcnow()
        batches = [keep[start:start + batch_size] for start in range(0, len(keep), batch_size)]

        def merge(rows: np.ndarray, batch_report: WriteReport) -> None:
            # bulk_insert counts positions within the batch; map them back to the caller's rows.
            report.rejected.extend((int(rows[i]), why) for i, why in batch_report.rejected)
            report.inserted += batch_report.inserted
            report.existing += batch_report.existing

        # Encode batch k+1 while batch k is on the wire: the server and the client each keep a core busy.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for rows in batches:
                docs = encode_feature_batch(owners[rows], images[rows], vectors[rows], owner_kind, model_version,
                                            layer, now)
                if pending is not None:
                    merge(pending[0], pending[1].result())
                pending = (rows, pool.submit(bulk_insert, self.features, docs))
            if pending is not None:
                merge(pending[0], pending[1].result())
        return report

    def read_vectors(self, model_version: str, layer: str, filter: dict | None = None, batch_size: int = 4000,
                     image_ids: Sequence[ObjectId] | None = None,
                     owner_ids: Sequence[ObjectId] | None = None, by_image: bool = False) -> VectorSet:
        """All vectors of a (model version, layer), of the given images or owners (and matching `filter`), as one
        array, in index order. `by_image` makes that the (model, layer, image) index whatever the filter, so
        the rows come in image order (then in the order they were written)."""
        shape = self.layer_shape(model_version, layer)
        if shape is None:
            raise KeyError(f"no features stored for layer {layer!r} of model {model_version!r}")
        dim, dtype = shape
        query = {"model_version": model_version, "layer": layer, **(filter or {})}
        if image_ids is not None:
            query["image_id"] = {"$in": list(image_ids)}
        if owner_ids is not None:
            # By `_id` (a hash of owner, model and layer): the one index that finds a feature by its owner, so a
            # few owners cost a few index lookups, not a scan of the layer.
            query["_id"] = {"$in": self._feature_ids(model_version, layer, owner_ids)}
        # Size the result up front so each batch is copied once, straight into place.
        capacity = self.features.count_documents(query)
        owners, images = np.empty(capacity, "S12"), np.empty(capacity, "S12")
        vectors = np.empty((capacity, dim), dtype)
        n = 0
        for o, i, v in iter_vector_batches(self.features, query, dtype, dim, batch_size,
                                           hint="model_layer_image" if by_image else None):
            if n + len(o) > capacity:  # written to while we read: grow
                capacity = max(2 * capacity, n + len(o))
                owners, images = np.resize(owners, capacity), np.resize(images, capacity)
                vectors = np.resize(vectors, (capacity, dim))
            owners[n:n + len(o)], images[n:n + len(o)], vectors[n:n + len(o)] = o, i, v
            n += len(o)
        return VectorSet(owners[:n], images[:n], vectors[:n])

    def newest_feature_time(self, model_version: str, layer: str, since: dt.datetime | None = None
                            ) -> dt.datetime | None:
        """When the newest vector of a (model version, layer) was written (from the index, one entry read)."""
        query: dict = {"model_version": model_version, "layer": layer}
        if since is not None:
            query["created_at"] = {"$gte": since}
        doc = self.features.find_one(query, {"created_at": 1}, sort=[("created_at", -1)])
        return doc["created_at"] if doc else None

    @staticmethod
    def _feature_ids(model_version: str, layer: str, owner_ids: Sequence[ObjectId]) -> list[ObjectId]:
        """The `_id`s of the owners' features (`fdb.vectors.feature_id`): how a feature is found by its owner."""
        return [ObjectId(feature_id(o.binary, model_version, layer)) for o in owner_ids]

    def image_ids_of(self, model_version: str, layer: str, owner_ids: Sequence[ObjectId]) -> dict[ObjectId, ObjectId]:
        """owner id (a detection or an image) -> the image its vector belongs to, by `_id` (see `feature_id`)."""
        by_feature = dict(zip(self._feature_ids(model_version, layer, owner_ids), owner_ids))
        return {by_feature[d["_id"]]: d["image_id"]
                for d in self.features.find({"_id": {"$in": list(by_feature)}}, {"image_id": 1})}

    def vectors_by_owner(self, model_version: str, layer: str,
                         owner_ids: Sequence[ObjectId]) -> dict[ObjectId, np.ndarray]:
        """owner id (a detection or an image) -> its float32 vector."""
        vs = self.read_vectors(model_version, layer, owner_ids=owner_ids)
        return dict(zip(vs.object_ids(), vs.vectors.astype(np.float32)))

    @staticmethod
    def ground_truth_id(image_id: ObjectId, annotation_id: int) -> ObjectId:
        """The owner of a ground-truth box's vector (`records.GT_BOX_LAYER`): the image and the COCO annotation."""
        return stable_id("gt", image_id, int(annotation_id))


@dataclass(frozen=True)
class StoreConfig:
    """Which database: `uri` (a replica set, a managed cluster), or None for the embedded mongod whose data lives
    under `home`. Read from the environment at the edges (`dataengine.config.store_config`), passed down."""

    home: str
    uri: str | None = None
    db_name: str = "dataengine"
    mongod: str | None = None  # the embedded server's binary, when not the one the project installs


class StoreUnavailable(RuntimeError):
    """The feature database does not answer; the message says which one and what to do."""


def connect(config: StoreConfig, timeout_ms: int = 30_000, watch: bool = True) -> FeatureDB:
    """Open the feature database `config` names: its `uri`, else the embedded mongod (started if needed, its data
    under `config.home`). A lost connection is retried for `timeout_ms` before failing, which rides over a
    server restart or a replica-set election.

    The embedded server is watched (`watch`): if it dies under a run it is restarted on its port and the run
    carries on. An external server is not ours to restart: when it does not answer at connection time the call
    fails fast with `StoreUnavailable`, naming the server (without credentials) and what to run."""
    uri = config.uri
    server = None
    if uri is None:
        server = EmbeddedMongo(Path(config.home) / "mongodb", binary=config.mongod).start()
        uri = server.uri
        if watch:
            server.watch()
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True, appname="dataengine")
    if server is None:
        try:
            with pymongo.timeout(min(timeout_ms, 5_000) / 1000):  # this one check only: later calls wait longer
                client.admin.command("ping")
        except pymongo.errors.PyMongoError as exc:
            client.close()
            raise StoreUnavailable(
                f"the feature database at {redact(uri)} (DATAENGINE_MONGODB_URI) does not answer "
                f"({type(exc).__name__}). Start that server, or point DATAENGINE_MONGODB_URI at one that runs (unset "
                f"it to use the embedded mongod under the data home), then run the same command again: the run "
                f"resumes where it stopped, nothing is duplicated.") from None
    return FeatureDB(client[config.db_name], server=server)


def redact(uri: str) -> str:
    """A MongoDB uri without its password, for messages and logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)
