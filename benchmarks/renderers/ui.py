"""The review app's speed (`benchmarks/ui_bench.py` -> `results/ui.json`, and its screenshot `results/ui-query.png`)."""

from __future__ import annotations

from renderers import table


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def ui_summary(ui: dict) -> str:
    """The query page, its JSON twin and its crops, in sentences."""
    query, crops, whole = ui["query_page"], ui["crops"], ui["page_and_all_crops"]
    verdict = "met" if query["met"] else "**not met**"
    return (f"The query page with {query['neighbours']} neighbours renders in **{_ms(query['html']['median_ms'])}** "
            f"median server-side (p95 {_ms(query['html']['p95_ms'])}; target ≤ {_ms(query['target_ms'])}: "
            f"{verdict}), its JSON in {_ms(query['api_json']['median_ms'])}. Its {crops['count']} crops take "
            f"{_ms(crops['cold_each']['median_ms'])} each to render the first time and "
            f"{_ms(crops['cached_each']['median_ms'])} once cached on disk. The page and all its crops, one after "
            f"another: {_ms(whole['cold_cache']['median_ms'])} with an empty cache, "
            f"{_ms(whole['warm_cache']['median_ms'])} with a warm one "
            f"({ui['machine']['cpus']}-core machine, Python {ui['machine']['python']}).\n")


def ui_timings(ui: dict) -> str:
    """Every timed request: median, p95 and max over n requests."""
    query, crops, whole = ui["query_page"], ui["crops"], ui["page_and_all_crops"]
    rows = [(f"query page ({query['neighbours']} neighbours), HTML", query["html"]),
            ("query page, JSON (`/api/queries/...`)", query["api_json"]),
            ("one crop, first time", crops["cold_each"]),
            ("one crop, cached on disk", crops["cached_each"]),
            (f"query page and its {crops['count']} crops, empty cache", whole["cold_cache"]),
            (f"query page and its {crops['count']} crops, warm cache", whole["warm_cache"])]
    rows += [(f"{name} page", stat) for name, stat in ui["other_pages"].items()]
    body = table(["request", "median ms", "p95 ms", "max ms", "n"],
                 [[name, f"{s['median_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['max_ms']:.1f}", s["n"]]
                  for name, s in rows])
    return body + (f"\nThe first request of the query page (templates loaded, nothing cached) took "
                   f"{query['first_request_ms']:.1f} ms. Model `{ui['model']}`, selection `{ui['selection']}`, "
                   f"mined again with k = {query['neighbours']} in {ui['mined_with_k20_s']:.1f} s.\n")


def ui_caption(ui: dict) -> str:
    """The caption of the query page's screenshot."""
    k = ui["query_page"]["neighbours"]
    return (f"*A query from the quick demo (mined again with k = {k}): the seed model's false positive (red frame), "
            f"searched with its own box-head FC vector, and its {k} nearest eligible pool detections, nearest first, "
            "with their distances; a blue frame marks a neighbour whose image the selection took.*\n")


BLOCKS = {"ui-summary": ("ui.json", ui_summary), "ui-timings": ("ui.json", ui_timings),
          "ui-caption": ("ui.json", ui_caption)}
