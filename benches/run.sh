#!/usr/bin/env bash
# Data-path benchmarks: direct TCP vs perigee vs haproxy and rathole, in one run each,
# unpinned (throughput, latency, memory) and pinned to one core (latency); as root, also
# what isolating local workspaces costs (target/release/isolation).
#
#   benches/run.sh                 # builds release binaries, writes benches/last-run.md
#   RATHOLE=/path/to/rathole benches/run.sh
#   target/release/mesh --perigee target/release/perigee   # only the satellite figures
#
# Peers: haproxy from Debian (`apt install haproxy`), rathole from crates.io
# (`cargo install rathole --root /tmp/rh`, needs libssl-dev for its TLS transport).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p perigee -p perigee-bench
RATHOLE="${RATHOLE:-$(command -v rathole || echo /tmp/rh/bin/rathole)}"
args=(--perigee target/release/perigee)
[ -x "$RATHOLE" ] && args+=(--rathole "$RATHOLE") || echo "rathole not found: skipping it" >&2
ulimit -n 20000 || true
out=benches/last-run.md
{
  echo "## $(date -u +%Y-%m-%d) on $(nproc) cores"
  target/release/datapath "${args[@]}" --label unpinned "$@"
  taskset -c 0 target/release/datapath "${args[@]}" --label "pinned to core 0" --latency-only "$@"
  echo
  echo "## Satellite: mesh hop and idle tunnels"
  target/release/mesh --perigee target/release/perigee --label unpinned
  taskset -c 0 target/release/mesh --perigee target/release/perigee --label "pinned to core 0" --latency-only
  if [ "$(id -u)" = 0 ]; then
    echo
    echo "## Isolated local workspaces: start time and the port-forward path, off vs on"
    target/release/isolation --perigee target/release/perigee
  fi
} | tee "$out"
