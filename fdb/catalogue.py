"""The catalogue: every collection of the feature database and its indexes (see `fdb/README.md`).

The unique indexes define idempotency: what "the same record" means for each collection. `FeatureDB` creates
them all when it opens the database; `FeatureDB.counts` counts every collection named here.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel

RANDOM_KEY_INDEX = "processed_split_labelled_status_key"

# Stored fields renamed since a database was written: collection -> [(old name, new name, the old field's index)].
# `FeatureDB` renames them when it opens the database (a no-op once done), so an old database reads the same.
RENAMED_FIELDS: dict[str, list[tuple[str, str, str | None]]] = {
    # `labels_version` held a sha256 of the labelled set's file, while `label_version` is a batch's version number.
    "label_errors": [("labels_version", "labels_sha256", "model_labels_suspicion")],
    "exports": [("labels_version", "labels_sha256", None)],
}

# Collection name -> its indexes. The unique ones define idempotency.
COLLECTION_INDEXES: dict[str, list[IndexModel]] = {
    "images": [
        IndexModel([("uri", ASCENDING)], unique=True, name="uri_unique"),
        IndexModel([("sha256", ASCENDING)], name="sha256"),
        IndexModel([("split", ASCENDING), ("labelled", ASCENDING), ("status", ASCENDING)], name="split_labelled"),
        IndexModel([("processed_by", ASCENDING)], name="processed_by"),
        # The pool a model processed, and the part of it that may be mined, counted and listed from the index
        # alone (fdb.images.pool_generation, eligible_pool_ids): no document is read however large the pool.
        IndexModel([("processed_by", ASCENDING), ("split", ASCENDING), ("labelled", ASCENDING),
                    ("status", ASCENDING)], name="processed_split_labelled_status"),
        IndexModel([("ingested_at", DESCENDING)], name="ingested_at"),
        # The random arm's draw (fdb.images.random_draw): a range of the eligible pool in random-key order.
        IndexModel([("processed_by", ASCENDING), ("split", ASCENDING), ("labelled", ASCENDING),
                    ("status", ASCENDING), ("random_key", ASCENDING)], name=RANDOM_KEY_INDEX),
    ],
    "detections": [
        IndexModel([("image_id", ASCENDING), ("model_version", ASCENDING), ("rank", ASCENDING)], unique=True,
                   name="image_model_rank_unique"),
        IndexModel([("model_version", ASCENDING), ("category_id", ASCENDING), ("score", DESCENDING)],
                   name="model_category_score"),
    ],
    "features": [
        # _id = hash(owner, model version, layer) keeps one feature per key (see fdb.vectors.feature_id).
        IndexModel([("model_version", ASCENDING), ("layer", ASCENDING), ("image_id", ASCENDING)],
                   name="model_layer_image"),
        # What was written since a pool index was last grown (fdb.pool_index): a range scan of the night's rows.
        IndexModel([("model_version", ASCENDING), ("layer", ASCENDING), ("created_at", ASCENDING)],
                   name="model_layer_created"),
    ],
    "feature_layers": [],  # _id = "<model_version>|<layer>": the dim and dtype every vector of that layer must have
    "runs": [
        IndexModel([("kind", ASCENDING), ("started_at", DESCENDING)], name="kind_started"),
        IndexModel([("flow_run_id", ASCENDING)], name="flow_run_id"),
    ],
    "selections": [
        IndexModel([("selection_id", ASCENDING), ("image_id", ASCENDING)], unique=True,
                   name="selection_image_unique"),
        IndexModel([("image_id", ASCENDING)], name="image"),
        IndexModel([("export_id", ASCENDING)], name="export"),
        # Rejected images leave the pool mining draws from (fdb.selections.taken_image_ids).
        IndexModel([("decision", ASCENDING)], name="decision", sparse=True),
    ],
    "queries": [  # _id = hash(selection, error): a selection's query and the neighbours it found
        IndexModel([("selection_id", ASCENDING)], name="selection"),
        IndexModel([("error_id", ASCENDING), ("created_at", DESCENDING)], name="error_created"),
    ],
    "errors": [  # _id = hash(model version, match parameters, image, error type, detection or ground truth)
        IndexModel([("model_version", ASCENDING), ("params_key", ASCENDING), ("type", ASCENDING)],
                   name="model_params_type"),
        IndexModel([("image_id", ASCENDING)], name="image"),
    ],
    "label_errors": [  # _id = hash(judging model, parameters, labelled set's bytes, image, type, subject)
        IndexModel([("model_version", ASCENDING), ("labels_sha256", ASCENDING), ("suspicion", DESCENDING)],
                   name="model_labels_sha256_suspicion"),
        IndexModel([("image_id", ASCENDING)], name="image"),
    ],
    "labelled_sets": [  # _id = "<first file's path>#<version>"
        IndexModel([("path", ASCENDING)], name="path"),
        IndexModel([("set", ASCENDING), ("version", ASCENDING)], unique=True, name="set_version_unique"),
    ],
    "indexes": [  # _id = index version: a vector index built from features, with its parameters and file
        IndexModel([("model_version", ASCENDING), ("layer", ASCENDING), ("created_at", DESCENDING)],
                   name="model_layer_created"),
        IndexModel([("pool_key", ASCENDING), ("created_at", DESCENDING)], name="pool_created"),
    ],
    "exports": [],  # _id = batch id: a selection handed to the annotation team (fdb.exports)
    "labels": [  # one document per (batch, label version, image): ground truth that came back
        IndexModel([("image_id", ASCENDING), ("label_version", DESCENDING)], name="image_version"),
        IndexModel([("batch_id", ASCENDING), ("label_version", ASCENDING), ("image_id", ASCENDING)], unique=True,
                   name="batch_version_image_unique"),
    ],
    "models": [  # _id = model version; stage, parent, training data, recipe, metrics (fdb.models)
        IndexModel([("created_at", DESCENDING)], name="created_at"),
    ],
    "registry": [],  # _id = "production": the one pointer to the production model, switched atomically
    "promotions": [  # every switch of production: when, from, to, why, the numbers
        IndexModel([("at", DESCENDING)], name="at"),
    ],
    "scheduled_runs": [],  # _id = state key of a scheduled mining run (fdb.runs)
    "listings": [],  # _id = "<root>|<pattern>|<model version>": where the next night's listing starts (fdb.listings)
}
