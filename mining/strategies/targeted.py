"""`targeted`: the rare thing, found on purpose (TALISMAN: Kothawade et al., "Targeted Active Learning for Object
Detection with Rare Classes and Slices using Submodular Mutual Information", ECCV 2022).

The queries are the target: the model's errors on the target classes in the labelled split and exemplars of them
(the labelled boxes of `--target-class`, pooled through the box head, and a user's `--exemplars`; built by
`mining.queries.build_target_queries`). Each candidate pool image is scored by how much it looks like each query:
`s_ij`, the best cosine similarity between query i's box-head vector and any detection vector of image j (image
vectors for image-level queries), centred on the pool's mean as the pool index is, and clipped at 0. The batch is
then the greedy maximiser of a submodular mutual information between batch and queries (`mining.submodular`):
FL2MI by default (covers every query, then relevance), GCMI as an option (relevance only).

Candidates: each query's `candidates` nearest eligible pool vectors in the pool index (the errors strategy's
search), so the cost follows the queries, not the pool; every detection of a candidate image then counts in its
score, not only the one the index returned. An image outside every query's candidates scores 0 for all of them,
which is below any candidate's score. Images with the same bytes collapse to one.
"""

from __future__ import annotations

import numpy as np

from fdb import FeatureDB
from fdb import images as image_store
from fdb.pool_index import open_pool_index
from mining.config import MiningConfig
from mining.strategies.base import Ranking, StrategyContext, register, unit_rows
from mining.strategies.errors import eligible_neighbours, query_doc
from mining.submodular import smi_greedy
from records import BOX_LAYER, IMAGE_LAYER, QueryHit, SelectedImage

LAYER_OF = {"detection": BOX_LAYER, "image": IMAGE_LAYER}


@register("targeted", searches_pool_index=True)
class TargetedMutualInformation:
    def __init__(self, function: str = MiningConfig.smi, eta: float = MiningConfig.smi_eta,
                 candidates: int = MiningConfig.smi_candidates, backend: str = MiningConfig.backend):
        self.function, self.eta, self.candidates, self.backend = function, eta, candidates, backend

    @classmethod
    def from_config(cls, config: MiningConfig) -> "TargetedMutualInformation":
        return cls(config.smi, config.smi_eta, config.smi_candidates, config.backend)

    def rank(self, context: StrategyContext, budget: int, exclude: frozenset = frozenset()) -> Ranking:
        fdb, version = context.fdb, context.model_version
        queries = [q for q in context.queries if q.vector is not None]
        params = {"smi": self.function, "eta": self.eta, "candidates": self.candidates, "backend": self.backend}
        identity = (sorted(str(q.error_id) for q in queries), context.pool_generation())
        scores = PoolSimilarity(fdb, version, context.index_root, self.backend)
        for level in ("detection", "image"):
            scores.add(level, [q for q in queries if q.level == level], self.candidates, exclude)
        if not scores.images:
            return Ranking([], params, scores.index_versions, identity=identity)
        similarity, images = scores.matrix()
        records = image_store.by_id(fdb, images)
        allowed = np.array([records.get(i) is not None for i in images])
        picks, gains = smi_greedy(similarity, budget, self.function, self.eta, allowed=allowed & _first_copies(
            images, records))
        ordered = [q for level in ("detection", "image") for q in scores.queries[level]]
        chosen = [_selected(images[p], records[images[p]]["uri"], rank, similarity[:, p], ordered, gain,
                            self.function) for rank, (p, gain) in enumerate(zip(picks, gains))]
        return Ranking(chosen, params, scores.index_versions, query_docs=scores.query_docs,
                       identity=identity + (scores.index_versions,))


class PoolSimilarity:
    """Each query's candidate pool images (its nearest eligible vectors in the pool index) and the query-by-image
    similarity over every vector those images hold, per level (detection queries against detection vectors, image
    queries against image vectors)."""

    def __init__(self, fdb: FeatureDB, model_version: str, index_root, backend: str):
        self.fdb, self.model_version, self.index_root, self.backend = fdb, model_version, index_root, backend
        self._images: dict = {}  # candidate image id -> None, in the order the levels found them
        self.queries: dict[str, list] = {"detection": [], "image": []}
        self.index_versions: dict[str, str] = {}
        self.query_docs: list[dict] = []
        self._rows: dict[str, dict] = {}  # level -> {image id: similarity column over its queries}

    def add(self, level: str, queries: list, candidates: int, exclude: frozenset) -> None:
        layer = LAYER_OF[level]
        pool = open_pool_index(self.fdb, self.model_version, layer, self.index_root, backend=self.backend) if queries \
            else None
        if pool is None or len(pool.index) == 0:
            return
        self.index_versions[layer] = pool.index.spec.version
        centred = np.stack([q.vector for q in queries]).astype(np.float32)
        if centred.shape[1] == len(pool.centre):  # a wrong dimension is left for check_query to name
            centred = centred - pool.centre
        pool.index.check_query(centred, self.model_version)
        rows, _ = eligible_neighbours(self.fdb, self.model_version, pool, centred, candidates, layer)
        found = sorted({image for row in rows for _, image, _ in row if image not in exclude}, key=str)
        if not found:
            return
        similarity = _best_similarity(self.fdb, self.model_version, layer, found, unit_rows(centred), pool.centre)
        self._rows[level] = dict(zip(found, similarity.T))
        self.queries[level] = list(queries)
        self._images.update(dict.fromkeys(found))
        self.query_docs += [query_doc(q, row, level, layer, self.model_version, pool.index.spec.version)
                            for q, row in zip(queries, rows)]

    @property
    def images(self) -> list:
        return list(self._images)

    def matrix(self) -> tuple[np.ndarray, list]:
        """(queries x images) similarities, clipped at 0, detection-level queries first, and the images."""
        blocks = []
        for level in ("detection", "image"):
            n = len(self.queries[level])
            if n:
                zero = np.zeros(n, np.float32)
                blocks.append(np.stack([self._rows[level].get(i, zero) for i in self._images], axis=1))
        return np.maximum(np.concatenate(blocks, axis=0), 0.0), self.images


def _best_similarity(fdb: FeatureDB, model_version: str, layer: str, images: list, queries: np.ndarray,
                     centre: np.ndarray) -> np.ndarray:
    """(queries x images): each query's best cosine similarity to any vector of each image, centred as the index."""
    held = fdb.read_vectors(model_version, layer, image_ids=images, by_image=True)
    best = np.full((len(queries), len(images)), -1.0, np.float32)
    if len(held) == 0:
        return best
    column = {image: c for c, image in enumerate(images)}
    owners_image = [column[i] for i in held.image_object_ids()]
    sims = queries @ unit_rows(held.vectors.astype(np.float32) - centre).T
    np.maximum.at(best.T, owners_image, sims.T)
    return best


def _first_copies(images: list, records: dict) -> np.ndarray:
    """False for an image whose bytes an earlier candidate already has (a second copy teaches the labellers
    nothing)."""
    seen, keep = set(), []
    for image in images:
        sha = (records.get(image) or {}).get("sha256")
        keep.append(not sha or sha not in seen)
        seen.add(sha)
    return np.array(keep, bool)


def _selected(image_id, uri: str, rank: int, column: np.ndarray, queries: list, gain: float,
              function: str) -> SelectedImage:
    """A picked image with the queries it serves (those it is at all similar to, most similar first)."""
    order = [i for i in np.argsort(-column, kind="stable") if column[i] > 0]
    hits = [QueryHit(queries[i].error_id, queries[i].type, queries[i].category_name, queries[i].source_image_id,
                     queries[i].level, float(1.0 - column[i])) for i in order]
    types = sorted({h.type for h in hits})
    classes = sorted({h.category for h in hits})
    best = float(column.max()) if len(column) else 0.0
    return SelectedImage(image_id, uri, rank, hits=len(hits), best_distance=1.0 - best, queries=hits[:20],
                         reason=f"{function.upper()} pick {rank + 1} (gain {gain:.3f}): serves {len(hits)} target "
                                f"queries ({', '.join(types) or 'none'}; classes {', '.join(classes) or 'none'}), "
                                f"best similarity {best:.3f}")


