"""Fixtures: the mock upstream and the bridge as real processes, and where a client should point."""

import dataclasses

import pytest

from audit import AuditDb
from procs import Service, binary, wait_ready


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


def bridge_config(mock_url, db_path):
    return f"""
listen = "127.0.0.1:0"
database_url = "sqlite://{db_path}?mode=rwc"
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


@pytest.fixture(scope="session")
def bridge(mock_upstream, tmp_path_factory):
    """`aibridge serve` with a fresh SQLite audit database, both providers on the mock."""
    work = tmp_path_factory.mktemp("bridge")
    db_path = work / "audit.db"
    config = work / "aibridge.toml"
    config.write_text(bridge_config(mock_upstream.url, db_path))
    service = Service("aibridge", [binary("aibridge"), "serve", "--config", config], work)
    try:
        wait_ready(f"{service.url}/readyz")
    except RuntimeError:
        service.stop()
        raise
    yield Bridge(service=service, url=service.url, audit=AuditDb(db_path))
    service.stop()


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
def via_bridge(bridge):
    """The bridge target, for tests that also read the audit database."""
    return Target("bridge", anthropic=f"{bridge.url}/anthropic", openai=f"{bridge.url}/openai/v1")
