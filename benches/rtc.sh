#!/usr/bin/env bash
# WebRTC data-channel throughput between two perigee peers: on loopback, then inside a
# network namespace whose loopback drops 1 % of UDP packets at random (nftables), in one
# run, with direct TCP measured alongside each. Needs root (ip netns, nft).
#
#   benches/rtc.sh [SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3}"
cargo build --release -p perigee-bench --bin rtc
ns="pgrtcloss$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
echo "## loopback, no loss"
target/release/rtc --secs "$secs"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" nft -f - <<'NFT'
table inet perigee_bench {
  chain out {
    type filter hook output priority 0;
    meta l4proto udp numgen random mod 100 < 1 drop
  }
}
NFT
echo "## loopback in a namespace, 1 % of UDP packets dropped"
ip netns exec "$ns" target/release/rtc --secs "$secs"
