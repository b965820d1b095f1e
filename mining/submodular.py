"""Submodular mutual information between a batch and a query set, maximised greedily: how `targeted` mining picks
a batch that covers the queries (Kothawade et al., "PRISM", AAAI 2022; "TALISMAN", ECCV 2022).

`similarity[i, j] >= 0` is how much pool image j looks like query i (in `targeted`: the best cosine similarity
between query i's box-head vector and any detection vector of image j). For a batch A:

- **FL2MI** (facility-location variant mutual information, submodlib's
  `FacilityLocationVariantMutualInformationFunction`):
  `f(A; Q) = sum_i max_{j in A} s_ij + eta * sum_{j in A} max_i s_ij`.
  The first term rewards covering every query (a query already served by a picked image adds nothing more), the
  second rewards images close to some query; `eta` weighs relevance against coverage.
- **GCMI** (graph-cut mutual information, submodlib's `GraphCutMutualInformationFunction`):
  `f(A; Q) = 2 * lambda * sum_i sum_{j in A} s_ij`. It is modular: the greedy takes the images with the largest
  total similarity to the queries, whatever was picked before (pure relevance, no coverage).

The greedy adds, budget times, the image with the largest gain `f(A + j) - f(A)` (ties to the lower index). For a
monotone submodular f that is within 1 - 1/e of the best batch. Plain numpy: the pool side is the candidates the
vector index returns, a few thousand at most, so one pass per pick over a (queries x candidates) matrix is cheap.
"""

from __future__ import annotations

import numpy as np

FUNCTIONS = ("fl2mi", "gcmi")


def smi_value(similarity: np.ndarray, picked: list[int], function: str = "fl2mi", eta: float = 1.0) -> float:
    """f(A; Q) by its formula (the module docstring), for the batch `picked`: what the greedy's gains add up to."""
    s = _checked(similarity, function)
    if not picked:
        return 0.0
    chosen = s[:, picked]
    if function == "gcmi":
        return float(2.0 * eta * chosen.sum())
    return float(chosen.max(axis=1).sum() + eta * chosen.max(axis=0).sum())


def smi_greedy(similarity: np.ndarray, budget: int, function: str = "fl2mi", eta: float = 1.0,
               allowed: np.ndarray | None = None) -> tuple[list[int], list[float]]:
    """The greedy batch: up to `budget` column indices of `similarity` (queries x pool) in pick order, and each
    pick's gain. Columns where `allowed` is False are never picked (duplicates of a picked image, say)."""
    s = _checked(similarity, function)
    n_queries, n_pool = s.shape
    if n_pool == 0 or budget <= 0:
        return [], []
    open_ = np.ones(n_pool, bool) if allowed is None else np.asarray(allowed, bool).copy()
    relevance = s.max(axis=0) if n_queries else np.zeros(n_pool)
    covered = np.zeros(n_queries)  # each query's best similarity among the picked images
    picks, gains = [], []
    while len(picks) < budget and open_.any():
        if function == "gcmi":
            gain = 2.0 * eta * s.sum(axis=0)
        else:
            gain = np.maximum(s - covered[:, None], 0.0).sum(axis=0) + eta * relevance
        gain = np.where(open_, gain, -np.inf)
        pick = int(np.argmax(gain))
        picks.append(pick)
        gains.append(float(gain[pick]))
        open_[pick] = False
        covered = np.maximum(covered, s[:, pick])
    return picks, gains


def _checked(similarity: np.ndarray, function: str) -> np.ndarray:
    if function not in FUNCTIONS:
        raise ValueError(f"unknown submodular mutual information {function!r}; choose one of {list(FUNCTIONS)}")
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"similarity must be a (queries x pool) matrix, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("similarity holds non-finite values")
    if (s < 0).any():
        # Both functions are submodular (and the greedy's guarantee holds) only for non-negative similarities.
        raise ValueError(f"similarity must be non-negative (its least value is {s.min():.4f}); clip it first")
    return s
