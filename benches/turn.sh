#!/usr/bin/env bash
# TURN relay: perigee's TURN server against coturn's turnserver under the same
# turnutils_uclient load (Debian's coturn package), one after the other, on loopback.
# Reports messages relayed per second (uclient's totals over wall time) and the server's CPU
# time (utime+stime from /proc) for the run.
#
#   benches/turn.sh [CLIENTS] [MESSAGES] [LENGTH] [INTERVAL_MS]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${1:-40}"; MESSAGES="${2:-400}"; LENGTH="${3:-200}"; INTERVAL="${4:-5}"
SECRET=bench-secret
cargo build --release -p turn --example serve >&2
command -v turnserver >/dev/null && command -v turnutils_uclient >/dev/null || {
  echo "needs Debian's coturn package (turnserver, turnutils_uclient)" >&2; exit 1; }
free_port() { python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run_load() { # PORT -> prints "msgs seconds"
  local start end out
  start=$(date +%s.%N)
  out=$(turnutils_uclient -y -c -m "$CLIENTS" -n "$MESSAGES" -l "$LENGTH" -z "$INTERVAL" -W "$SECRET" -u bench -p "$1" 127.0.0.1 2>&1 || true)
  end=$(date +%s.%N)
  local recv
  recv=$(echo "$out" | grep "start_mclient: tot_send_msgs=" | tail -1 | sed 's/.*tot_recv_msgs=\([0-9]*\).*/\1/')
  local lost
  lost=$(echo "$out" | grep "Total lost packets" | tail -1 | sed 's/.*Total lost packets \([0-9]*\).*/\1/')
  echo "${recv:-0} $(echo "$end - $start" | bc) ${lost:-?}"
}
measure() { # NAME PID PORT
  local t0 t1 r
  t0=$(cpu_ticks "$2")
  r=$(run_load "$3")
  t1=$(cpu_ticks "$2")
  set -- "$1" "$2" "$3" $r
  local hz; hz=$(getconf CLK_TCK)
  printf '| %s | %s | %.0f | %.2f | %s |\n' "$1" "$4" "$(echo "$4 / $5" | bc -l)" "$(echo "($t1 - $t0) / $hz" | bc -l)" "$6"
}
echo "## TURN relay, $(date -u +%Y-%m-%d), $(nproc) cores: uclient -y -c -m $CLIENTS -n $MESSAGES -l $LENGTH -z $INTERVAL"
echo
echo "| server | messages received | messages/s | server CPU s | lost |"
echo "|---|---|---|---|---|"
P1=$(free_port)
target/release/examples/serve "$P1" "$SECRET" 127.0.0.0/8 >/dev/null 2>&1 &
PERIGEE=$!
P2=$(free_port)
turnserver -n --no-cli --listening-ip=127.0.0.1 --listening-port="$P2" --relay-ip=127.0.0.1 \
  --use-auth-secret --static-auth-secret="$SECRET" --realm=perigee --no-tls --no-dtls \
  --allow-loopback-peers --no-tcp-relay --log-file=/dev/null --pidfile=/tmp/perigee-bench-coturn.pid >/dev/null 2>&1 &
COTURN=$!
trap 'kill $PERIGEE $COTURN 2>/dev/null || true' EXIT
ready() { # wait for a STUN Binding answer (at most 5 s)
  local i
  for i in $(seq 50); do
    if timeout 1 turnutils_stunclient -p "$1" 127.0.0.1 >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "no STUN answer on port $1" >&2; exit 1
}
ready "$P1"; ready "$P2"
measure perigee "$PERIGEE" "$P1"
measure coturn "$COTURN" "$P2"
