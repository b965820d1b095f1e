"""Selecting hard cases: a strategy (`mining.strategies`: errors, targeted, random, uncertainty, diversity, hybrid)
ranks the eligible pool, and its images become a labelling selection, with the reason for every image and the
strategy's parameters recorded; a random arm of the same budget is drawn beside it.

`select_hard_cases` is the whole mining step over what the store holds: the model's errors on the labelled set are
typed (`mining.model_errors`), those a trusted label-error judge explains are left out (`mining.label_errors`), the
rest become queries (`mining.queries`; for `targeted`, the errors on the target classes and their exemplars), and
the strategy ranks the pool. `select_for_queries` and `random_selection` are the errors and random strategies on
their own. Mining never runs a model: `tasks` (or the command) runs it first; nor does ranking grow the pool
index: `pool_index_upkeep` brings it up to date, a step of its own before mining.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fdb import FeatureDB
from fdb import exports as export_store
from fdb import images as image_store
from fdb import runs as run_store
from fdb import selections as selection_store
from fdb.pool_index import PoolIndex, update_pool_indexes
from mining.config import LabelErrorConfig, MatchConfig, MiningConfig
from mining.model_errors import ErrorReport, find_errors, operating_point_cost
from mining.label_errors import LabelErrorReport, explained_errors, find_label_errors
from mining.montage import query_montage
from mining.queries import Query, build_queries, build_target_queries, chosen_errors
from mining.strategies import Selection, StrategyContext, searches_pool_index, select
from mining.strategies.base import selection_key
from records import BOX_LAYER, IMAGE_LAYER
from records.coco import CocoSet, load_coco


def select_for_queries(fdb: FeatureDB, model_version: str, queries: list[Query],
                       config: MiningConfig = MiningConfig(), index_root: str | Path = "indexes",
                       params: dict | None = None) -> Selection:
    """Select up to `config.budget` pool images nearest to the queries (`config.k` each) with the `errors`
    strategy, and record the selection in fdb. `params` are recorded with it (and name it)."""
    context = StrategyContext(fdb, model_version, list(queries), Path(index_root))
    return select(context, "errors", config, params=params)


def random_selection(fdb: FeatureDB, model_version: str, budget: int, seed: int = 0,
                     params: dict | None = None) -> Selection:
    """The baseline arm: `budget` images drawn uniformly from the same eligible pool (the `random` strategy)."""
    return select(StrategyContext(fdb, model_version), "random", MiningConfig(seed=seed), budget, params)


# ---------------------------------------------------------------------------------------------------- the job
def pool_index_upkeep(fdb: FeatureDB, model_version: str, config: MiningConfig, index_root: str | Path
                      ) -> dict[str, tuple[PoolIndex | None, float]]:
    """The step before mining: each layer's pool index takes in the pool vectors written since its last upkeep
    (`fdb.pool_index`; built the first time), with the seconds it took, so that ranking only reads it. Nothing for
    a strategy that searches no index."""
    if not searches_pool_index(config.strategy):
        return {}
    return update_pool_indexes(fdb, model_version, (BOX_LAYER, IMAGE_LAYER), index_root, config.backend)


def last_labelled_set(fdb: FeatureDB) -> tuple[str, str] | None:
    """(COCO json, image folder) of the labelled set the last mining run used, so later runs can omit it."""
    params = run_store.last_run_parameters(fdb, "mine_hard_cases", having="gt_json")
    return (params["gt_json"], params["gt_images"]) if params else None


@dataclass
class MiningResult:
    errors: ErrorReport
    queries: list[Query]
    selection: Selection
    random: Selection | None
    montage: Path | None
    run_id: object
    label_errors: LabelErrorReport | None = None
    left_out: dict[str, int] = field(default_factory=dict)  # suspect type -> errors it explained, not queried
    # The unit costs the operating-point price counts errors at (`MiningConfig.fp_cost`, `miss_cost`).
    fp_cost: float = 1.0
    miss_cost: float = 1.0

    def error_table(self) -> str:
        """The model's errors by type (and what each costs), the suspected label errors, and what they left out."""
        table = self.errors.table(self.fp_cost, self.miss_cost) + (
            "\n" + self.label_errors.table() if self.label_errors else "")
        if self.left_out:
            table += "\nleft out of the queries as label errors: " + ", ".join(
                f"{n} ({kind})" for kind, n in sorted(self.left_out.items()))
        return table

    def summary(self) -> "MiningSummary":
        queried = {q.error_id for q in self.queries}
        label_errors = self.label_errors
        return MiningSummary(
            selection_id=self.selection.selection_id, selected=len(self.selection),
            strategy=self.selection.info.params.get("strategy"), queries=len(self.queries),
            errors=self.errors.counts, error_table=self.error_table(), error_cost=self.errors.cost,
            operating_point_cost=operating_point_cost(self.errors.totals(), self.fp_cost, self.miss_cost),
            pricing=self.selection.info.params.get("cost"),
            budget_shares=self.selection.info.params.get("shares"),
            label_errors=label_errors.counts() if label_errors else {},
            label_error_predictions=label_errors.predictions if label_errors else None, left_out=self.left_out,
            query_image_ids=sorted({str(q.source_image_id) for q in self.queries}),
            query_coco_ids=sorted({e.coco_image_id for e in self.errors.errors if e.id in queried}),
            queries_by_level={lvl: sum(q.level == lvl for q in self.queries) for lvl in ("detection", "image")},
            index_versions=self.selection.index_versions, selected_uris=[img.uri for img in self.selection.images],
            random_selection_id=self.random.selection_id if self.random else None,
            random_uris=[img.uri for img in self.random.images] if self.random else [],
            montage=str(self.montage) if self.montage else None,
            top=[(img.uri, img.reason) for img in self.selection.images[:20]])


@dataclass(frozen=True)
class MiningSummary:
    """What a mining run chose and why, without its records: what the commands print, a night records and the
    flows hand on (`MiningResult.summary`)."""

    selection_id: str
    selected: int
    strategy: str | None = None
    queries: int = 0
    errors: dict = field(default_factory=dict)  # error type -> count on the labelled set
    error_table: str = ""
    error_cost: dict = field(default_factory=dict)  # error type -> the bbox mAP it costs (TIDE)
    operating_point_cost: dict = field(default_factory=dict)  # error type -> its count at the threshold x unit cost
    pricing: str | None = None  # what the budget split priced error types by (map, operating-point), if it split
    budget_shares: dict | None = None  # error type -> images, when the budget was split by cost
    label_errors: dict = field(default_factory=dict)  # suspect type -> count
    label_error_predictions: str | None = None
    left_out: dict = field(default_factory=dict)  # suspect type -> errors it explained, left out of the queries
    query_image_ids: list[str] = field(default_factory=list)
    query_coco_ids: list[int] = field(default_factory=list)
    queries_by_level: dict = field(default_factory=dict)
    index_versions: dict = field(default_factory=dict)
    selected_uris: list[str] = field(default_factory=list)
    random_selection_id: str | None = None
    random_uris: list[str] = field(default_factory=list)
    montage: str | None = None
    top: list[tuple[str, str]] = field(default_factory=list)  # (uri, reason) of the first 20 selected images

    def as_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict) -> "MiningSummary":
        """As recorded (a night's selection in fdb.runs); fields a record lacks keep their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        return cls(**{**values, "top": [tuple(row) for row in values.get("top", [])]})


def select_hard_cases(fdb: FeatureDB, model_version: str, ground_truth: CocoSet,
                    config: MiningConfig = MiningConfig(), match: MatchConfig = MatchConfig(),
                    out_dir: str | Path = ".", label_config: LabelErrorConfig = LabelErrorConfig()) -> MiningResult:
    """The "mine hard cases" job over what the store holds: type the model's errors on the labelled set (whose
    images it must have processed), leave out those a suspected label error explains (unless
    `config.keep_label_errors`), query the pool with the rest, record the selection (and a random arm of the
    same budget), and draw the montage."""
    run_params = {"strategy": config.strategy, "budget_split": config.budget_split, "cost": config.cost,
                  "fp_cost": config.fp_cost, "miss_cost": config.miss_cost, "k": config.k,
                  "budget": config.budget, "match": match.as_dict(), "types": _list(config.types),
                  "classes": _list(config.classes), "level": config.level, "backend": config.backend,
                  "random_arm": config.random_arm, "seed": config.seed,
                  "keep_label_errors": config.keep_label_errors, "label_errors": label_config.as_dict(),
                  "target_class": _list(config.target_class), "exemplars": config.exemplars,
                  "gt_json": str(Path(ground_truth.path).resolve()), "gt_images": str(ground_truth.image_dir)}
    run_id = run_store.start_run(fdb, "mine_hard_cases", run_params, model_version=model_version)
    errors = find_errors(fdb, model_version, ground_truth, match)
    # Suspects are judged (and recorded) either way, so the report can show them beside the model's errors.
    label_errors = find_label_errors(fdb, model_version, ground_truth, label_config, match)
    # A judge too weak (it supports too few labels, or its precision on errors planted in a copy of the labels is
    # under label_config.min_precision) leaves nothing out: its report says why.
    explained = ({} if label_errors.judge_too_weak else
                 explained_errors(errors.errors, label_errors.suspects, label_config.threshold))
    model_errors = errors.errors if config.keep_label_errors else [e for e in errors.errors if e.id not in explained]
    queries = (build_target_queries(fdb, model_version, model_errors, ground_truth, config.target_class,
                                    load_coco(config.exemplars) if config.exemplars else None)
               if config.strategy == "targeted" else
               build_queries(fdb, model_version, model_errors, types=config.types, classes=config.classes,
                             level=config.level))
    left_out = {} if config.keep_label_errors else dict(Counter(
        explained[e.id] for e in chosen_errors(errors.errors, config.types, config.classes) if e.id in explained))
    out_dir = Path(out_dir)
    context = StrategyContext(fdb, model_version, queries, out_dir / "indexes", cost=errors.cost,
                              counts=errors.totals())
    selection = select(context, config.strategy, config,
                       params={"match": match.as_dict(), "types": _list(config.types),
                               "classes": _list(config.classes), "level": config.level,
                               **({"target_class": _list(config.target_class), "exemplars": config.exemplars}
                                  if config.strategy == "targeted" else {})})
    # The random arm from the same context: the pool's generation, counted once, names both arms.
    baseline = select(context, "random", MiningConfig(seed=config.seed), config.budget) if config.random_arm else None
    montage = query_montage(fdb, queries, selection.neighbours,
                            out_dir / "selections" / selection.selection_id / "montage.png")
    run_store.finish_run(fdb, run_id, metrics={
        "errors": errors.totals(), "error_cost": errors.cost, "budget_shares": selection.info.params.get("shares"),
        "operating_point_cost": operating_point_cost(errors.totals(), config.fp_cost, config.miss_cost),
        "label_errors": label_errors.counts(), "left_out_as_label_errors": left_out,
        "label_error_predictions": label_errors.predictions, "label_error_judge_too_weak": label_errors.judge_too_weak,
        "label_error_check": label_errors.check.as_dict() if label_errors.check else None,
        "queries": len(queries), "selected": len(selection),
        "selection_id": selection.selection_id, "random_selection_id": baseline.selection_id if baseline else None})
    return MiningResult(errors, queries, selection, baseline, montage, run_id, label_errors, left_out,
                        config.fp_cost, config.miss_cost)


def query_image_ids(fdb: FeatureDB, batch_id: str, evaluation: CocoSet) -> list[int]:
    """The evaluation set's ids of the images whose errors queried the batch's selection: the query subset."""
    batch = export_store.get(fdb, batch_id)
    found = selection_store.read_selection(fdb, batch["selection_id"]) if batch else None
    if found is None:
        raise LookupError(f"no exported batch {batch_id!r} with a selection in fdb")
    sources = {q.source_image_id for img in found[1] for q in img.queries}
    uris = {d["uri"] for d in image_store.by_id(fdb, sources).values()}
    return sorted(i for i in evaluation.images if str(evaluation.image_path(i).resolve()) in uris)


def _list(values):
    return list(values) if values is not None else None


# ---------------------------------------------------------------------------------------------------- nightly
def pool_state(fdb: FeatureDB, model_version: str, labelled_sha256: str, params: dict) -> str:
    """A key for everything a scheduled mining run depends on: the model, the labelled set's bytes (their
    SHA-256, `records.coco.LabelledSet.sha256`), the parameters, the pool images this model has processed and
    which of them have labels back. A run whose key is already recorded has nothing new to mine: exporting its
    selection removed those images from the pool, so mining again would queue a second batch for the same night."""
    # Counts of processed pool images and labels back: each only grows, so they change whenever the pool does,
    # and they cost the same at a million images as at ten (the labelled set is covered by its bytes). Exports
    # are left out on purpose: the night's own export must not make the same night look new.
    generation = image_store.pool_generation(fdb, model_version)
    generation.pop("exported")
    return "state-" + selection_key(model_version, labelled_sha256, params, generation)
