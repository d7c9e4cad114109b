#!/usr/bin/env bash
# Does what a request carries change a server's CPU per request? For each variant named (default:
# the four whose Locust/wrk stayed below 0.95 at calibration-headroom), start it alone under the
# given budget, run wrk (32 connections, container to container over Docker's network, as
# `make report` does) three ways, and print RPS and the server cgroup's CPU ms per request:
#   host-only  wrk's own request: Host only (what the calibration sent before)
#   locust     Locust FastHttpUser's headers left alone (geventhttpclient's User-Agent, gzip/br)
#   lab        serverlab's REQUEST_HEADERS (what both generators send now)
# then the same lab request at 8 connections (fewer requests waiting per server wake-up).
#
#   SERVER_CPUS=0.5 bash scripts/wrk-headers.sh [VARIANT...]     # the calibration-headroom budget
#
# Needs the lab image (make offline / docker compose build). Uses the `serverlab-wrkhdr`
# compose project and removes its containers when done. The CPU figure is the server
# container's cgroup between just before and just after each wrk container, so anything else
# in that cgroup (the compose healthcheck, until it leaves the cgroup) counts too. Figures mean something only on a quiet
# machine (vmstat 1: us+sy near 0 before you start).
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(granian uwsgi-threads uwsgi-processes nginx-gunicorn)
SECONDS_EACH=${SECONDS_EACH:-10}
export SERVER_CPUS=${SERVER_CPUS:-0.5}
COMPOSE=(docker compose -p serverlab-wrkhdr)
LAB_UA="serverlab"; LAB_AE="identity"
LOCUST_UA="python/gevent-http-client-$(.venv/bin/python -c 'import geventhttpclient; print(geventhttpclient.__version__)' 2>/dev/null || echo 2.6.1)"
trap '"${COMPOSE[@]}" down --remove-orphans -t 5 >/dev/null 2>&1 || true' EXIT

cpu_seconds() {  # the container's cumulative CPU seconds (cgroup v1 or v2)
    local cid=$1 f
    for f in /sys/fs/cgroup/cpuacct/docker/$cid/cpuacct.usage; do
        [ -r "$f" ] && { awk '{printf "%.6f\n", $1/1e9}' "$f"; return; }
    done
    awk '/^usage_usec/ {printf "%.6f\n", $2/1e6}' "/sys/fs/cgroup/system.slice/docker-$cid.scope/cpu.stat"
}

measure() {  # variant cid label connections [wrk -H args...]
    local variant=$1 cid=$2 label=$3 conns=$4; shift 4
    local before after out rps requests
    before=$(cpu_seconds "$cid")
    out=$("${COMPOSE[@]}" run --rm -T --no-deps loadgen wrk -t1 -c"$conns" -d"${SECONDS_EACH}s" "$@" "http://$variant:8000/" 2>/dev/null)
    after=$(cpu_seconds "$cid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    awk -v v="$variant" -v l="$label" -v c="$conns" -v r="$rps" -v n="$requests" -v b="$before" -v a="$after" \
        'BEGIN {printf "%-18s %-10s c=%-3s %9.0f RPS  %.4f CPU ms/req (%.2f CPU s)\n", v, l, c, r, (a-b)*1000/n, a-b}'
}

printf "server_cpus=%s, %ss per run, wrk -t1 on LOADGEN_CPUSET=%s\n" "$SERVER_CPUS" "$SECONDS_EACH" "${LOADGEN_CPUSET:-1}"
for variant in "${VARIANTS[@]}"; do
    "${COMPOSE[@]}" up -d --no-deps --wait "$variant" >/dev/null 2>&1
    cid=$("${COMPOSE[@]}" ps -q "$variant")
    "${COMPOSE[@]}" run --rm -T --no-deps loadgen wrk -t1 -c32 -d3s "http://$variant:8000/" >/dev/null 2>&1  # warm-up
    measure "$variant" "$cid" host-only 32
    measure "$variant" "$cid" locust 32 -H "User-Agent: $LOCUST_UA" -H "Accept-Encoding: gzip, deflate, br"
    measure "$variant" "$cid" lab 32 -H "User-Agent: $LAB_UA" -H "Accept-Encoding: $LAB_AE"
    measure "$variant" "$cid" lab 8 -H "User-Agent: $LAB_UA" -H "Accept-Encoding: $LAB_AE"
    "${COMPOSE[@]}" rm -f -s -v "$variant" >/dev/null 2>&1
done
