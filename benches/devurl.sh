#!/usr/bin/env bash
# Dev URL proxy throughput and latency, in one run: `wrk` (HTTP/1.1, keep-alive) and
# `h2load` (HTTP/2) against the same small static response served by nginx as the
# workspace's web server — straight to it, through an nginx reverse proxy terminating TLS
# (one hop), and through perigee (TLS at the edge → agent link → agent → the port).
# Needs wrk, h2load (nghttp2-client) and nginx (nginx-light) from Debian, and openssl.
#
#   benches/devurl.sh [SECS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-50}"
for t in wrk h2load nginx openssl; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "needs $t (apt install wrk nghttp2-client nginx-light openssl)" >&2; exit 2; }
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
cargo build --release -p perigee >/dev/null
bin="$PWD/target/release/perigee"
work="$(mktemp -d /tmp/perigee-devurl-bench.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The server's local agents (started by it, found by their working directory).
  for p in $(pgrep -f "perigee agent" || true); do
    case "$(readlink "/proc/$p/cwd" 2>/dev/null)" in "$work"*) kill "$p" 2>/dev/null || true ;; esac
  done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The workspace's web server: nginx with a small static response.
origin=$(free_port)
mkdir -p "$work/origin" "$work/proxy"
cat > "$work/origin/nginx.conf" <<EOF
worker_processes 1; pid $work/origin/nginx.pid; error_log $work/origin/error.log;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$origin; keepalive_requests 100000;
    location / { default_type text/plain; return 200 "hello from the workspace\n"; } } }
EOF
"$NGINX" -p "$work/origin" -c "$work/origin/nginx.conf" -g 'daemon off;' &
pids+=($!)

# The peer: nginx as a TLS-terminating reverse proxy with kept-alive upstream connections.
proxy=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/proxy/key.pem" -out "$work/proxy/cert.pem" 2>/dev/null
cat > "$work/proxy/nginx.conf" <<EOF
worker_processes 1; pid $work/proxy/nginx.pid; error_log $work/proxy/error.log;
events { worker_connections 4096; }
http { access_log off;
  upstream ws { server 127.0.0.1:$origin; keepalive 64; }
  server { listen 127.0.0.1:$proxy ssl http2; keepalive_requests 100000;
    ssl_certificate $work/proxy/cert.pem; ssl_certificate_key $work/proxy/key.pem;
    ssl_protocols TLSv1.3;
    location / { proxy_pass http://ws; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; } } }
EOF
"$NGINX" -p "$work/proxy" -c "$work/proxy/nginx.conf" -g 'daemon off;' &
pids+=($!)

# perigee: a server with dev URLs, a workspace, the origin's port shared publicly.
edge=$(free_port)
PERIGEE_LOG=warn "$bin" server --tls-self-signed --address "127.0.0.1:$edge" --turn-address 127.0.0.1:0 \
  --data-dir "$work/perigee/data" --devurl-host '*.dev.test' > "$work/perigee.out" 2> "$work/perigee.log" &
pids+=($!)
for _ in $(seq 1 200); do grep -q "perigee server ready" "$work/perigee.out" 2>/dev/null && break; sleep 0.05; done
export PERIGEE_URL="https://127.0.0.1:$edge" PERIGEE_CA_CERT="$work/perigee/data/tls/ca.pem"
export PERIGEE_TOKEN="$(cat "$work/perigee/data/admin-token")" PERIGEE_CONFIG_DIR="$work/cli"
"$bin" create bench >/dev/null 2>&1
for _ in $(seq 1 400); do "$bin" ls -o json | grep -q '"agent_pid":[0-9]' && break; sleep 0.05; done
"$bin" urls create bench "$origin" --access public >/dev/null
host="$origin--bench--admin.dev.test"
curl -sk --resolve "$host:$edge:127.0.0.1" "https://$host:$edge/" | grep -q "hello from the workspace" \
  || { echo "the dev URL does not answer" >&2; exit 1; }

run_wrk() { # label url [host header]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Host: $3" "$2")
  else
    out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$2")
  fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$1|$rps|$p50|$p99"
}
run_h2() { # label url [authority]
  local out
  if [ -n "${3:-}" ]; then
    out=$(h2load -D "$secs" -c "$conns" -m 10 -t 2 --header=":authority: $3" "$2" 2>&1)
  else
    out=$(h2load -D "$secs" -c "$conns" -m 10 -t 2 "$2" 2>&1)
  fi
  local rps
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  echo "$1|$rps"
}

direct=$(run_wrk direct "http://127.0.0.1:$origin/")
nginx=$(run_wrk nginx "https://127.0.0.1:$proxy/")
perigee=$(run_wrk perigee "https://127.0.0.1:$edge/" "$host")
h2_nginx=$(run_h2 nginx "https://127.0.0.1:$proxy/")
h2_perigee=$(run_h2 perigee "https://127.0.0.1:$edge/" "$host:$edge")

rps() { cut -d'|' -f2 <<<"$1"; }
col() { cut -d'|' -f"$2" <<<"$1"; }
ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }
echo "## Dev URLs: ${secs} s per run, $conns connections, 2 threads ($(date -u +%Y-%m-%d), $(nproc) cores, loopback)"
echo
echo "| path | wrk req/s | × direct | p50 | p99 |"
echo "|---|---|---|---|---|"
for r in "$direct" "$nginx" "$perigee"; do
  echo "| $(col "$r" 1) | $(rps "$r") | $(ratio "$(rps "$r")" "$(rps "$direct")") | $(col "$r" 3) | $(col "$r" 4) |"
done
echo
echo "| path | h2load req/s (HTTP/2, 10 streams per connection) |"
echo "|---|---|"
echo "| nginx | $(rps "$h2_nginx") |"
echo "| perigee | $(rps "$h2_perigee") |"
