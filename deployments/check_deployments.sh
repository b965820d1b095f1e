#!/usr/bin/env bash
# A scripted check of the deployments: a Prefect server on 127.0.0.1, a process work pool and worker,
# `prefect deploy` of deployments/prefect.yaml (both deployments), and a manual run of mine_hard_cases with
# parameters, watched until it finishes. Everything it starts is stopped on exit; its Prefect home is temporary.
#
#   deployments/check_deployments.sh GT_JSON [extra `prefect deployment run` arguments, e.g. -p mining='{"budget": 50}']
#
# GT_JSON is the labelled set (COCO) the flows mine with. The worker inherits this shell's environment, so set
# DATAENGINE_HOME (and DATAENGINE_MONGODB_URI / DATAENGINE_DB for an external MongoDB) to a data home that has a
# registered model whose pool was detected, e.g. after `dataengine demo`:
#
#   deployments/check_deployments.sh ~/.local/share/dataengine/demo/full/synthetic/annotations/val.json \
#       -p mining='{"budget": 20, "k": 10, "types": ["fp_background"]}'
#
# PREFECT_CHECK_PORT picks the server's port (default 4299).
set -euo pipefail
cd "$(dirname "$0")/.."
GT_JSON=$(realpath "${1:?usage: $0 GT_JSON [prefect deployment run arguments]}")
shift
RUN_ARGS=("$@")
[ ${#RUN_ARGS[@]} -gt 0 ] || RUN_ARGS=(-p 'mining={"budget": 10, "k": 5}')
PORT=${PREFECT_CHECK_PORT:-4299}
BIN=$(pwd)/.venv/bin
export PATH="$BIN:$PATH"
export PREFECT_HOME=$(mktemp -d)
export PREFECT_API_URL="http://127.0.0.1:${PORT}/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED=false
# Read by the deployments' templated parameters and pull step (deployments/prefect.yaml).
export DATAENGINE_REPO=$(pwd) DATAENGINE_LABELLED_GT="$GT_JSON"
export DATAENGINE_INCOMING=${DATAENGINE_INCOMING:-$(dirname "$(dirname "$GT_JSON")")/images}
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$PREFECT_HOME"
}
trap cleanup EXIT

echo "== prefect server on 127.0.0.1:$PORT"
prefect server start --host 127.0.0.1 --port "$PORT" >"$PREFECT_HOME/server.log" 2>&1 &
pids+=($!)
healthy() { python -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$PREFECT_API_URL/health" 2>/dev/null; }
for _ in $(seq 120); do healthy && break; sleep 1; done
healthy || { echo "server did not start"; tail -20 "$PREFECT_HOME/server.log"; exit 1; }

echo "== process work pool and prefect deploy"
prefect work-pool create dataengine --type process >/dev/null
prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml
prefect deployment ls
prefect deployment inspect nightly/nightly | grep -A3 -i "cron" || { echo "nightly has no cron schedule"; exit 1; }

echo "== worker, and a manual run of mine_hard_cases: ${RUN_ARGS[*]}"
prefect worker start --pool dataengine >"$PREFECT_HOME/worker.log" 2>&1 &
pids+=($!)
set +e
prefect deployment run mine_hard_cases/mine-hard-cases "${RUN_ARGS[@]}" --watch --watch-timeout 900
rc=$?
set -e
if [ $rc -ne 0 ]; then
    echo "the manual run did not complete (exit $rc); worker log:"
    tail -40 "$PREFECT_HOME/worker.log"
    exit 1
fi
echo "OK: both deployments registered, and a manual mine_hard_cases run with parameters completed"
