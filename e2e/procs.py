"""Start the project's binaries as real processes and find where they listen."""

import os
import pathlib
import queue
import re
import shutil
import subprocess
import threading
import time

import requests

REPO = pathlib.Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (?:https?://)?(\S+:\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
START_TIMEOUT = 60.0


def bin_dir():
    """Where cargo put the binaries: AIBRIDGE_BIN_DIR, else $CARGO_TARGET_DIR/debug, else target/debug."""
    if os.environ.get("AIBRIDGE_BIN_DIR"):
        return pathlib.Path(os.environ["AIBRIDGE_BIN_DIR"])
    target = os.environ.get("CARGO_TARGET_DIR") or REPO / "target"
    return pathlib.Path(target) / "debug"


def binary(name):
    path = bin_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `cargo build --workspace --bins` first")
    return path


def tool(relative):
    """A client installed by scripts/setup-test-deps.sh, e.g. `.tools/node/node_modules/.bin/claude`."""
    path = REPO / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run scripts/setup-test-deps.sh first")
    return path


class Service:
    """A child process that announced `listening on http://ADDR` (or whatever `announce` matches,
    its group 1 being ADDR); keeps its output in a log file."""

    def __init__(self, name, argv, log_dir, env=None, announce=LISTENING):
        self.name = name
        self._announce = announce
        self.log_path = pathlib.Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "w")
        self._lines = queue.Queue()
        self.proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            # Files a service leaves behind (spool, default databases) stay in its temp dir.
            cwd=log_dir,
            text=True,
            errors="replace",
        )
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()
        self.addr = self._wait_for_address()
        self.url = f"http://{self.addr}"

    def _pump(self, stream):
        for line in stream:
            self._log.write(line)
            self._log.flush()
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_address(self):
        deadline = time.monotonic() + START_TIMEOUT
        closed = 0
        while closed < 2:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                closed += 1
                continue
            found = self._announce.search(ANSI.sub("", line))
            if found:
                return found.group(1)
        self.stop()
        raise RuntimeError(f"{self.name} did not announce `listening on`; see {self.log_path}:\n{self.output()}")

    def output(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self):
        """SIGTERM, then wait: a graceful stop lets the bridge drain its recording queue."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_ready(url, timeout=START_TIMEOUT):
    """Polls GET url until it answers 200."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == 200:
                return
            last = f"status {response.status_code}: {response.text[:200]}"
        except requests.RequestException as err:
            last = str(err)
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready: {last}")


def run(argv, env, cwd, timeout=180):
    """Runs a client to completion; returns the CompletedProcess (text)."""
    return subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def base_env(home):
    """A minimal environment for a client: our PATH, an isolated HOME, nothing from the caller's shell."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    node = shutil.which("node")
    if node:
        env["PATH"] = f"{pathlib.Path(node).parent}:{env['PATH']}"
    return env
