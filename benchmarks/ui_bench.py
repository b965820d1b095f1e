"""How fast the review app answers on the demo's data: the query page with 20 neighbours (target: <= 300 ms
server-side), its crops cold and cached, and the other pages; plus the README's screenshot of the query page.

    dataengine demo --quick                      # fills the data home (or point --home at one a demo filled)
    python benchmarks/ui_bench.py [--home DIR] [--repeats 30] [--out benchmarks/results/ui.json]
                                  [--screenshot benchmarks/results/ui-query.png]

The demo mines with k = 10 in its quick form; the bench mines the same labelled set once more with k = 20 (the
product's default) and no random arm, so the page it times shows 20 neighbours. Pages are requested in-process
(FastAPI's TestClient: the app's own work, without a network hop); the screenshot is taken by headless chromium
from a real uvicorn server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return elapsed


def stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
            "max_ms": round(ordered[-1], 2), "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=None, help="the data home a demo filled (default: DATAENGINE_HOME)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/ui.json")
    parser.add_argument("--screenshot", default="benchmarks/results/ui-query.png")
    args = parser.parse_args()
    if args.home:
        os.environ["DATAENGINE_HOME"] = args.home

    from fastapi.testclient import TestClient

    from dataengine.config import store_config
    from dataengine.ui import views
    from dataengine.ui.app import AppSettings, build_app
    from fdb import connect
    from fdb import models as model_store
    from fdb import runs as run_store
    from mining.config import MiningConfig
    from tasks.index import update_pool_index
    from tasks.mine import mine, read_labelled_set

    store = store_config()
    fdb = connect(store)
    version = model_store.production_version(fdb)
    last = next(r for r in run_store.list_runs(fdb, kind="mine_hard_cases") if r["model_version"] == version)
    params = last["parameters"]
    started = time.perf_counter()  # the pool index's upkeep counted in, as when mining grew it itself
    mining = MiningConfig(k=20, budget=params["budget"], types=params["types"], random_arm=False)
    update_pool_index.fn(store, version, mining)
    mined = mine.fn(store, version, read_labelled_set.fn(store, params["gt_json"], params["gt_images"]), mining)
    mine_s = time.perf_counter() - started
    queries = [q for q in views.selection(fdb, mined.selection_id)["queries"] if q["level"] == "detection"]
    query = max(queries, key=lambda q: q["found"])
    page_url = f"/queries/{query['error_id']}?selection={mined['selection_id']}"
    record = views.query(fdb, str(query["error_id"]), mined.selection_id)
    crop_urls = [f"/media/errors/{query['error_id']}.jpg?size=240"] + [
        f"/media/detections/{n['detection_id']}.jpg" for n in record["neighbours"]]

    cache = Path(tempfile.mkdtemp(prefix="ui-bench-cache-"))
    settings = AppSettings(cache_dir=str(cache), export_target=str(cache / "exports"))
    client = TestClient(build_app(fdb, settings), base_url="http://127.0.0.1:8765")
    first_page = timed(client, page_url)  # the first request also warms the app's imports and connections
    page = [timed(client, page_url) for _ in range(args.repeats)]
    api = [timed(client, f"/api/queries/{query['error_id']}?selection={mined['selection_id']}")
           for _ in range(args.repeats)]
    cold_crops = [timed(client, u) for u in crop_urls]  # rendered: read the image, cut, draw, encode, write
    warm_crops = [timed(client, u) for u in crop_urls for _ in range(3)]  # read from the cache
    cold_total, warm_total = [], []
    for _ in range(5):
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        for u in [page_url, *crop_urls]:
            timed(client, u)
        cold_total.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        for u in [page_url, *crop_urls]:
            timed(client, u)
        warm_total.append((time.perf_counter() - start) * 1000)
    others = {}
    batch = views.batches(fdb)["batches"][0]["batch_id"]
    for name, url in [("errors", "/errors"), ("selection", f"/selections/{mined['selection_id']}"),
                      ("models", "/models"), ("batch", f"/batches/{batch}"), ("overview", "/")]:
        timed(client, url)
        others[name] = stats([timed(client, url) for _ in range(max(5, args.repeats // 3))])

    shot = screenshot(fdb, settings, page_url, args.screenshot)
    result = {
        "what": "the review app on the quick demo's data, in-process (FastAPI TestClient), 2-core machine",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "home": str(store.home), "model": version, "selection": mined.selection_id,
        "mined_with_k20_s": round(mine_s, 1),
        "query_page": {"url": page_url, "neighbours": len(record["neighbours"]),
                       "first_request_ms": round(first_page, 1),
                       "html": stats(page), "api_json": stats(api), "target_ms": 300,
                       "met": statistics.median(page) <= 300},
        "crops": {"count": len(crop_urls), "cold_each": stats(cold_crops), "cached_each": stats(warm_crops)},
        "page_and_all_crops": {"cold_cache": stats(cold_total), "warm_cache": stats(warm_total)},
        "other_pages": others, "screenshot": shot,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(cache, ignore_errors=True)


def screenshot(fdb, settings, page_url: str, path: str) -> str | None:
    """The query page as a person sees it, from a real server and browser."""
    import socket

    import uvicorn
    from playwright.sync_api import sync_playwright

    from dataengine.ui.app import build_app

    chromium = shutil.which("chromium")
    if not chromium:
        print("no chromium: no screenshot", file=sys.stderr)
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(fdb, settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}{page_url}")
            page.wait_for_load_state("networkidle")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=path, full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    return path


if __name__ == "__main__":
    main()
