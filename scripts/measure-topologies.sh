#!/usr/bin/env bash
# The same web-UI Compare on one machine, twice: through docker-compose.yml (servers on
# SERVER_CPUSET, Locust on LOADGEN_CPUSET) and through docker-stack.yml on a single-node
# swarm (nothing pinned). Prints each run's rows (RPS, p99, bottleneck) and leaves no lab,
# stack or swarm behind. For the README's "More load than one machine"; run it on a quiet
# machine:
#
#   SERVERLAB_TAG=latest bash scripts/measure-topologies.sh [SERVERS] [USERS] [SECONDS]
#
# SERVERS is a comma-separated list (default gunicorn-gthread,uwsgi-http11,granian,waitress).
# Refuses to start when the engine is already in a swarm or port 8089 is taken.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export SERVERLAB_TAG="${SERVERLAB_TAG:-latest}"
SERVERS="${1:-gunicorn-gthread,uwsgi-http11,granian,waitress}"
USERS="${2:-32}"
SECONDS_PER_SERVER="${3:-10}"
STACK=serverlab-measure
UI=http://127.0.0.1:8089/serverlab/compare
PY=${PYTHON:-python3}
ROWS='
import json, sys
s = json.load(sys.stdin)
print("state", s["state"] + ":", s["message"])
for r in s["rows"]:
    g = lambda key: r.get(key) or 0
    print("  %-18s %9.1f RPS  p99 %7.1f ms  server %3.0f%%  Locust %3.0f%%  %s" % (
        r["server"], g("rps"), g("p99_us") / 1000, 100 * g("server_utilization"),
        100 * g("generator_utilization"), r.get("bottleneck")))
'

[[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" == inactive ]] || { echo "error: this engine is in a swarm already; leave it first" >&2; exit 2; }
! (exec 3<>/dev/tcp/127.0.0.1/8089) 2>/dev/null || { echo "error: 127.0.0.1:8089 is taken (a lab is up?); stop it first" >&2; exit 2; }

body=$("$PY" -c 'import json,sys; print(json.dumps({"servers": sys.argv[1].split(","), "workload": "hello", "users": int(sys.argv[2]), "seconds": float(sys.argv[3]), "warmup_s": 2}))' "$SERVERS" "$USERS" "$SECONDS_PER_SERVER")

compare() {  # $1: label. Start the Compare once a worker is connected, wait for it, print its rows.
  local label=$1 deadline=$((SECONDS + 180))
  until curl -sf -H 'Content-Type: application/json' -d "$body" "$UI/start" >/dev/null; do
    (( SECONDS < deadline )) || { echo "error: $label: the Compare did not start within 180 s" >&2; return 1; }
    sleep 3
  done
  until curl -sf "$UI/status" | "$PY" -c 'import json,sys; sys.exit(json.load(sys.stdin)["state"] == "running")'; do sleep 3; done
  echo "== $label"
  curl -sf "$UI/status" | "$PY" -c "$ROWS"
}

down_compose() { docker compose -p "$STACK" down --remove-orphans -t 5 >/dev/null 2>&1 || true; }
down_stack() {
  docker rm -f "$STACK-ui" >/dev/null 2>&1 || true
  if [[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" == active ]]; then
    docker stack rm "$STACK" >/dev/null || true
    for _ in $(seq 60); do
      [[ -z "$(docker ps -aq --filter label=com.docker.stack.namespace=$STACK)$(docker network ls -q --filter label=com.docker.stack.namespace=$STACK)" ]] && break
      sleep 1
    done
    docker swarm leave --force >/dev/null
  fi
  docker volume rm "${STACK}_reports" >/dev/null 2>&1 || true
  docker network rm docker_gwbridge >/dev/null 2>&1 || true
}
trap 'down_compose; down_stack' EXIT

docker compose build locust-master >/dev/null

echo "== $(date -u +%T) compose: servers on ${SERVER_CPUSET:-0}, Locust on ${LOADGEN_CPUSET:-1}"
log=$(mktemp)
docker compose -p "$STACK" up -d --wait --wait-timeout 300 >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
compare "compose (one host, pinned)"
down_compose

echo "== $(date -u +%T) swarm: one node, both roles, nothing pinned"
docker swarm init --listen-addr 127.0.0.1:2377 --advertise-addr 127.0.0.1 >/dev/null
docker node update --label-add serverlab.role.server=true --label-add serverlab.role.loadgen=true \
  "$(docker info --format '{{.Swarm.NodeID}}')" >/dev/null
LOCUST_WORKERS=1 docker stack deploy --resolve-image never -c docker-stack.yml "$STACK" >/dev/null 2>&1
docker run -d --rm --init --name "$STACK-ui" --network "${STACK}_lab" -p 127.0.0.1:8089:8089 --read-only \
  --cap-drop ALL --security-opt no-new-privileges "serverlab:$SERVERLAB_TAG" \
  python -m serverlab.forward --to locust-master:8089 >/dev/null
want=$(ls servers/*.toml | wc -l) deadline=$((SECONDS + 300))
until (( $(docker ps -q --filter "label=com.docker.stack.namespace=$STACK" --filter health=healthy | wc -l) >= want )); do
  (( SECONDS < deadline )) || { echo "error: the stack's $want servers were not healthy within 300 s" >&2; exit 1; }
  sleep 2
done
compare "swarm (one node, unpinned)"
echo "== $(date -u +%T) done"
