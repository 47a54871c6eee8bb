#!/usr/bin/env python3
"""Concurrent streaming requests through the bridge, with its peak memory.

Starts the release binaries (`aibridge-mock-upstream --delay-ms D` and `aibridge serve`
with a SQLite audit database in a temporary directory), opens N streaming Anthropic
Messages requests at once, checks that every one ends with `message_stop`, waits until
every interception is recorded, and prints the bridge's peak RSS (VmHWM) from /proc.

    python3 bench/concurrent_streams.py --bin-dir target/release -n 1000 --delay-ms 50

Standard library only; Linux (reads /proc).
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def start(cmd, env=None, cwd=None):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, cwd=cwd, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://"):
        proc.kill()
        sys.exit(f"{cmd[0]} did not start: {line!r}")
    return proc, line.removeprefix("listening on http://")


def one_stream(addr, i, results, barrier):
    host, port = addr.rsplit(":", 1)
    body = json.dumps({
        "model": "claude-bench", "max_tokens": 64, "stream": True,
        "messages": [{"role": "user", "content": f"stream {i}"}],
    })
    try:
        barrier.wait()
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request("POST", "/anthropic/v1/messages", body,
                      {"content-type": "application/json", "anthropic-version": "2023-06-01"})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        ok = resp.status == 200 and data.rstrip().endswith(b'{"type":"message_stop"}')
        results[i] = "ok" if ok else f"status {resp.status}: {data[-200:]!r}"
    except Exception as e:  # noqa: BLE001 - every failure is reported, none hidden
        results[i] = f"error: {e}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--delay-ms", type=int, default=50)
    args = ap.parse_args()

    threading.stack_size(256 * 1024)
    mock, mock_addr = start([os.path.join(args.bin_dir, "aibridge-mock-upstream"),
                             "--listen", "127.0.0.1:0", "--delay-ms", str(args.delay_ms)])
    tmp = tempfile.mkdtemp(prefix="aibridge-bench-")
    config = os.path.join(tmp, "aibridge.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:0"\nlog = "warn"\n'
                f'database_url = "sqlite://{tmp}/audit.db?mode=rwc"\n'
                f'[recording]\nspool_dir = "{tmp}"\n'
                f'[[providers]]\nname = "anthropic"\nkind = "anthropic"\n'
                f'base_url = "http://{mock_addr}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "AIBRIDGE_"))}
    bridge, addr = start([os.path.join(args.bin_dir, "aibridge"), "serve", "--config", config],
                         env=env, cwd=tmp)
    idle_rss = rss_kib(bridge.pid, "VmRSS")

    results = [None] * args.n
    barrier = threading.Barrier(args.n)
    threads = [threading.Thread(target=one_stream, args=(addr, i, results, barrier))
               for i in range(args.n)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - began
    peak = rss_kib(bridge.pid, "VmHWM")

    bridge.terminate()
    code = bridge.wait(timeout=60)
    mock.terminate()
    mock.wait(timeout=10)
    failures = [r for r in results if r != "ok"]
    print(f"streams: {args.n}, completed: {args.n - len(failures)}, took {took:.1f}s, "
          f"mock delay {args.delay_ms} ms/event")
    print(f"bridge RSS idle: {idle_rss / 1024:.1f} MiB, peak (VmHWM): {peak / 1024:.1f} MiB, "
          f"exit code {code}")
    for r in failures[:5]:
        print("failure:", r)
    sys.exit(1 if failures or code != 0 else 0)


if __name__ == "__main__":
    main()
