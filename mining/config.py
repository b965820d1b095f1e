"""The matching and mining stages' configs: each default defined once, here; the CLI's flags, the flows'
parameters and the deployments derive from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from records.hashing import json_key


@dataclass(frozen=True)
class MatchConfig:
    """How a detection is matched to ground truth (the matching stage's one config)."""

    iou_threshold: float = field(default=0.5, metadata={"help": "IoU for a detection to match ground truth"})
    score_threshold: float = field(default=0.5, metadata={"help": "detections below this score are not errors"})
    background_iou: float = field(default=0.1, metadata={
        "help": "below this IoU with every object of its class, a false positive fired on background"})

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        return json_key([self.as_dict()], 16)


@dataclass(frozen=True)
class EvaluationConfig:
    """How arms and candidates are reported (the evaluation's one config; `mining.evaluation`)."""

    serving_threshold: float = field(default=0.5, metadata={
        "help": "the score at which the map product ships a detection: precision, recall and false positives per "
                "image are reported there"})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LabelErrorConfig:
    """When the model's predictions accuse a label (the label-error stage's one config; `mining.label_errors`)."""

    min_score: float = field(default=0.5, metadata={
        "help": "a prediction at least this confident can accuse a label"})
    bad_box_iou: float = field(default=0.75, metadata={
        "help": "a confident prediction of the label's class below this IoU with it suspects the box"})
    spurious_support: float = field(default=0.3, metadata={
        "help": "a label no prediction of its class supports above this score is suspected spurious"})
    neighbours: int = field(default=10, metadata={
        "help": "nearest labelled detections (FC vectors) asked whether a prediction looks like its class"})
    threshold: float = field(default=0.5, metadata={
        "help": "suspicion at or above which a suspect counts as a label error (left out of mining, reviewed)"})
    min_precision: float = field(default=0.8, metadata={
        "help": "the judge's least precision on errors planted in a copy of the labels for mining to leave out "
                "the errors its suspects explain (below it, nothing is left out)"})

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        return json_key([self.as_dict()], 16)


@dataclass(frozen=True)
class MiningConfig:
    """How hard cases are mined (the mining stage's one config; matching has `MatchConfig`)."""

    strategy: str = field(default="errors", metadata={
        "help": "how the pool is ranked (mining/strategies): errors (nearest to the model's errors), random, "
                "uncertainty, diversity (core-set), hybrid (errors plus a share explored by --explore-with) or targeted "
                "(submodular mutual information with --target-class / --exemplars)",
        "choices": ["errors", "random", "uncertainty", "diversity", "hybrid", "targeted"]})
    k: int = field(default=20, metadata={"help": "neighbours per query"})
    budget: int = field(default=200, metadata={"help": "most images to select"})
    types: tuple[str, ...] | None = field(default=None, metadata={
        "help": "error types to query with: fp_background fp_wrong_class fp_localisation miss (default: all)"})
    classes: tuple[str, ...] | None = field(default=None, metadata={"help": "only errors of these class names"})
    level: str = field(default="detection", metadata={
        "help": "search with each false positive's own FC vector (detection) or its image's vector (image)",
        "choices": ["detection", "image"]})
    backend: str = field(default="auto", metadata={
        "help": "vector index of the pool: auto uses exact search below 20,000 vectors and HNSW (which grows with "
                "each night) above; annoy is rebuilt whenever the pool grows",
        "choices": ["auto", "exact", "hnsw", "annoy"]})
    random_arm: bool = field(default=True, metadata={"help": "draw a random selection of the same budget beside"})
    seed: int = field(default=0, metadata={"help": "seed of the random arm"})
    duplicate_distance: float = field(default=1e-4, metadata={
        "help": "images closer than this (cosine, centred image vectors) to one already chosen are duplicates"})
    budget_split: str = field(default="cost", metadata={
        "help": "errors strategy: cost splits the budget between error types in proportion to the mAP each costs "
                "on the labelled set (TIDE), with a floor (the default: the strategies benchmark's choice, "
                "benchmarks/results/strategies.json); hits ranks every image by how many error queries hit it",
        "choices": ["cost", "hits"]})
    type_floor: float = field(default=0.1, metadata={
        "help": "budget_split cost: the least share of the budget each queried error type gets"})
    cost: str = field(default="map", metadata={
        "help": "budget_split cost: how an error type is priced. map: the bbox mAP it costs on the labelled set "
                "(TIDE; an error ranked below the true objects costs nothing); operating-point: its count at the "
                "score threshold (--score) on the labelled set x its unit cost (--fp-cost, --miss-cost), what a "
                "map served at that threshold pays",
        "choices": ["map", "operating-point"]})
    fp_cost: float = field(default=1.0, metadata={
        "help": "cost operating-point: the price of one false positive (background, wrong class, localisation)"})
    miss_cost: float = field(default=1.0, metadata={
        "help": "cost operating-point: the price of one missed object"})
    uncertainty: str = field(default="entropy", metadata={
        "help": "a detection's uncertainty for the uncertainty strategy: entropy (binary, of its score) or "
                "least_confidence (1 - score)", "choices": ["entropy", "least_confidence"]})
    uncertainty_aggregate: str = field(default="max", metadata={
        "help": "an image's uncertainty from its detections': max or sum", "choices": ["max", "sum"]})
    explore_share: float = field(default=0.25, metadata={
        "help": "hybrid: share of the budget given to exploration"})
    explore_with: str = field(default="uncertainty", metadata={
        "help": "hybrid: the exploring strategy", "choices": ["uncertainty", "diversity"]})
    keep_label_errors: bool = field(default=False, metadata={
        "help": "query with errors the labels are suspected of too (by default they are left out)"})
    target_class: tuple[str, ...] | None = field(default=None, metadata={
        "help": "targeted: the class names to find on purpose; their labelled boxes (pooled through the box head) "
                "and the model's errors on them are the queries"})
    exemplars: str | None = field(default=None, metadata={
        "help": "targeted: a COCO file of your own images or boxes to find more of (\"more like these\"); images "
                "without boxes search with their image vector"})
    smi: str = field(default="fl2mi", metadata={
        "help": "targeted: the submodular mutual information the batch maximises: fl2mi (cover every query, then "
                "relevance) or gcmi (relevance only)", "choices": ["fl2mi", "gcmi"]})
    smi_eta: float = field(default=1.0, metadata={
        "help": "targeted: FL2MI's weight of relevance against coverage (GCMI's lambda)"})
    smi_candidates: int = field(default=200, metadata={
        "help": "targeted: nearest pool vectors per query whose images are scored"})

    def __post_init__(self) -> None:
        # Lists from a CLI, a flow parameter or JSON become tuples, so the config stays hashable and comparable.
        for name in ("types", "classes", "target_class"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
