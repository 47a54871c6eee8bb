"""Fixtures: the mock upstream and the bridge as real processes, and where a client should point."""

import dataclasses
import os
import re
import subprocess
import uuid

import pytest

from audit import AuditDb, PgAuditDb
from procs import Service, binary, wait_ready

POSTGRES_URL = os.environ.get("AIBRIDGE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def mock_upstream(tmp_path_factory):
    logs = tmp_path_factory.mktemp("mock")
    service = Service("mock-upstream", [binary("aibridge-mock-upstream"), "--listen", "127.0.0.1:0"], logs)
    yield service
    service.stop()


@dataclasses.dataclass
class Bridge:
    service: Service
    url: str
    audit: AuditDb


def bridge_config(mock_url, database_url):
    return f"""
listen = "127.0.0.1:0"
database_url = "{database_url}"
log = "info"

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "{mock_url}"

[[providers]]
name = "openai"
kind = "openai"
base_url = "{mock_url}/v1"
"""


def start_bridge(mock_url, work, database_url, audit, extra=""):
    config = work / "aibridge.toml"
    config.write_text(bridge_config(mock_url, database_url) + f'\n[recording]\nspool_dir = "{work}"\n' + extra)
    service = Service("aibridge", [binary("aibridge"), "serve", "--config", config], work)
    try:
        wait_ready(f"{service.url}/readyz")
    except RuntimeError:
        service.stop()
        raise
    return Bridge(service=service, url=service.url, audit=audit)


@pytest.fixture(scope="session")
def bridge(mock_upstream, tmp_path_factory):
    """`aibridge serve` with a fresh SQLite audit database, both providers on the mock."""
    work = tmp_path_factory.mktemp("bridge")
    db_path = work / "audit.db"
    bridge = start_bridge(mock_upstream.url, work, f"sqlite://{db_path}?mode=rwc", AuditDb(db_path))
    yield bridge
    bridge.service.stop()


def psql(url, sql):
    subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def bridge_pg(mock_upstream, tmp_path_factory):
    """`aibridge serve` recording into a fresh PostgreSQL database, dropped afterwards."""
    work = tmp_path_factory.mktemp("bridge-pg")
    name = f"aibridge_e2e_{uuid.uuid4().hex[:12]}"
    psql(POSTGRES_URL, f"CREATE DATABASE {name}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        bridge = start_bridge(mock_upstream.url, work, url, PgAuditDb(url))
        yield bridge
        bridge.service.stop()
    finally:
        psql(POSTGRES_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def audited(request):
    """A bridge whose audit database the test reads: SQLite, and PostgreSQL."""
    return request.getfixturevalue("bridge" if request.param == "sqlite" else "bridge_pg")


@dataclasses.dataclass
class Target:
    """Where a client sends its requests: straight to the mock, or through the bridge."""

    kind: str
    anthropic: str  # ANTHROPIC_BASE_URL / anthropic SDK base_url
    openai: str  # OpenAI SDK base_url / Codex provider base_url (ends in /v1)


@pytest.fixture(
    params=[pytest.param("mock", marks=pytest.mark.mock), pytest.param("bridge", marks=pytest.mark.bridge)]
)
def target(request):
    if request.param == "mock":
        mock = request.getfixturevalue("mock_upstream")
        return Target("mock", anthropic=mock.url, openai=f"{mock.url}/v1")
    bridge = request.getfixturevalue("bridge")
    return Target("bridge", anthropic=f"{bridge.url}/anthropic", openai=f"{bridge.url}/openai/v1")


@pytest.fixture
def via_bridge(audited):
    """The audited bridge as a target, for tests that also read its audit database."""
    return Target("bridge", anthropic=f"{audited.url}/anthropic", openai=f"{audited.url}/openai/v1")


MCP_CONFIG = """
[mcp]
max_loop_iterations = 5

[[mcp.servers]]
name = "everything"
command = "{everything}"
args = ["stdio"]
allow = ["^echo$", "^get-sum$"]

[[mcp.servers]]
name = "time"
command = "{time}"
args = []

[[mcp.servers]]
name = "everyhttp"
url = "{everything_http}"
allow = ["^echo$"]
"""

# server-everything in streamableHttp mode says `… listening on port PORT`.
EVERYTHING_HTTP_PORT = re.compile(r"listening on port (\d+)")


@pytest.fixture(scope="session")
def bridge_mcp(mock_upstream, tmp_path_factory):
    """A bridge injecting tools of real MCP servers: server-everything over stdio and over
    streamable HTTP (`everyhttp_url` on the bridge), mcp-server-time over stdio; SQLite audit."""
    import socket

    from procs import tool

    work = tmp_path_factory.mktemp("bridge-mcp")
    everything = tool(".tools/node/node_modules/.bin/mcp-server-everything")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = Service(
        "everything-http",
        [everything, "streamableHttp"],
        work,
        env={**os.environ, "PORT": str(port)},
        announce=EVERYTHING_HTTP_PORT,
    )
    try:
        everything_http = f"http://127.0.0.1:{http.addr}/mcp"
        db_path = work / "audit.db"
        extra = MCP_CONFIG.format(
            everything=everything,
            time=tool(".venv/bin/mcp-server-time"),
            everything_http=everything_http,
        )
        bridge = start_bridge(mock_upstream.url, work, f"sqlite://{db_path}?mode=rwc", AuditDb(db_path), extra)
        bridge.everyhttp_url = everything_http
        yield bridge
        bridge.service.stop()
    finally:
        http.stop()


# The project's own test MCP server prints its URL (`http://ADDR/mcp`) when it serves.
TEST_MCP_URL = re.compile(r"http://(\S+:\d+)/mcp")

LOOP_CONFIG = """
[mcp]
max_loop_iterations = {max_loop_iterations}

[[mcp.servers]]
name = "test"
url = "{url}"
deny = ["^pid$"]
call_timeout = "500ms"
"""


@dataclasses.dataclass
class LoopBridge:
    bridge: Bridge
    mcp_url: str
    max_loop_iterations: int


@pytest.fixture(scope="session")
def bridge_loop(mock_upstream, tmp_path_factory):
    """A bridge injecting the tools of `aibridge-test-mcp` over streamable HTTP (pid denied,
    calls time out after 500 ms, at most 2 tool rounds), SQLite audit."""
    work = tmp_path_factory.mktemp("bridge-loop")
    mcp = Service("test-mcp", [binary("aibridge-test-mcp"), "--http", "127.0.0.1:0"], work, announce=TEST_MCP_URL)
    try:
        mcp_url = f"{mcp.url}/mcp"
        db_path = work / "audit.db"
        extra = LOOP_CONFIG.format(max_loop_iterations=2, url=mcp_url)
        bridge = start_bridge(mock_upstream.url, work, f"sqlite://{db_path}?mode=rwc", AuditDb(db_path), extra)
        yield LoopBridge(bridge=bridge, mcp_url=mcp_url, max_loop_iterations=2)
        bridge.service.stop()
    finally:
        mcp.stop()
