"""Selection strategies behind one interface (`base.Strategy`), one module per strategy, registered by name:

| name | ranks the eligible pool by |
|---|---|
| `errors` | nearness to the model's errors on the labelled split (their query vectors in the pool index) |
| `random` | a seeded uniform draw: the baseline |
| `uncertainty` | the doubt in the image's detections (binary entropy or least confidence of their scores) |
| `diversity` | a k-center greedy core-set over image vectors, starting from the labelled images |
| `hybrid` | `errors`, with a share of the budget explored by `uncertainty` or `diversity` |
| `targeted` | submodular mutual information (FL2MI, GCMI) with target-class exemplars and the errors on them |
"""

from mining.strategies import diversity, errors, hybrid, random, targeted, uncertainty  # noqa: F401 - they register
from mining.strategies.base import (STRATEGIES, Ranking, Selection, Strategy, StrategyContext, build_strategy,
                                    record_ranking, searches_pool_index, select)

__all__ = ["STRATEGIES", "Ranking", "Selection", "Strategy", "StrategyContext", "build_strategy",
           "record_ranking", "searches_pool_index", "select"]
