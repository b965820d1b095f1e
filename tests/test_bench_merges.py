"""The benchmarks' merges that read verdicts off their parts: the strategies bench's difference from random paired
by draw and the seed's error ceiling against the tail target, and the evaluation bench's verdict per draw and
whether the draws agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _curve(values: list[float]) -> list[dict]:
    return [{"round": r, "labelled_images": 150 + 40 * r, "test_bbox_map": v, "tail_bbox_map": v,
             "tail_fp_per_image": 1.0 - v} for r, v in enumerate(values)]


def test_strategies_are_compared_with_random_within_each_draw():
    bench = _bench("strategies_bench")
    # Draw 1's world is harder: every engine is 0.1 lower there. Paired, that shared shift is not noise.
    parts = [{"hard_share": 0.05, "draw": 0, "curves": {"errors-cost": _curve([0.80, 0.83]),
                                                        "random": _curve([0.80, 0.81])}},
             {"hard_share": 0.05, "draw": 1, "curves": {"errors-cost": _curve([0.70, 0.73]),
                                                        "random": _curve([0.70, 0.70])}},
             {"hard_share": 0.3, "draw": 0, "curves": {"hybrid": _curve([0.8, 0.9])}}]  # no random: no pairs
    paired = bench.against_random(parts)
    assert set(paired) == {"0.05"} and set(paired["0.05"]) == {"errors-cost"}
    tail = paired["0.05"]["errors-cost"]["round_1"]["tail_bbox_map"]
    assert tail["difference"] == pytest.approx(0.025) and tail["per_draw"] == {"0": pytest.approx(0.02),
                                                                                "1": pytest.approx(0.03)}
    assert tail["sd"] == pytest.approx(0.005) and tail["min_detectable_difference"] == pytest.approx(0.01)
    assert paired["0.05"]["errors-cost"]["round_1"]["tail_fp_per_image"]["difference"] == pytest.approx(-0.025)


def test_the_evaluation_bench_says_whether_every_draw_gave_the_same_verdict():
    bench = _bench("evaluation_bench")

    def part(tail_difference: float) -> dict:
        return {"differences": {"mined-random": {
            "tail_bbox_map": {"difference": tail_difference, "min_detectable_difference": 0.007},
            "tail_fp_per_image": {"difference": -0.8, "min_detectable_difference": 0.2}}}}

    verdicts = {0: bench._verdict(part(-0.005)), 1: bench._verdict(part(-0.0068)), 2: bench._verdict(part(-0.02))}
    assert verdicts[0] == verdicts[1] == {"tail_bbox_map": "no difference", "tail_fp_per_image": "better"}
    assert verdicts[2]["tail_bbox_map"] == "worse"
    assert bench._same_verdict({0: verdicts[0], 1: verdicts[1]}) == {"tail_bbox_map": True, "tail_fp_per_image": True}
    assert bench._same_verdict(verdicts) == {"tail_bbox_map": False, "tail_fp_per_image": True}


def _ceiling(share: float, draw: int, tail: float) -> dict:
    return {"hard_share": share, "draw": draw, "error_ceiling": {"tail": tail, "superset": tail / 2},
            "seed_bbox_map": {"tail": 0.85, "superset": 0.84}, "error_cost": {"tail": {"miss": tail / 3}}}


def test_the_seed_error_ceiling_is_merged_per_draw_against_the_tail_target():
    bench = _bench("strategies_bench")
    merged = bench.merge_ceilings([_ceiling(0.05, 1, 0.012), _ceiling(0.05, 0, 0.008), _ceiling(0.3, 0, 0.04)],
                                  target=0.03)
    low, high = merged["0.05"], merged["0.3"]
    assert list(low["per_draw"]) == ["0", "1"] and low["per_draw"]["1"]["tail"] == 0.012
    assert low["tail_max"] == 0.012 and low["tail_mean"] == pytest.approx(0.010)
    # Below the target on every draw: beating random by the target takes more than fixing every tail error.
    assert low["ceiling_below_target"] is True
    assert high["ceiling_below_target"] is False  # one draw at or above it is enough to say the target is in reach
    # The merged file holds the ceilings only where some were measured.
    assert "seed_error_ceiling" not in bench.merge([], [])
    assert bench.merge([], [_ceiling(0.05, 0, 0.008)])["seed_error_ceiling"]["0.05"]["tail_max"] == 0.008


def _real_run(stop_ap50: float, seed: int) -> dict:
    return {"stop_ap50": stop_ap50, "stop_ap": stop_ap50 / 2, "test_bbox_map": 0.4, "test_ap50": 0.7,
            "fp_per_image": 0.3, "stop_recall": stop_ap50, "seed": seed}


def test_the_real_bench_pools_runs_over_parts_and_prices_each_arm_against_random():
    bench = _bench("real_bench")
    parts = [{"setting": "starved", "split_seed": split, "train_seeds": [0, 1], "minutes": 1.0, "machine": {},
              "seed_model": {}, "recipe": {}, "budget": 40, "pool_stop_share": share,
              "arms": {"seed": {"round_0": {"runs": [_real_run(0.1, None)]}},
                       "targeted": {"round_1": {"runs": [_real_run(0.5 + split / 10, 0), _real_run(0.6 + split / 10, 1)],
                                                "batch_stop_share": 0.9}},
                       "random": {"round_1": {"runs": [_real_run(0.2, 0), _real_run(0.3, 1)],
                                              "batch_stop_share": 0.2}},
                       "none": {"round_1": {"runs": [_real_run(0.1, 0), _real_run(0.2, 1)]}}}}
             for split, share in ((0, 0.2), (1, 0.3))]
    merged = bench.merge(parts)
    cell = merged["summary"]["starved"]["targeted"]["round_1"]
    assert cell["stop_ap50"]["runs"] == 4 and cell["stop_ap50"]["mean"] == pytest.approx(0.6)
    assert cell["batch_stop_share"]["mean"] == pytest.approx(0.9)
    against = merged["against_random"]["starved"]["targeted"]["round_1"]["stop_ap50"]
    assert against["difference"] == pytest.approx(0.35)
    # 2 sd of the difference of means: sqrt(var(targeted)/4 + var(random)/4), var = 1/3 * 0.02 and 0.01 / 3.
    assert against["min_detectable_difference"] == pytest.approx(2 * ((0.02 / 3) / 4 + (0.01 / 3) / 4) ** 0.5)
    assert merged["pool_stop_share"]["starved"] == pytest.approx(0.25)
    assert "random" not in merged["against_random"]["starved"]
    # An arm after random in the parts is compared with random's runs, not with their summary.
    assert merged["against_random"]["starved"]["none"]["round_1"]["stop_ap50"]["difference"] == pytest.approx(-0.1)
