"""The one interface every selection strategy implements, and its registry.

A strategy ranks the eligible pool (unlabelled, readable, processed by the model, not yet exported) for a labelling
budget and says why each image is there. It reads what the store holds (detections, vectors, the errors' queries)
and never runs a model, like the rest of `mining`. Strategies are registered by name, the way the index backends
are (`fdb.vector_index.BACKENDS`), so the CLI, the flows, the loop and the nightly choose one by name:

    ranking = build_strategy("uncertainty", MiningConfig()).rank(context, budget=40)
    selection = select(context, "hybrid", budget=40)     # ranked, then recorded with its strategy and parameters
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Protocol

import numpy as np

from fdb import FeatureDB
from fdb import images as image_store
from fdb import selections as selection_store
from mining.config import MiningConfig
from mining.queries import Query
from records import SelectedImage, SelectionInfo
from records.hashing import json_key


@dataclass
class StrategyContext:
    """What a strategy may look at: the store, the model whose detections and vectors rank the pool, the queries
    built from its errors on the labelled split (the `errors` strategy's input), and where pool indexes live. One
    context serves one mining run: the pool's generation is read once, so a context kept past an export would
    name its next selection after the pool before it."""

    fdb: FeatureDB
    model_version: str
    queries: list[Query] = field(default_factory=list)
    index_root: Path = Path("indexes")
    cost: dict[str, float] = field(default_factory=dict)  # error type -> the mAP it costs (`ErrorReport.cost`)
    # error type -> its count at the score threshold on the labelled set (`ErrorReport.totals`): the operating-point
    # price's count (`mining.model_errors.operating_point_cost`)
    counts: dict[str, int] = field(default_factory=dict)
    _generation: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def pool_generation(self) -> dict[str, int]:
        """The pool's generation (`fdb.images.pool_generation`), read once per context. Counting a million pool
        images costs half a second, and the selections ranked from one context (a mining run's arms, a hybrid's
        parts) change none of its counts: recording a selection exports nothing and decides nothing."""
        if self._generation is None:
            self._generation = image_store.pool_generation(self.fdb, self.model_version)
        return dict(self._generation)


@dataclass
class Ranking:
    """A strategy's answer: images in rank order, each with its reason, and what the strategy wants recorded."""

    images: list[SelectedImage]
    params: dict = field(default_factory=dict)  # the strategy's parameters, recorded with the selection
    index_versions: dict[str, str] = field(default_factory=dict)
    neighbours: dict = field(default_factory=dict)  # query error id -> [(owner id, image id, distance)]
    query_docs: list[dict] = field(default_factory=list)  # each query with the neighbours it found
    identity: tuple = ()  # beside the model, parameters and pool state: what else names the selection


class Strategy(Protocol):
    name: ClassVar[str]

    def rank(self, context: StrategyContext, budget: int, exclude: frozenset = frozenset()) -> Ranking:
        """Up to `budget` eligible pool images, best first, none of `exclude` (image ids)."""


STRATEGIES: dict[str, Callable[[MiningConfig], Strategy]] = {}
# The strategies that search the pool index (`fdb.pool_index`): it is brought up to date before they rank, and they
# only read it.
POOL_INDEX_STRATEGIES: set[str] = set()


def register(name: str, searches_pool_index: bool = False):
    """Class decorator: the strategy is built by name from a `MiningConfig` (`cls.from_config`)."""
    def wrap(cls):
        cls.name = name
        STRATEGIES[name] = cls.from_config
        if searches_pool_index:
            POOL_INDEX_STRATEGIES.add(name)
        return cls
    return wrap


def searches_pool_index(name: str) -> bool:
    """Whether strategy `name` ranks by searching the pool index (which must then be up to date before it ranks)."""
    return name in POOL_INDEX_STRATEGIES


def build_strategy(name: str, config: MiningConfig = MiningConfig()) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](config)


@dataclass
class Selection:
    """A recorded selection: what it is (`SelectionInfo`, whose params name its strategy) and its ranked images."""

    info: SelectionInfo
    images: list[SelectedImage]  # in rank order
    neighbours: dict = field(default_factory=dict)  # query error id -> [(owner id, image id, distance)]

    @property
    def selection_id(self) -> str:
        return self.info.selection_id

    @property
    def index_versions(self) -> dict[str, str]:
        return self.info.index_versions

    def __len__(self) -> int:
        return len(self.images)


def select(context: StrategyContext, name: str, config: MiningConfig, budget: int | None = None,
           params: dict | None = None) -> Selection:
    """Rank the pool with strategy `name` and record the selection in fdb, with the strategy, its parameters and
    the budget (`params` are recorded too, and name it); the same pool, model and parameters give the same
    selection id, so a re-run adds nothing."""
    budget = config.budget if budget is None else budget
    ranking = build_strategy(name, config).rank(context, budget)
    return record_ranking(context.fdb, context.model_version, name, ranking, budget, params)


def record_ranking(fdb: FeatureDB, model_version: str, name: str, ranking: Ranking, budget: int,
                   params: dict | None = None) -> Selection:
    params = {"strategy": name, "budget": budget, **ranking.params, **(params or {})}
    arm = "random" if name == "random" else "mined"
    selection_id = ("rnd-" if arm == "random" else "sel-") + selection_key(model_version, params, *ranking.identity)
    info = SelectionInfo(selection_id, arm, model_version, params, ranking.index_versions)
    selection_store.record_selection(fdb, info, ranking.images)
    if ranking.query_docs:
        selection_store.record_queries(fdb, selection_id, ranking.query_docs)
    return Selection(info, ranking.images, ranking.neighbours)


def selection_key(*parts) -> str:
    return json_key(parts, 16)


def unit_rows(m: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero): cosine similarity is then a dot product."""
    return m / (np.linalg.norm(m, axis=-1, keepdims=True) + 1e-12)


def reranked(images: list[SelectedImage], start: int = 0) -> list[SelectedImage]:
    """The same images with ranks start, start + 1, ... in list order."""
    for offset, image in enumerate(images):
        image.rank = start + offset
    return images
