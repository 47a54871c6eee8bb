#!/bin/sh
# System calls of the bridge for N streams of scenario 2 (Messages, 20 text deltas), one at a
# time, counted by `strace -c -f` (docs/performance.md, round 4):
#
#   bench/strace_streams.sh [BRIDGE] [N]
#
# BRIDGE defaults to target/release/aibridge, N to 500; the mock and oha come from
# target/release and bench/.tools (bench/run.sh builds and installs them). Ports 9921-9922.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BRIDGE="$(realpath "${1:-$ROOT/target/release/aibridge}")"
N="${2:-500}"
MOCK="$ROOT/target/release/aibridge-mock-upstream"
OHA="$ROOT/bench/.tools/bin/oha"
dir="$(mktemp -d)"
cd "$dir"
"$MOCK" --listen 127.0.0.1:9921 > mock.log 2>&1 &
mock=$!
trap 'kill $mock ${bridge:-} 2>/dev/null || true; rm -rf "$dir"' EXIT
sleep 0.3
ANTHROPIC_BASE_URL=http://127.0.0.1:9921 ANTHROPIC_API_KEY=k AIBRIDGE_LISTEN=127.0.0.1:9922 \
  AIBRIDGE_DATABASE_URL="sqlite://$dir/bench.db?mode=rwc" "$BRIDGE" serve > bridge.log 2>&1 &
bridge=$!
sleep 1
body='{"model":"claude-x","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
url=http://127.0.0.1:9922/anthropic/v1/messages
load() {
  "$OHA" -n "$1" -c 1 --no-tui -m POST -H 'content-type: application/json' -d "$body" "$url" > /dev/null
}
load 50
strace -f -c -p "$bridge" -o strace.txt &
tracer=$!
sleep 1
load "$N"
sleep 0.5
kill -INT "$tracer"
wait "$tracer" || true
echo "$N streams through $BRIDGE:"
grep -E ' (writev|write|recvfrom|futex|epoll_wait)$' strace.txt
