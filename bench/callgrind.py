#!/usr/bin/env python3
"""Instructions per request of the bridge, counted by callgrind: repeatable despite load.

    python3 bench/callgrind.py --oha bench/.tools/bin/oha \\
        --mock target/release/aibridge-mock-upstream --bridge target/release/aibridge \\
        [--recording on|off] [--scenario 1] [--requests 3000] [--out FILE]

Starts the fast mock, then the bridge under `valgrind --tool=callgrind` (SQLite recording
on unless --recording off), warms it up, zeroes the counters, sends --requests requests with
oha, waits until the record queue and spool are empty, and dumps. Prints instructions per
request for the whole process (every thread: runtime workers, the SQLite writer), the same
without SQLite's one-time statement preparation (which may or may not fall in the window),
and writes the profile to --out for `callgrind_annotate`.
"""

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time

import ab
import bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oha", required=True)
    ap.add_argument("--mock", required=True)
    ap.add_argument("--bridge", required=True)
    ap.add_argument("--recording", default="on", choices=["on", "off"])
    ap.add_argument("--scenario", default="1", choices=sorted(ab.SCENARIOS))
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--out", default="callgrind.out")
    args = ap.parse_args()

    _, br_path, payload, conc = ab.SCENARIOS[args.scenario]
    tmp = tempfile.mkdtemp(prefix="aibridge-cg-")
    procs = []
    try:
        mock, mock_url, body = bench.start_mock(args.mock, tmp, payload)
        procs.append(mock)
        out = os.path.abspath(args.out)
        wrapper = os.path.join(tmp, "bridge.sh")
        with open(wrapper, "w") as f:
            f.write(
                "#!/bin/sh\nexec valgrind --tool=callgrind --quiet "
                f"--callgrind-out-file={out} {args.bridge} \"$@\"\n"
            )
        os.chmod(wrapper, 0o755)
        bridge, url = ab.start_bridge(wrapper, args.recording == "on", mock_url, tmp, "cg")
        procs.append(bridge)
        bench.oha(args, url + br_path, body, conc, count=300)
        bench.wait_drained(url)
        time.sleep(1.0)
        subprocess.run(["callgrind_control", "-z", str(bridge.pid)], check=True,
                       capture_output=True)
        res = bench.oha(args, url + br_path, body, conc, count=args.requests)
        bench.wait_drained(url, timeout=300)
        time.sleep(1.0)
        subprocess.run(["callgrind_control", "-d", str(bridge.pid)], check=True,
                       capture_output=True)
    finally:
        bench.stop_all(procs, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)

    # The dump after zeroing is the file with the highest part number.
    dumps = [f for f in os.listdir(os.path.dirname(out))
             if f.startswith(os.path.basename(out) + ".")]
    latest = max(dumps, key=lambda f: int(re.sub(r"\D", "", f.rsplit(".", 1)[1]) or 0))
    path = os.path.join(os.path.dirname(out), latest)
    total = 0
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
                break
    ok = max(res["ok"], 1)
    print(f"scenario {args.scenario}, recording {args.recording}: {res['ok']} ok, "
          f"{res['errors']} errors; {total:,} instructions = "
          f"{total / ok:,.0f} per request ({path})")
    # SQLite prepares each insert statement (one per table and power-of-two row count) the
    # first time a batch of that size comes, which may fall inside the measured window or
    # not: 5-18 million instructions that differ from run to run. Without them, runs compare.
    prepare = inclusive(path, "sqlite3_prepare_v3 [")
    if prepare:
        print(f"  of which {prepare:,} preparing SQLite statements (one-time); without them "
              f"{(total - prepare) / ok:,.0f} per request")


def inclusive(path, symbol):
    """The inclusive instruction count of the first function whose name contains `symbol`."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", path],
        capture_output=True, text=True, check=False,
    ).stdout
    for line in out.splitlines():
        if symbol in line:
            try:
                return int(line.split()[0].replace(",", ""))
            except ValueError:
                return 0
    return 0


if __name__ == "__main__":
    main()
