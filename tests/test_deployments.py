"""deployments/check_deployments.sh end to end: a real Prefect server on loopback, a process work pool and worker,
`prefect deploy` of both deployments, and a manual mine_hard_cases run with parameters that the worker runs in
its own process against the test's mongod."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import _free_port

REPO = Path(__file__).resolve().parents[1]


def test_deploy_and_a_manual_run_with_parameters(engine, fdb):
    from detectors.checkpoint import load_checkpoint
    from jobs.detect import detect_images

    checkpoint = load_checkpoint(engine.parent / "m.pt")
    pool = sorted(str(p) for p in (engine / "images").glob("pool_*.png"))
    detect_images(fdb, checkpoint, pool, split="pool", progress=False)
    export_dir = engine.parent / "queue"
    env = {**os.environ, "PREFECT_CHECK_PORT": str(_free_port())}
    proc = subprocess.run(
        [str(REPO / "deployments" / "check_deployments.sh"), str(engine / "annotations" / "val.json"),
         "-p", 'mining={"budget": 4, "k": 3}', "-p", 'match={"score_threshold": 0.01}', "-p", f"export_to={export_dir}"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "mine_hard_cases/mine-hard-cases" in out and "nightly/nightly" in out
    assert "'cron': '0 2 * * *'" in out
    assert "Flow run finished successfully in 'Completed'" in out
    # The worker's run, with the parameters given on the command line, wrote its selection and its batch.
    run = fdb.runs.find_one({"kind": "mine_hard_cases"})
    assert run["parameters"]["budget"] == 4 and run["parameters"]["k"] == 3
    assert run["parameters"]["match"]["score_threshold"] == 0.01
    batch = fdb.exports.find_one({})
    assert batch["status"] == "done" and batch["target"].startswith(str(export_dir))
    assert (Path(batch["target"]) / "annotations.xml").is_file()
