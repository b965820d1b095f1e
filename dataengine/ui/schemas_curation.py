"""The JSON API's shapes for curation: selections, the decisions on their images, exports, and batches.

As in `schemas`: each model is what a function of `views` returns, after `encoding.encode`; the two request
bodies (a decision, an export) are checked here before anything is written.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from dataengine.ui.schemas import Doc, Number, SelectionRow, Shape, When


# ---------------------------------------------------------------------------------------------------- selections
class Selections(Shape):
    selections: list[SelectionRow]


class ImageQuery(Shape):
    """A query whose neighbours reached this image, at this distance."""
    error_id: str
    type: str | None
    category: str | None
    level: str | None
    distance: Number | None


class SelectedImageRow(Shape):
    """An image of a selection: why it was chosen (hits, best distance, queries) and the decision on it."""
    image_id: str
    uri: str | None
    rank: int | None
    reason: str | None
    hits: int | None
    best_distance: Number | None
    queries: list[ImageQuery]
    decision: str | None
    decided_by: str | None
    decided_at: When | None
    note: str


class SelectionQuery(Shape):
    error_id: str
    type: str | None
    category: str | None
    level: str | None
    found: int


class PartnerImage(Shape):
    image_id: str
    uri: str | None
    rank: int | None
    reason: str | None


class Partner(Shape):
    """The other arm drawn with a selection: the random one beside a mined one, or the mined one."""
    selection_id: str
    arm: str | None
    images: list[PartnerImage]


class ExportRow(Shape):
    batch_id: str
    status: str | None
    target: str | None
    images: int


class SelectionCounts(Shape):
    images: int
    accepted: int
    rejected: int


class NightRow(Shape):
    """A night held for review (`dataengine nightly --hold-for-review`): `awaiting_review` -> `exporting` ->
    `exported` (its one batch, `batch_id`) or `rejected` (every image rejected: no batch); its selection, the
    decisions on it so far, and where its batch goes with which options (the night's own, recorded with it)."""
    night_id: str
    status: str
    waiting: bool
    selection_id: str
    model_version: str | None
    images: int
    accepted: int
    rejected: int
    target: str
    only_accepted: bool
    min_score: Number | None
    held_at: When | None
    export_by: str | None
    export_started_at: When | None
    finished_at: When | None
    batch_id: str | None


class Nights(Shape):
    """The nights held for review, waiting ones first; `waiting`: how many (no night mines while one waits)."""
    waiting: int
    nights: list[NightRow]


class NightExportAnswer(Shape):
    """What pressing a held night's Export did: the night as it now stands, its batch (null when every image was
    rejected), and `already_done` when an earlier press had made it (this one made nothing)."""
    night: NightRow
    already_done: bool
    batch_id: str | None
    location: str | None
    counts: Doc


class SelectionWithImages(Shape):
    """A selection's images in rank order with their reasons and decisions, its queries, its partner arm, its
    export; `frozen` once an export started (decisions are then final); `night` when a night held it for review
    (its export then goes through the night, to the night's target)."""
    selection_id: str
    arm: str | None
    model_version: str | None
    params: Doc
    strategy: str | None
    error_cost: Doc
    operating_point_cost: Doc
    budget_shares: Doc
    index_versions: Doc
    export_id: str | None
    export: ExportRow | None
    frozen: bool
    run_id: str | None
    counts: SelectionCounts
    images: list[SelectedImageRow]
    queries: list[SelectionQuery]
    partner: Partner | None
    night: NightRow | None


class DecisionEntry(Shape):
    decision: str | None
    by: str | None
    at: When | None
    note: str | None


class ImageDecision(Shape):
    """An image's decision as it stands (`decision` null: undecided), and every decision made on it."""
    image_id: str
    decision: str | None
    by: str | None
    at: When | None
    note: str
    history: list[DecisionEntry]


class Decision(ImageDecision):
    """The decision on an image of a selection, and whether this request changed it."""
    selection_id: str
    changed: bool


class Export(Shape):
    """The labelling batch an export wrote: its id, where it went, its counts and number of files."""
    batch_id: str
    location: str
    counts: Doc
    files: int


class _Request(BaseModel):
    """A request body; a field sent as null takes its default, as one left out does."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class DecisionRequest(_Request):
    decision: str = Field(pattern="^(accept|reject|accepted|rejected)$")
    by: str | None = Field(None, max_length=100, description="who decided (default: the app's user)")
    note: str = Field("", max_length=1000)


class NightExportRequest(_Request):
    by: str | None = Field(None, max_length=100, description="who pressed Export (default: the app's user)")


class ExportRequest(_Request):
    min_score: float | None = Field(None, ge=0, le=1, description="the lowest score a pre-annotation keeps")
    only_accepted: bool = Field(False, description="ship only the images accepted (else all not rejected)")


# ---------------------------------------------------------------------------------------------------- batches
class BatchRow(Shape):
    """A labelling or review batch: where it went, its status, its label version and counts."""
    batch_id: str
    kind: str | None
    selection_id: str | None
    status: str | None
    target: str | None
    model_version: str | None
    images: int
    label_version: int | None
    created_at: When | None
    finished_at: When | None
    labelled_at: When | None
    attempts: int | None
    counts: Doc


class Batches(Shape):
    batches: list[BatchRow]


class LabelVersion(Shape):
    label_version: int
    images: int
    annotations: int
    source: str | None
    created_at: When | None


class Review(Shape):
    labelled_set: str | None
    applied: list[Doc]


class Progress(Shape):
    done: int  # tasks with a completed annotation
    total: int  # the batch's tasks on the server


class ServerProgress(Shape):
    """A batch pushed to an annotation server (Label Studio): its project, and its progress there, read live (or
    the server's error when it could not be read)."""
    kind: str | None
    url: str | None  # labelstudio://HOST:PORT/PROJECT, as it was pushed
    project: str | None
    project_id: int | None
    link: str  # the project's task list on the server
    progress: Progress | None
    error: str | None


class Batch(BatchRow):
    """A batch, its files and images, its label versions, what the annotators changed against what it sent
    (`changes`, a labelling batch) or the labelled-set versions it made (`review`), and the images left out."""
    files: list[Doc]
    categories: list[Doc]
    min_score: Number | None
    images_list: list[Doc]
    label_versions: list[LabelVersion]
    changes: Doc | None
    review: Review | None
    rejected: list[ImageDecision]
    server: ServerProgress | None = None
