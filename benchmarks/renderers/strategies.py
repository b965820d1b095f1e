"""Which selection strategy should be the default? (`benchmarks/strategies_bench.py` -> `results/strategies.json`,
its parts and ceiling runs in `results/strategies/`)."""

from __future__ import annotations

from renderers import cell, table

# The engines in the order the page discusses them, and what each is.
ENGINES = {"errors-cost": "`errors`, every type, split by cost (the default)",
           "errors": "`errors`, false positives ranked by hits (the demo's)",
           "hybrid": "`hybrid`", "uncertainty": "`uncertainty`", "diversity": "`diversity`",
           "random": "`random`", "none": "no new data"}
METRICS = (("test_bbox_map", "superset bbox mAP", 3), ("tail_bbox_map", "tail bbox mAP", 3),
           ("tail_fp_per_image", "tail FPs per image", 2))
FP_TYPES = "fp_background+fp_wrong_class+fp_localisation"


def _last_round(rounds: dict) -> str:
    return max(rounds, key=lambda r: int(r.split("_")[1]))


def _shares(data: dict) -> list[str]:
    return sorted(data, key=float)


def _difference(d: dict, digits: int) -> str:
    """A difference ± its minimum detectable difference (bold when beyond it); one draw: the value alone."""
    mdd = d.get("min_detectable_difference")
    text = f"{d['difference']:+.{digits}f}" + ("" if mdd is None else f" ± {mdd:.{digits}f}")
    return f"**{text}**" if mdd and abs(d["difference"]) > mdd else text


def _draws(d: dict) -> str:
    draws = sorted(d["per_draw"], key=int)
    return f"draw {draws[0]}" if len(draws) == 1 else f"{len(draws)} draws"


def strategies_served(s: dict) -> str:
    """The served model after the last round, per hard share and strategy: mean ± sd over the draws (one draw: its
    value), with the number of draws."""
    shares = _shares(s["summary"])
    header = ["strategy"] + [f"{share}: {title}" for share in shares for _, title, _ in METRICS] + [
        f"{share}: draws" for share in shares]
    rows = []
    for engine, name in ENGINES.items():
        cells, draws = [], []
        for share in shares:
            rounds = s["summary"][share].get(engine)
            last = rounds[_last_round(rounds)] if rounds else {}
            cells += [cell(last.get(key), digits) for key, _, digits in METRICS]
            draws.append(str(last[METRICS[0][0]]["runs"]) if last else "–")
        rows.append([name] + cells + draws)
    last = _last_round(next(iter(s["summary"][shares[0]].values())))
    return table(header, rows) + (f"\nAfter round {last.split('_')[1]}, on the test split. The sd is each "
                                  "strategy's spread over the draws.\n")


def strategies_against_random(s: dict) -> str:
    """Each strategy's served model less random's after the last round, paired by draw, ± the minimum detectable
    difference (2 sd of the mean difference)."""
    rows = []
    for share in _shares(s["against_random"]):
        for engine, name in ENGINES.items():
            rounds = s["against_random"][share].get(engine)
            if not rounds or engine == "random":
                continue
            last = rounds[_last_round(rounds)]
            rows.append([share, name, _draws(last[METRICS[0][0]])]
                        + [_difference(last[key], digits) for key, _, digits in METRICS])
    return (table(["hard share", "strategy − random", "paired over"] + [t for _, t, _ in METRICS], rows, "rllrrr")
            + "\nBold: beyond its minimum detectable difference. One draw: no noise estimate. With two or three "
              "draws the sd has one or two degrees of freedom, so the minimum detectable difference is a rough "
              "one.\n")


def strategies_rounds(s: dict) -> str:
    """The default (errors, cost split) less random in every round, at each hard share."""
    rows = []
    for share in _shares(s["against_random"]):
        rounds = s["against_random"][share]["errors-cost"]
        for name in sorted(rounds, key=lambda r: int(r.split("_")[1]))[1:]:
            d = rounds[name]
            rows.append([share, name.split("_")[1], _draws(d[METRICS[0][0]])]
                        + [_difference(d[key], digits) for key, _, digits in METRICS])
    ratios = []
    for share in _shares(s["summary"]):
        mine, rand = (s["summary"][share][e] for e in ("errors-cost", "random"))
        a, b = (x[_last_round(x)]["tail_fp_per_image"]["mean"] for x in (mine, rand))
        ratios.append(f"hard share {share}: {a:.2f} against {b:.2f}, {a / b:.3f} of random's")
    return (table(["hard share", "round", "paired over"] + [f"default − random: {t}" for _, t, _ in METRICS], rows,
                  "rrlrrr")
            + "\nBold: beyond its minimum detectable difference. The default's tail false positives per image after "
              "the last round, mean over the draws: " + "; ".join(ratios) + ".\n")


def strategies_ceiling(s: dict) -> str:
    """The seed model's error ceiling on the test tail per hard share and draw: what fixing every error would gain
    (`mining.model_errors.ErrorCost`), false positives and misses priced apart."""
    rows, summary = [], []
    for share in _shares(s["seed_error_ceiling"]):
        c = s["seed_error_ceiling"][share]
        for draw, d in sorted(c["per_draw"].items(), key=lambda kv: int(kv[0])):
            cost = d["tail_error_cost"]
            rows.append([f"{share}, {draw}", f"{d['seed_tail_bbox_map']:.3f}", f"+{d['tail']:.3f}",
                         f"{cost[FP_TYPES]:.3f} / {cost['miss']:.3f}",
                         f"{1 - d['seed_tail_bbox_map'] - d['tail']:.3f}"])
        summary.append(f"hard share {share}: ceiling {c['tail_mean']:.3f} on average, {c['tail_max']:.3f} at most, "
                       f"against a tail target of {c['tail_target']:g} "
                       f"({'below it on every draw' if c['ceiling_below_target'] else 'not below it on every draw'})")
    return (table(["hard share, draw", "seed tail bbox mAP", "every tail error fixed",
                   "of which false positives / misses", "left to a perfect tail, held by no error type"], rows)
            + "\n" + "; ".join(summary) + ".\n")


def strategies_parts(parts: dict) -> str:
    """Each part: when it ran, which engines, and in which rounds the gate promoted each engine's candidate; beside
    it, the seed model's tail bbox mAP in the part (round 0) and in the ceiling run."""
    rows = []
    for name, part in sorted(parts.items()):
        if not name.startswith("share-"):
            continue
        ceiling = parts.get(f"ceiling-{name}", {})
        promoted = "; ".join(f"{e}: " + (", ".join(str(r["round"]) for r in c if r["promoted"]) or "none")
                             for e, c in part["curves"].items())
        seed_tail = next(iter(part["curves"].values()))[0]["tail_bbox_map"]
        ceiling_tail = ceiling.get("seed_bbox_map", {}).get("tail")
        dates = ", ".join([part["date"]] + [a["date"] for a in part.get("added", []) if a["date"] != part["date"]])
        rows.append([f"{part['hard_share']:g}", part["draw"], dates, f"{part['minutes']:g}" + "".join(
            f" + {a['minutes']:g}" for a in part.get("added", [])), promoted, f"{seed_tail:.3f}",
            "–" if ceiling_tail is None else f"{ceiling_tail:.3f} ({ceiling['date']})"])
    return table(["hard share", "draw", "ran", "minutes", "rounds promoted, per engine", "seed tail mAP in the part",
                  "in the ceiling run"], rows, "rrlrlrr")


def strategies_default(s: dict) -> str:
    """One sentence: the default against random after the last round, at each hard share."""
    parts = []
    for share in _shares(s["against_random"]):
        rounds = s["against_random"][share]["errors-cost"]
        last = rounds[_last_round(rounds)]
        said = []
        for key, title, digits in (METRICS[2], METRICS[0]):
            d = last[key]
            mdd = d["min_detectable_difference"]
            beyond = mdd is not None and abs(d["difference"]) > mdd
            noise = "no noise estimate" if mdd is None else f"{'beyond' if beyond else 'within'} noise"
            said.append(f"{title} {_difference(d, digits).strip('*')} ({noise})")
        parts.append(f"at hard share {share} ({_draws(last[METRICS[0][0]])}): " + ", ".join(said))
    return ("After the last round of the strategies benchmark, the default (`errors`, split by cost) less random: "
            + "; ".join(parts) + ".\n")


BLOCKS = {"strategies-default": ("strategies.json", strategies_default),
          "strategies-served": ("strategies.json", strategies_served),
          "strategies-against-random": ("strategies.json", strategies_against_random),
          "strategies-rounds": ("strategies.json", strategies_rounds),
          "strategies-ceiling": ("strategies.json", strategies_ceiling),
          "strategies-parts": ("strategies", strategies_parts)}
