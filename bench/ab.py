#!/usr/bin/env python3
"""A/B comparison of bridge builds or settings on one scenario, interleaved round by round.

    python3 bench/ab.py --oha bench/.tools/bin/oha --mock target/release/aibridge-mock-upstream \\
        --variant on=target/release/aibridge --variant off=target/release/aibridge:off \\
        [--scenario 1] [--rounds 6] [--duration 3] [--direct]

Each variant is NAME=BINARY, with `:off` for recording off or `:log` for recording into the
log sink (`database_url = "log"`, dropped by the `warn` filter: the record pipeline with no
database). Every variant gets its own
bridge (SQLite recording into its own file unless off) in front of one fast mock. Rounds
rotate the order of the variants, so load from other jobs on the machine spreads evenly.
After each run the script waits until the bridge's record queue and spool are empty before
it reads the CPU time, so the SQLite writer's work counts towards the run that caused it.
Prints one line per variant: req/s, p50/p99 and bridge CPU µs per request (user+system
from /proc/<pid>/stat), mean over rounds, the median of the rounds' p99 (steadier when single
rounds vary), plus the load average before and after. Scenarios 8 and 9 send at a fixed 3,000
and 10,000 req/s (open loop, latency from each request's due time), as in bench.py.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

import bench

SCENARIOS = {
    # id: (upstream path, bridge path, payload, concurrency[, fixed rate in req/s])
    "1": ("/v1/chat/completions", "/openai/v1/chat/completions", bench.chat_1kb, 16),
    "2": ("/v1/messages", "/anthropic/v1/messages", bench.messages_stream, 16),
    "4": ("/v1/messages", "/anthropic/v1/messages", bench.claude_code_100kb, 16),
    "7a": ("/v1/chat/completions", "/openai/v1/chat/completions", bench.chat_1kb, 1),
    "7b": ("/v1/messages", "/anthropic/v1/messages", bench.messages_stream, 1),
    # Open loop at a fixed rate, latency from each request's due time (as in bench.py).
    "8": ("/v1/chat/completions", "/openai/v1/chat/completions", bench.chat_1kb, 32,
          bench.RATE_8),
    "9": ("/v1/chat/completions", "/openai/v1/chat/completions", bench.chat_1kb, 32,
          bench.RATE_9),
}


def start_bridge(binary, recording, mock_url, tmp, name, log_sink=False):
    db = os.path.join(tmp, f"{name}.db")
    database_url = "log" if log_sink else f"sqlite://{db}?mode=rwc"
    spool = os.path.join(tmp, name)
    os.makedirs(spool, exist_ok=True)
    config = os.path.join(tmp, f"{name}.toml")
    with open(config, "w") as f:
        f.write(
            f'listen = "127.0.0.1:0"\n'
            f'database_url = "{database_url}"\n'
            f'log = "warn"\n\n'
            # Only when off: builds from before the setting existed refuse unknown keys.
            f'[recording]\n{"" if recording else "enabled = false"}\n'
            f'spool_dir = "{spool}"\n\n'
            f'[[providers]]\nname = "anthropic"\nkind = "anthropic"\nbase_url = "{mock_url}"\n\n'
            f'[[providers]]\nname = "openai"\nkind = "openai"\nbase_url = "{mock_url}/v1"\n'
        )
    env = dict(os.environ, AIBRIDGE_LOG="warn")
    return bench.start([binary, "serve", "--config", config], env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oha", required=True)
    ap.add_argument("--mock", required=True)
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--scenario", default="1", choices=sorted(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--direct", action="store_true", help="also run direct to the mock")
    args = ap.parse_args()

    up_path, br_path, payload, conc, *rate = SCENARIOS[args.scenario]
    qps = rate[0] if rate else None
    tmp = tempfile.mkdtemp(prefix="aibridge-ab-")
    procs = []
    try:
        mock, mock_url, body = bench.start_mock(args.mock, tmp, payload)
        procs.append(mock)
        variants = []
        for spec in args.variant:
            name, _, rest = spec.partition("=")
            binary, _, mode = rest.partition(":")
            proc, url = start_bridge(binary, mode != "off", mock_url, tmp, name,
                                     log_sink=mode == "log")
            procs.append(proc)
            variants.append({"name": name, "proc": proc, "url": url, "runs": [], "cpu": 0,
                             "sqlite": 0, "ok": 0})
        if args.direct:
            variants.append({"name": "direct", "proc": None, "url": mock_url, "runs": [],
                             "cpu": 0, "sqlite": 0, "ok": 0})
        time.sleep(1.0)
        load_before = os.getloadavg()
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                path = up_path if v["proc"] is None else br_path
                before = bench.cpu_ticks(v["proc"].pid) if v["proc"] else 0
                sqlite_before = bench.thread_ticks(v["proc"].pid) if v["proc"] else 0
                res = bench.oha(args, v["url"] + path, body, conc, args.duration, qps=qps,
                                corrected=qps is not None)
                if v["proc"]:
                    bench.wait_drained(v["url"])
                    v["cpu"] += bench.cpu_ticks(v["proc"].pid) - before
                    v["sqlite"] += bench.thread_ticks(v["proc"].pid) - sqlite_before
                v["ok"] += res["ok"]
                v["runs"].append(res)
        load_after = os.getloadavg()
    finally:
        bench.stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)

    rate_note = f" at a fixed {qps} req/s" if qps else ""
    print(f"scenario {args.scenario}{rate_note}, concurrency {conc}, {args.rounds} rounds × "
          f"{args.duration:g} s per variant; load average before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in load_after)}")
    print("| variant | req/s | p50 ms | p99 ms | p99 median of rounds | bridge CPU µs/req "
          "| of which SQLite thread | req/s per round |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for v in variants:
        runs = v["runs"]
        rps = bench.mean([x["rps"] for x in runs])
        p50 = bench.mean([x["p50"] for x in runs])
        p99 = bench.mean([x["p99"] for x in runs])
        cpu = v["cpu"] / bench.TICKS * 1e6 / max(v["ok"], 1) if v["proc"] else 0
        sqlite = v["sqlite"] / bench.TICKS * 1e6 / max(v["ok"], 1) if v["proc"] else 0
        per_round = " ".join(f"{x['rps']:.0f}" for x in runs)
        errors = sum(x["errors"] for x in runs)
        note = f" ({errors} errors)" if errors else ""
        p99_median = statistics.median([x["p99"] for x in runs]) if runs else 0.0
        print(f"| {v['name']}{note} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {p99_median:.3f} | "
              f"{cpu:.0f} | {sqlite:.1f} | {per_round} |")


if __name__ == "__main__":
    main()
