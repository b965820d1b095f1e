"""Selection strategies on a tiny hand-made pool: what each ranks first, and why (mining.strategies)."""

from __future__ import annotations

import numpy as np
import pytest
from bson import ObjectId

from fdb import detections as detection_store
from fdb import images as image_store
from mining.config import MiningConfig
from mining.queries import Query
from mining.strategies import STRATEGIES, StrategyContext, build_strategy, select
from mining.model_errors import operating_point_cost
from mining.selection import pool_index_upkeep
from mining.strategies.errors import split_budget
from records import BOX_LAYER, IMAGE_LAYER, Detection

MODEL = "m1"
DIM = 8


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def axis(i, noise=0.0, rng=None):
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    return unit(v + (noise * rng.standard_normal(DIM) if noise else 0))


@pytest.fixture()
def pool(fdb, tmp_path):
    """Six pool images and two labelled ones. Scores: p0 one detection at 0.5 (the most doubtful), p1 one at 0.99,
    p2 three at 0.7, p3 one at 0.3, p4 none, p5 one at 0.95. Image vectors: the labelled images and p0-p2 lie
    along axis 0, p3 along axis 1, p4 along axis 2, p5 along axis 1 too (near p3). Box vectors: p1's detection
    along axis 3, where the error query points."""
    rng = np.random.default_rng(0)
    scores = {0: [0.5], 1: [0.99], 2: [0.7, 0.7, 0.7], 3: [0.3], 4: [], 5: [0.95]}
    looks = {0: 0, 1: 0, 2: 0, 3: 1, 4: 2, 5: 1}
    ids = {}
    for i in range(6):
        image_id = ids[i] = ObjectId()
        fdb.images.insert_one({"_id": image_id, "uri": f"/pool/p{i}.png", "sha256": f"h{i}", "split": "pool",
                               "labelled": False, "status": "ok", "processed_by": [MODEL]})
        detection_store.write_detections(fdb, MODEL, [Detection(r, [1.0, 1.0, 5.0, 5.0], s, 1, "stop_sign",
                                                                image_id=image_id)
                                                      for r, s in enumerate(scores[i])])
        for r in range(len(scores[i])):
            box = axis(3, 0.05, rng) if i == 1 else axis(4 + r % 4, 0.3, rng)
            fdb.write_features(MODEL, BOX_LAYER, [detection_store.detection_id(image_id, MODEL, r)], box[None],
                               image_ids=[image_id])
        fdb.write_features(MODEL, IMAGE_LAYER, [image_id], axis(looks[i], 0.05, rng)[None], owner_kind="image")
    for j in range(2):
        image_id = ids[f"l{j}"] = ObjectId()
        fdb.images.insert_one({"_id": image_id, "uri": f"/val/l{j}.png", "split": "val", "labelled": True,
                               "status": "ok", "processed_by": [MODEL]})
        fdb.write_features(MODEL, IMAGE_LAYER, [image_id], axis(0, 0.05, rng)[None], owner_kind="image")
    query = Query(ObjectId(), "fp_background", "stop_sign", ids["l0"], "detection", axis(3), None, [0, 0, 4, 4])
    return ids, StrategyContext(fdb, MODEL, [query], tmp_path / "indexes")


def upkeep(context: StrategyContext, config: MiningConfig) -> None:
    """The pool index brought up to date for `config`'s strategy, the step before mining (ranking only reads it)."""
    pool_index_upkeep(context.fdb, MODEL, config, context.index_root)


def test_every_strategy_is_registered_and_an_unknown_one_is_named():
    assert set(STRATEGIES) == {"errors", "random", "uncertainty", "diversity", "hybrid", "targeted"}
    with pytest.raises(ValueError, match="unknown selection strategy 'entropy'.*diversity"):
        build_strategy("entropy")


def test_uncertainty_ranks_the_most_doubtful_detection_first(pool):
    ids, context = pool
    ranking = build_strategy("uncertainty").rank(context, budget=6)
    order = [image.image_id for image in ranking.images]
    # Entropy of the score, max per image: 0.5 (1 bit), 0.3 and 0.7 (0.88), 0.95, 0.99; p4 has no detection.
    assert order[0] == ids[0] and set(order[1:3]) == {ids[2], ids[3]} and order[3:] == [ids[5], ids[1]]
    assert ids[4] not in order
    assert "max entropy 1.000 over 1 detections" in ranking.images[0].reason
    # Summed, p2's three doubtful detections outweigh p0's one; least confidence puts the lowest score first.
    summed = build_strategy("uncertainty", MiningConfig(uncertainty_aggregate="sum")).rank(context, budget=1)
    assert summed.images[0].image_id == ids[2]
    least = build_strategy("uncertainty", MiningConfig(uncertainty="least_confidence")).rank(context, budget=1)
    assert least.images[0].image_id == ids[3]


def test_diversity_covers_what_the_labelled_set_does_not(pool):
    ids, context = pool
    ranking = build_strategy("diversity").rank(context, budget=3)
    order = [image.image_id for image in ranking.images]
    # The labelled images lie along axis 0 (as p0-p2 do): the first picks are p4 (axis 2) and one of p3 / p5
    # (axis 1); once one of those is picked, its twin is covered and a third pick comes from elsewhere.
    assert set(order[:2]) in ({ids[4], ids[3]}, {ids[4], ids[5]})
    assert not {ids[3], ids[5]} <= set(order)
    assert "2 labelled images" in ranking.images[0].reason


def test_errors_and_hybrid_share_the_budget_with_exploration(pool):
    ids, context = pool
    upkeep(context, MiningConfig(backend="exact"))
    errors = build_strategy("errors", MiningConfig(k=1, backend="exact")).rank(context, budget=4)
    assert [image.image_id for image in errors.images] == [ids[1]]  # the one box near the query
    hybrid = build_strategy("hybrid", MiningConfig(k=1, backend="exact", explore_share=0.5)).rank(context, budget=4)
    order = [image.image_id for image in hybrid.images]
    # Two of four for the errors, of which they fill one; the other three go to uncertainty, never p1 again.
    assert order[:2] == [ids[1], ids[0]] and set(order[2:]) == {ids[2], ids[3]}  # 0.3 and 0.7: equal entropy
    assert [image.rank for image in hybrid.images] == [0, 1, 2, 3]
    assert all(image.reason.startswith("exploration (uncertainty)") for image in hybrid.images[1:])
    with pytest.raises(ValueError, match="between 0 and 1"):
        build_strategy("hybrid", MiningConfig(explore_share=1.5))


def test_a_selection_records_its_strategy_and_parameters_once(fdb, pool):
    ids, context = pool
    config = MiningConfig(budget=2, strategy="uncertainty")
    first = select(context, "uncertainty", config)
    again = select(context, "uncertainty", config)
    assert first.selection_id == again.selection_id and first.info.arm == "mined"
    doc = fdb.selections.find_one({"selection_id": first.selection_id})
    assert doc["params"]["strategy"] == "uncertainty" and doc["params"]["uncertainty"] == "entropy"
    assert fdb.selections.count_documents({"selection_id": first.selection_id}) == 2
    drawn = select(context, "random", MiningConfig(seed=3), budget=3)
    assert drawn.info.arm == "random" and drawn.selection_id.startswith("rnd-") and len(drawn) == 3
    assert [i.image_id for i in select(context, "random", MiningConfig(seed=3), budget=3).images] == \
        [i.image_id for i in drawn.images]
    # Exported images leave the pool, so every strategy ranks what is left.
    fdb.selections.update_many({"selection_id": first.selection_id}, {"$set": {"export_id": "batch-1"}})
    after = build_strategy("uncertainty").rank(context, budget=6)
    assert not {i.image_id for i in first.images} & {i.image_id for i in after.images}


def test_one_context_counts_the_pool_once_and_a_new_one_sees_an_export(fdb, pool, monkeypatch):
    """Counting a million pool images costs half a second: a mining run's arms and a hybrid's parts share one."""
    ids, context = pool
    counted = []
    real = image_store.pool_generation
    upkeep(context, MiningConfig(strategy="hybrid"))
    monkeypatch.setattr(image_store, "pool_generation", lambda *args: counted.append(args) or real(*args))
    mined = select(context, "hybrid", MiningConfig(budget=3, explore_with="uncertainty"))
    drawn = select(context, "random", MiningConfig(seed=1), budget=2)
    assert len(counted) == 1 and len(mined) == 3 and len(drawn) == 2
    fdb.selections.update_many({"selection_id": drawn.selection_id}, {"$set": {"export_id": "batch-1"}})
    fresh = StrategyContext(fdb, MODEL, context.queries, context.index_root)
    again = select(fresh, "random", MiningConfig(seed=1), budget=2)
    assert len(counted) == 2 and again.selection_id != drawn.selection_id  # another pool, another draw
    assert not {i.image_id for i in again.images} & {i.image_id for i in drawn.images}


def test_the_budget_follows_what_each_error_type_costs_with_a_floor():
    # 0.06 mAP for misses, 0.03 for localisation, nothing measurable for background: 20 images, floor 10 % (2 each),
    # the other 14 two to one (9.33 and 4.67; the larger remainder takes the last image).
    shares = split_budget({"miss": 0.06, "fp_localisation": 0.03, "fp_background": 0.0}, 20, floor=0.1)
    assert shares == {"miss": 11, "fp_localisation": 7, "fp_background": 2} and sum(shares.values()) == 20
    assert split_budget({"a": 0.0, "b": 0.0}, 5) == {"a": 3, "b": 2}  # nothing measurable: alike
    assert split_budget({"a": 1.0, "b": 0.0, "c": 0.0}, 2, floor=0.5) == {"a": 2, "b": 0, "c": 0}
    assert sum(split_budget({"a": 0.3, "b": 0.2, "c": 0.1}, 7, floor=0.0).values()) == 7


def test_errors_split_by_cost_give_each_type_its_share(pool):
    ids, context = pool
    # A cheap background error near p1's box, a costly miss whose query is p3's image vector.
    miss = Query(ObjectId(), "miss", "car", ids["l1"], "image", axis(1), None, [0, 0, 4, 4])
    context.queries.append(miss)
    context.cost = {"fp_background": 0.001, "miss": 0.05}
    config = MiningConfig(k=2, backend="exact", budget_split="cost", type_floor=0.25)
    upkeep(context, config)
    ranking = build_strategy("errors", config).rank(context, budget=4)
    assert ranking.params["shares"] == {"miss": 3, "fp_background": 1}
    order = [image.image_id for image in ranking.images]
    # The miss's share first (its two nearest images: p3 and p5 lie along axis 1), then the background's.
    assert set(order[:2]) == {ids[3], ids[5]} and ids[1] in order
    assert ranking.images[0].reason.startswith("miss (3 of 4 images for 0.0500 mAP)")
    assert [image.rank for image in ranking.images] == list(range(len(order)))


def test_the_operating_point_prices_each_error_at_its_count_times_its_unit_cost():
    # 32 background false positives and 21 misses at the score threshold, one unit each: priced 32 and 21.
    prices = operating_point_cost({"fp_background": 32, "miss": 21}, fp_cost=1.0, miss_cost=1.0)
    assert prices == {"fp_background": 32.0, "miss": 21.0}
    # Budget 30, floor 10 %: 3 images each, the other 24 split 32:21 -> 24 x 32/53 = 14.49 and 24 x 21/53 = 9.51;
    # rounded down 14 and 9 (17 and 12 with the floor), the larger remainder (.51, misses) takes the 30th.
    assert split_budget(prices, 30, floor=0.1) == {"fp_background": 17, "miss": 13}
    # The mAP pricing of the users' case (0.0002 and 0.0197): 24 x 0.0002/0.0199 = 0.24 and 23.76 -> 3 and 27.
    assert split_budget({"fp_background": 0.0002, "miss": 0.0197}, 30, floor=0.1) == {"fp_background": 3, "miss": 27}
    # A miss worth three false positives: 32 and 63, so 24 x 32/95 = 8.08 and 24 x 63/95 = 15.92 -> 11 and 18, and
    # the remainder's image to the misses (.92): the split flips toward them.
    costly_misses = operating_point_cost({"fp_background": 32, "miss": 21}, fp_cost=1.0, miss_cost=3.0)
    assert costly_misses == {"fp_background": 32.0, "miss": 63.0}
    assert split_budget(costly_misses, 30, floor=0.1) == {"fp_background": 11, "miss": 19}
    # Every false-positive type is priced at fp_cost.
    assert operating_point_cost({"fp_wrong_class": 2, "fp_localisation": 4, "miss": 1}, 0.5, 2.0) == {
        "fp_wrong_class": 1.0, "fp_localisation": 2.0, "miss": 2.0}


def test_errors_split_priced_at_the_operating_point_record_their_pricing(pool):
    ids, context = pool
    miss = Query(ObjectId(), "miss", "car", ids["l1"], "image", axis(1), None, [0, 0, 4, 4])
    context.queries.append(miss)
    # Background false positives cost almost no mAP (ranked below the true objects), but there are three of them
    # at the score threshold against one miss.
    context.cost, context.counts = {"fp_background": 0.001, "miss": 0.05}, {"fp_background": 3, "miss": 1}
    by_map = MiningConfig(k=2, backend="exact", budget_split="cost", type_floor=0.25, budget=4)
    at_operating_point = MiningConfig(k=2, backend="exact", budget_split="cost", type_floor=0.25, budget=4,
                                      cost="operating-point")
    upkeep(context, by_map)
    mapped, operated = select(context, "errors", by_map), select(context, "errors", at_operating_point)
    # One image each, then the other two: by mAP 0.02 to 1.96 (miss 3, background 1); at the operating point 1.5 to
    # 0.5, the tied remainder to the heavier type (background 3, miss 1).
    assert mapped.info.params["shares"] == {"fp_background": 1, "miss": 3}
    assert operated.info.params["shares"] == {"fp_background": 3, "miss": 1}
    assert mapped.info.params["cost"] == "map" and "fp_cost" not in mapped.info.params
    assert operated.info.params["cost"] == "operating-point"
    assert operated.info.params["prices"] == {"fp_background": 3.0, "miss": 1.0}
    assert (operated.info.params["fp_cost"], operated.info.params["miss_cost"]) == (1.0, 1.0)
    assert operated.selection_id != mapped.selection_id  # priced otherwise, another selection
    assert operated.images[0].reason.startswith("fp_background (3 of 4 images for 3 errors x 1 at the operating point)")
    assert mapped.images[0].reason.startswith("miss (3 of 4 images for 0.0500 mAP)")
    with pytest.raises(ValueError, match="operating-point"):
        build_strategy("errors", MiningConfig(cost="tide"))


def test_a_miss_whose_box_reaches_no_pool_detection_searches_with_its_image(fdb, pool):
    ids, context = pool
    # Its ground-truth box's vector points where no pool detection lies, but its image looks like p4.
    miss = Query(ObjectId(), "miss", "car", ids["l1"], "detection", axis(2), None, [0, 0, 4, 4], fallback=axis(2))
    fdb.features.delete_many({"layer": BOX_LAYER})  # a pool without any detection vector
    context.queries = [miss]
    upkeep(context, MiningConfig(backend="exact"))  # the box layer has no pool vector left: no index of it
    ranking = build_strategy("errors", MiningConfig(k=1, backend="exact")).rank(context, budget=2)
    assert [image.image_id for image in ranking.images] == [ids[4]]
    assert ranking.images[0].queries[0].level == "image"
