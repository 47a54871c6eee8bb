#!/usr/bin/env bash
# Benchmarks the bridge against the mock upstream: builds release binaries, installs the
# load generator (oha) into bench/.tools if it is not there, then runs every scenario,
# direct to the mock and through the bridge, interleaved, and writes a Markdown table.
#
#   bench/run.sh [--debug] [--quick] [--out FILE] [--rounds N] [--duration SECS]
#
# --quick runs each scenario for one short round: it checks that the benchmark still
# works, its figures mean little. --debug (first argument) uses debug binaries instead of
# release ones: with --quick it is CI's smoke check, which reuses what the tests built.
# Results go to bench/results/latest.md unless --out is given. Environment:
# CARGO_TARGET_DIR (where the binaries are built), OHA (an oha binary to use instead of
# installing one).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
oha_version="1.16.0"

# Cargo's profile and the folder it builds into.
profile=release
dir=release
if [ "${1:-}" = "--debug" ]; then
    profile=dev
    dir=debug
    shift
fi
echo "building $dir binaries into $target/$dir" >&2
cargo build --profile "$profile" --quiet --workspace \
    --bin aibridge --bin aibridge-mock-upstream --example recorder_throughput

oha="${OHA:-$root/bench/.tools/bin/oha}"
if ! [ -x "$oha" ] || ! "$oha" --version 2>/dev/null | grep -q "$oha_version"; then
    echo "installing oha $oha_version into bench/.tools (once)" >&2
    cargo install --locked --quiet --version "$oha_version" --root "$root/bench/.tools" oha
    oha="$root/bench/.tools/bin/oha"
fi

exec python3 "$root/bench/bench.py" \
    --bin-dir "$target/$dir" --oha "$oha" "$@"
