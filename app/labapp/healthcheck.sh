#!/bin/bash
# The container healthcheck: exit 0 when GET /healthz on the local server answers 200.
#
#   bash /srv/app/labapp/healthcheck.sh [--pause-once-healthy SECONDS] [PORT]
#
# PORT defaults to $SERVERLAB_PORT, else 8000. Docker runs a healthcheck INSIDE the
# container, so its CPU is charged to the server's cgroup and budget. This one starts no
# interpreter: bash's /dev/tcp opens the connection and `read` takes the status line. The
# Python check it replaced started an interpreter that imported the app package, ~250 ms
# of CPU per check: every 2 s that was 12.7% of a 1-CPU budget (issue 15). What is left is
# Docker's own exec (runc starting a process in the container, ~20 ms of the container's
# CPU here), so checks must also be rare:
#
# --pause-once-healthy S: after a check has succeeded, the next one first sleeps S seconds
# (a sleeping bash uses no CPU). With a short `interval` this gives fast checks until the
# server first answers (so `docker compose up --wait` returns within seconds) and then one
# check every S seconds: what Compose's `start_interval` does on Docker Engine 25+, which
# Debian's engine (20.10) does not have. A failed check clears the state (fast checks again).
pause=0
if [[ "${1:-}" == "--pause-once-healthy" ]]; then
    pause="${2:-}"
    shift 2 || true
    [[ "${pause}" =~ ^[0-9]+$ ]] || { echo "unhealthy: --pause-once-healthy needs whole seconds, not '${pause}'" >&2; exit 1; }
fi
port="${1:-${SERVERLAB_PORT:-8000}}"
state="/tmp/.serverlab-healthy-${port}"
if (( pause > 0 )) && [[ -e "${state}" ]]; then
    sleep "${pause}"
fi
fail() {
    rm -f "${state}"
    echo "unhealthy: $*" >&2
    exit 1
}
{ exec 3<>"/dev/tcp/127.0.0.1/${port}"; } 2>/dev/null || fail "nothing accepts connections on 127.0.0.1:${port}"
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || fail "127.0.0.1:${port} sent no status line within 2 s"
case "${status}" in
    "HTTP/1."?" 200 "*)
        if (( pause > 0 )); then : > "${state}"; fi
        exit 0 ;;
esac
fail "/healthz on 127.0.0.1:${port} answered ${status%$'\r'}"
