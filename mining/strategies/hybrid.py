"""`hybrid`: the `errors` ranking for most of the budget, and a share for exploration by another strategy
(`uncertainty` or `diversity`), so a batch also reaches what no error on the labelled split points at."""

from __future__ import annotations

from mining.config import MiningConfig
from mining.strategies.base import Ranking, StrategyContext, build_strategy, register, reranked


@register("hybrid", searches_pool_index=True)  # its errors share does
class Hybrid:
    def __init__(self, config: MiningConfig):
        if not 0.0 <= config.explore_share <= 1.0:
            raise ValueError(f"explore_share is a share of the budget, between 0 and 1; got {config.explore_share}")
        if config.explore_with not in ("uncertainty", "diversity"):
            raise ValueError(f"hybrid explores with uncertainty or diversity, not {config.explore_with!r}")
        self.config = config

    @classmethod
    def from_config(cls, config: MiningConfig) -> "Hybrid":
        return cls(config)

    def rank(self, context: StrategyContext, budget: int, exclude: frozenset = frozenset()) -> Ranking:
        share, explorer = self.config.explore_share, self.config.explore_with
        exploit_budget = budget - round(budget * share)
        exploit = build_strategy("errors", self.config).rank(context, exploit_budget, exclude)
        taken = frozenset(exclude) | {image.image_id for image in exploit.images}
        # Whatever the errors leave of the budget goes to exploration.
        explore = build_strategy(explorer, self.config).rank(context, budget - len(exploit.images), taken)
        for image in explore.images:
            image.reason = f"exploration ({explorer}): {image.reason}"
        images = exploit.images + reranked(explore.images, start=len(exploit.images))
        return Ranking(images, {**exploit.params, "explore_share": share, "explore_with": explorer,
                                **{f"explore_{k}": v for k, v in explore.params.items()}},
                       exploit.index_versions, exploit.neighbours, exploit.query_docs,
                       identity=exploit.identity + explore.identity)
