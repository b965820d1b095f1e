"""The records that cross a stage boundary, typed once for every stage: the ground floor every package stands on.

- `Detection`: one kept detection of one image, as the model made it (`detectors`) and the store keeps it (`fdb`);
  mining types it against ground truth and the export turns it into a pre-annotation.
- `ModelError`: one error of a model on a labelled image (`mining.model_errors`), recorded in `fdb`, queried with.
- `SelectedImage`: one image of a selection, with why it was chosen (`mining.selection`), recorded in `fdb`,
  written into the labelling batch's manifest (`annotation_export`).
- `BOX_LAYER`, `IMAGE_LAYER`: the names of the two feature layers the detector taps and the store keeps.

Boxes are COCO's `bbox` [x, y, width, height] in pixels everywhere. Ids of stored records (`id`, `image_id`,
`detection_id`) are the store's, opaque to everybody else; they are None until a record is stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

BOX_LAYER = "roi_heads.box_head.fc7"  # one 1024-d vector per kept detection: the box head's last FC layer
IMAGE_LAYER = "backbone.fpn.mean_p2_p5"  # one vector per image: each FPN level averaged over the image
# The box head's vector of a ground-truth box (pooled as if it were a proposal): what the model should have seen
# where it missed an object. A layer of its own, in BOX_LAYER's space, so a miss searches the pool's box index.
GT_BOX_LAYER = BOX_LAYER + "@ground_truth"

ERROR_TYPES = ("fp_background", "fp_wrong_class", "fp_localisation", "miss")
FP_TYPES = ERROR_TYPES[:3]  # the false positives: a detection to delete
# The false positives a look-alike makes (fired on background, or taken for another class): what the demo, the loop
# and a retrain query with unless told otherwise.
QUERIED_FP_TYPES = ("fp_background", "fp_wrong_class")
# Disagreements the labels, not the model, are suspected of (`mining.label_errors`).
LABEL_ERROR_TYPES = ("possible_missing", "possible_wrong_class", "possible_bad_box", "possible_spurious")


@dataclass
class Detection:
    """One kept detection. `rank` is its order among its image's kept detections: with the image and the model
    version it identifies the detection, so writing it again adds nothing."""

    rank: int
    bbox: list[float]  # [x, y, w, h]
    score: float
    category_id: int  # the dataset's category id
    category_name: str
    label: int | None = None  # the model's contiguous label (1..K)
    proposal_index: int | None = None  # which RPN proposal it came from (its FC vector is that proposal's)
    mask: dict | None = None  # COCO compressed RLE {"size": [h, w], "counts": str}
    id: Any = None
    image_id: Any = None
    model_version: str | None = None


@dataclass
class ModelError:
    """One error of a model on one labelled image, typed with pycocotools' matching rules (`mining.model_errors`).

    `type` is one of ERROR_TYPES; `detail` refines it (`duplicate` / `poor_localisation` for fp_localisation,
    `detected_as_other_class` / `poorly_localised` for a miss an FP explains). A false positive carries its
    detection (`detection_id`, `score`, `bbox`) and, when it overlaps one, the ground truth (`gt_id`, `gt_bbox`); a
    miss carries its ground truth (`gt_id`, `bbox` = `gt_bbox`)."""

    type: str
    category_id: int
    bbox: list[float]
    detail: str | None = None
    detection_id: Any = None
    true_category_id: int | None = None
    gt_id: int | None = None
    score: float | None = None
    iou: float = 0.0
    gt_bbox: list[float] | None = None  # the ground truth it overlaps (an FP's) or is (a miss's), when one
    # Where it happened, filled in when it is recorded:
    id: Any = None
    image_id: Any = None
    uri: str | None = None
    coco_image_id: int | None = None
    category_name: str | None = None
    true_category_name: str | None = None
    model_version: str | None = None
    params_key: str | None = None
    params: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class LabelSuspect:
    """One label of a labelled image the model's predictions disagree with, typed and scored (`mining.label_errors`).

    `type` is one of LABEL_ERROR_TYPES; `suspicion` in [0, 1] ranks suspects (at or above the run's threshold a
    suspect counts as a label error). The evidence: the prediction (`detection_id`, `score`, `bbox`, its class)
    and/or the ground truth (`gt_id`, `gt_bbox`, `gt_category_id`), their `iou`, the `agreement` of the
    prediction's FC-vector neighbours with its class, the `support` the model gives a ground-truth box.
    `predictions` says whether the model judging the label had trained on it: "held_out" or "k_fold"."""

    type: str
    suspicion: float
    category_id: int  # the class the label should have (the prediction's), or the label's own for spurious
    detection_id: Any = None
    score: float | None = None
    bbox: list[float] | None = None
    gt_id: int | None = None
    gt_bbox: list[float] | None = None
    gt_category_id: int | None = None
    iou: float = 0.0
    agreement: float | None = None
    support: float | None = None
    why: str = ""
    # Where it was found, filled in when it is recorded:
    id: Any = None
    image_id: Any = None
    uri: str | None = None
    coco_image_id: int | None = None
    category_name: str | None = None
    gt_category_name: str | None = None
    model_version: str | None = None
    params_key: str | None = None
    predictions: str | None = None
    labels_sha256: str | None = None  # the sha256 of the labelled set's file the suspect was found in

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class QueryHit:
    """One query that reached a selected image: which error, of what kind, and how near it came."""

    error_id: Any
    type: str
    category: str | None
    source_image_id: Any
    level: str  # "detection" (searched with the FP's own FC vector) or "image" (with its image's vector)
    distance: float


@dataclass
class SelectedImage:
    """One image of a selection, in rank order, with its provenance: the queries that found it."""

    image_id: Any
    uri: str
    rank: int
    reason: str
    hits: int = 0
    best_distance: float | None = None
    queries: list[QueryHit] = field(default_factory=list)

    @property
    def error_types(self) -> list[str]:
        return sorted({q.type for q in self.queries if q.type})

    @property
    def classes(self) -> list[str]:
        return sorted({q.category for q in self.queries if q.category})


@dataclass
class SelectionInfo:
    """What a selection is, beside its images: which arm, from which model, pool index and parameters."""

    selection_id: str
    arm: str  # "mined" or "random"
    model_version: str
    params: dict = field(default_factory=dict)
    index_versions: dict[str, str] = field(default_factory=dict)
    export_id: str | None = None
