"""The JSON API's shapes (Pydantic), so that /openapi.json and /docs say what each endpoint returns.

Each model is what a function of `views` returns, field for field and in its order, after `encoding.encode`: ids
are text, times ISO 8601 text, numbers stay as the store keeps them (an integer is not turned into a float). Every
field is required (a view always writes it, null when it has nothing), so validating adds no field. Records the
store keeps as they come (a model's metrics, a selection's parameters, a batch document) are free-form objects,
and every model lets through a field it does not name, so a field a view gains reaches the API before its schema.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
When = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
BBox = Annotated[list[Number], Field(min_length=4, max_length=4), WithJsonSchema(
    {"type": "array", "items": {"type": "number"}, "description": "[x, y, w, h] in the image's pixels"})]
Doc = dict[str, Any]  # a record as the store keeps it


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------------------------------------------- models, runs
class RunRow(Shape):
    """A run: what it did, with which model, when, its HTML report (a link under /reports) and its selections."""
    run_id: str
    kind: str | None
    status: str | None
    model_version: str | None
    started_at: When | None
    finished_at: When | None
    report: str | None
    selection_id: str | None
    random_selection_id: str | None
    title: str | None


class SelectionRow(Shape):
    """A selection: its arm, model, size, decisions so far and export (`export_id` null until exported)."""
    selection_id: str
    arm: str | None
    model_version: str | None
    created_at: When | None
    images: int
    accepted: int
    rejected: int
    export_id: str | None
    exporting: Any


class Overview(Shape):
    """The production model, the database's counts, the newest selections, batches and runs, and how many nights
    wait for their review."""
    production: str | None
    counts: dict[str, int]
    selections: list[SelectionRow]
    batches: list[Doc]
    runs: list[RunRow]
    waiting_nights: int  # nights held for review that nobody exported yet (no night mines meanwhile)


class TestNumbers(Shape):
    """A model on a test split that fed nothing: bbox mAP (all, tail, rest), false positives per image."""
    superset: Number | None
    tail: Number | None
    rest: Number | None
    fp_per_image: Number | None
    tail_fp_per_image: Number | None


class ModelRow(Shape):
    version: str
    stage: str | None
    role: str | None
    parent: str | None
    created_at: When | None
    bbox_map: Number | None
    test: TestNumbers | None
    classes: list[str]
    runs: int


class Models(Shape):
    """Every model version, the production one, and the promotions that made it so."""
    production: str | None
    models: list[ModelRow]
    promotions: list[Doc]


class Facets(Shape):
    """Error counts by type and by class."""
    type: dict[str, int]
    category_name: dict[str, int]


class ModelDetail(Shape):
    """One model: its lineage, checkpoint, numbers, recipe, the runs that used it, its selections and errors."""
    version: str
    stage: str | None
    role: str | None
    parent: str | None
    children: list[str]
    created_at: When | None
    promoted_at: When | None
    checkpoint: str | None
    classes: list[str]
    bbox_map: Number | None
    test: TestNumbers | None
    metrics: Doc
    evaluation: Doc
    training_data: Doc
    recipe: Doc
    runs: list[RunRow]
    selections: list[SelectionRow]
    errors: Facets


# ---------------------------------------------------------------------------------------------------- errors
class ErrorRow(Shape):
    """An error of the model on the labelled set, and the selections that searched with it."""
    error_id: str
    type: str
    detail: Any
    category: str | None
    true_category: str | None
    score: Number | None
    iou: Number | None
    bbox: BBox | None
    gt_bbox: BBox | None
    image_id: str | None
    uri: str | None
    queried_in: list[str]


class SuspectRow(Shape):
    """A suspected label error: why, how strongly, the label's box and class against the model's."""
    suspect_id: str
    type: str
    suspicion: Number | None
    why: Any
    category: str | None
    label_category: str | None
    score: Number | None
    bbox: BBox | None
    gt_bbox: BBox | None
    image_id: str | None
    uri: str | None
    model_version: str | None


class LabelErrors(Shape):
    total: int
    types: list[str]
    suspects: list[SuspectRow]


class ErrorsPage(Shape):
    """A page of a model's errors (filtered by type and class), their counts, and the suspected label errors."""
    model_version: str | None
    models: list[str]
    types: list[str]
    category: str | None
    all_types: list[str]
    facets: Facets
    page: int
    per_page: int
    total: int
    pages: int
    errors: list[ErrorRow]
    label_errors: LabelErrors


# ---------------------------------------------------------------------------------------------------- queries
class PoolHit(Shape):
    """A pool image or detection found near a vector: its rank, distance, image and detection."""
    rank: int
    distance: Number
    image_id: str
    uri: str | None
    detection_id: str | None
    bbox: BBox | None
    score: Number | None
    category: str | None


class Neighbour(PoolHit):
    """A pool neighbour a query found, and its rank in the selection (if selected)."""
    selected_rank: int | None


class QueryWithNeighbours(Shape):
    """An error searched with: the vector used, the index, why, and the neighbours it found."""
    error_id: str
    selection_id: str
    model_version: str | None
    type: str | None
    category: str | None
    level: str | None
    layer: str | None
    index_version: str | None
    detail: Any
    score: Number | None
    true_category: str | None
    source_image_id: str
    source_uri: str | None
    bbox: BBox | None
    gt_bbox: BBox | None
    reason: str
    other_selections: list[str]
    neighbours: list[Neighbour]


# ---------------------------------------------------------------------------------------------------- images
class ImageDetection(Shape):
    detection_id: str
    rank: int | None
    bbox: BBox
    score: Number | None
    category: str | None


class ImageError(Shape):
    error_id: str
    type: str
    category: str | None
    bbox: BBox | None


class ImageSelection(Shape):
    selection_id: str
    arm: str | None
    rank: int | None
    reason: str | None
    export_id: str | None
    decision: str | None


class Image(Shape):
    """An image: its record, a model's detections on it, the errors found on it, the selections it is in."""
    image_id: str
    uri: str | None
    width: int | None
    height: int | None
    split: str | None
    labelled: bool
    status: str | None
    reason: Any
    sha256: str | None
    models_done: list[str]
    model_version: str | None
    min_score: Number
    detections: list[ImageDetection]
    errors: list[ImageError]
    selections: list[ImageSelection]


# ---------------------------------------------------------------------------------------------------- similar
class SimilarQuery(Shape):
    """What was searched with: an image, or a detection on it (its box, class and score)."""
    image_id: str
    uri: str | None
    detection_id: str | None
    bbox: BBox | None
    category: str | None
    score: Number | None


class SimilarHitRow(PoolHit):
    """A pool detection ("box") or image ("image") near the query, nearest first; `is_query`: the query itself."""
    is_query: bool


class Similar(Shape):
    """A detection or an image, and the k pool detections or images nearest to its stored vector."""
    owner_id: str
    layer: str
    vector_layer: str
    model_version: str
    k: int
    query: SimilarQuery
    hits: list[SimilarHitRow]
