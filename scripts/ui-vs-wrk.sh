#!/usr/bin/env bash
# The web UI's figures beside an independent reference, in one session (issue 15): the lab as a
# user starts it (`docker compose up`), one Compare of SERVERS through the UI's own endpoint
# (hello, 32 users, SECS s each, 2 s warm-up), then wrk from the loadgen container on the lab's
# network (-t1 -c32, the lab's request headers, same budget: 1 CPU on SERVER_CPUSET), first with
# the lab up, then each server alone. Prints the Compare's rows (RPS, p50/p99 in µs, bottleneck
# class, server CPU per request) and wrk's RPS and p50/p99 for each.
#
#   bash scripts/ui-vs-wrk.sh                       # gunicorn-gthread uwsgi-http11 waitress granian
#   SERVERS="gunicorn-sync granian" SECS=10 bash scripts/ui-vs-wrk.sh
#
# Needs the lab image (make offline; docker compose build locust-master) and port 8089 free.
# Run it alone on a quiet machine (vmstat 1: us+sy near 0): it is a benchmark. Where the UI says
# server-bound its RPS should be near wrk's; where it says generator-bound it is a floor.
set -euo pipefail
cd "$(dirname "$0")/.."
export SERVERLAB_TAG=${SERVERLAB_TAG:-latest}
SERVERS=${SERVERS:-"gunicorn-gthread uwsgi-http11 waitress granian"}
SECS=${SECS:-10}
REPORTS=$(mktemp -d /tmp/serverlab-ui-vs-wrk-XXXX); chmod 777 "$REPORTS"; export SERVERLAB_REPORTS=$REPORTS
trap 'docker compose down --remove-orphans -t 5 >/dev/null 2>&1 || true' EXIT
wrk1() {
    docker compose run --rm -T --no-deps loadgen wrk -t1 -c32 -d"${SECS}s" --latency \
        -H 'User-Agent: serverlab' -H 'Accept-Encoding: identity' "http://$1:8000/" 2>&1 |
        grep -E "Requests/sec|^ +50%|^ +99%" | tr -s ' ' | tr '\n' ' '; echo
}
echo "== $(date -u +%T) lab up"; docker compose up -d --wait >/dev/null 2>&1; sleep 5
URL="http://$(docker compose port locust-master 8089)"
python3 - "$URL" "$SECS" $SERVERS <<'PY'
import json, sys, time, urllib.request
url, secs, servers = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
def call(path, payload=None):
    req = urllib.request.Request(url + path, data=None if payload is None else json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json", "Origin": url})
    with urllib.request.urlopen(req, timeout=30) as answer:
        return json.loads(answer.read())
for _ in range(60):
    try:
        if call("/serverlab/state").get("workers", 0) >= 1:
            break
    except OSError:
        pass
    time.sleep(1)
started = call("/serverlab/compare/start", {"servers": servers, "workload": "hello", "users": 32,
                                           "seconds": secs, "warmup_s": 2})
if not started.get("success", True) and started.get("state") != "running":
    sys.exit(f"the Compare did not start: {started}")
while (status := call("/serverlab/compare/status"))["state"] == "running":
    time.sleep(2)
print("UI Compare:", status["state"], status.get("compare_id"))
for row in status["rows"]:
    print(f"  {row['server']:18} {row.get('rps') or 0:9.1f} RPS  p50 {row.get('p50_us') or 0:7.0f} µs  "
          f"p99 {row.get('p99_us') or 0:7.0f} µs  {row.get('bottleneck')}  CPU ms/req {row.get('cpu_ms_per_request')}")
PY
for s in $SERVERS; do printf '  wrk, lab up: %-18s ' "$s"; wrk1 "$s"; done
docker compose down --remove-orphans -t 5 >/dev/null 2>&1
for s in $SERVERS; do
    docker compose up -d --wait --no-deps "$s" >/dev/null 2>&1; sleep 3
    printf '  wrk, alone:  %-18s ' "$s"; wrk1 "$s"
    docker compose rm -fsv "$s" >/dev/null 2>&1
done
echo "== $(date -u +%T) the Compare's run folder: $REPORTS"
