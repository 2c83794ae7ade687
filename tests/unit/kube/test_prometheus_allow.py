"""spec.prometheus.url against the operator's allow-list: host names resolved first (a fake
resolver), link-local and cloud metadata never fetched, refusal a permanent BadQuery before
any request is made."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from llmfleet.api.conditions import Reason
from llmfleet.api.policy import FleetPolicy, PrometheusQueries, PrometheusSource
from llmfleet.cycle.demand import DemandFailure, read_demand
from llmfleet.cycle.ports import forecast_histories
from llmfleet.kube.prometheus import (
    BadQuery,
    DemandReader,
    PrometheusAllow,
    PrometheusUnreachable,
    resolve_host,
)
from support.tiny import tiny_scenario


class FakeResolver:
    """host -> addresses; records every lookup."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return self.table[host]


DNS = FakeResolver(
    {
        "127.0.0.1": ["127.0.0.1"],
        "prometheus.monitoring.svc": ["10.96.4.2"],
        "evil.example": ["169.254.169.254"],
        "sneaky.example": ["10.1.2.3", "169.254.169.254"],
        "mapped.example": ["::ffff:169.254.169.254"],
        "v6.example": ["fe80::1"],
        "aws6.example": ["fd00:ec2::254"],
        "mixed.example": ["10.1.2.3", "8.8.8.8"],
        "inside.example": ["10.1.2.3"],
        "169.254.169.254": ["169.254.169.254"],
    }
)


def _refused(allow: PrometheusAllow, url: str, resolver: Any = DNS) -> str:
    with pytest.raises(BadQuery) as e:
        allow.check(url, resolver)
    return str(e.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9090",  # the tests' Prometheus
        "http://prometheus.monitoring.svc:9090/",
        "https://inside.example",
    ],
)
def test_the_default_allows_any_ordinary_host(url: str) -> None:
    PrometheusAllow().check(url, DNS)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local"),
        ("http://evil.example:9090", "host evil.example is (or resolves to) 169.254.169.254"),
        ("http://sneaky.example", "resolves to) 169.254.169.254"),  # one bad address is enough
        ("http://mapped.example", "169.254.169.254"),  # IPv4-mapped IPv6
        ("http://v6.example", "fe80::1"),
        ("http://aws6.example", "fd00:ec2::254"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata service"),
        ("http://METADATA./", "host metadata is a cloud metadata service"),
    ],
)
def test_link_local_and_metadata_are_refused_by_default(url: str, said: str) -> None:
    msg = _refused(PrometheusAllow(), url)
    assert msg.startswith(f"spec.prometheus.url {url!r}: "), msg
    assert said in msg, msg
    assert "never link-local or cloud metadata (llmfleet operator --prometheus-allow" in msg


def test_metadata_names_are_refused_without_asking_dns() -> None:
    resolver = FakeResolver({})
    _refused(PrometheusAllow(), "http://metadata.google.internal", resolver)
    assert resolver.asked == []


@pytest.mark.parametrize("host", ["2852039166", "0xa9.0xfe.0xa9.0xfe", "169.254.169.254."])
def test_numeric_spellings_of_the_metadata_address_are_resolved_and_refused(host: str) -> None:
    """The real resolver (no DNS involved: getaddrinfo parses the numbers)."""
    assert "169.254.169.254" in _refused(PrometheusAllow(), f"http://{host}/", resolve_host)


def test_no_allow_list_reopens_the_metadata_service() -> None:
    allow = PrometheusAllow(("169.254.0.0/16", "*"))
    assert "link-local" in _refused(allow, "http://169.254.169.254")
    assert "cloud metadata service" in _refused(PrometheusAllow(("metadata*",)), "http://metadata/")


def test_an_allow_list_of_names_and_networks() -> None:
    allow = PrometheusAllow.parse(["*.monitoring.svc", "127.0.0.0/8,10.0.0.0/8"])
    assert allow.patterns == ("*.monitoring.svc", "127.0.0.0/8", "10.0.0.0/8")
    allow.check("http://prometheus.monitoring.svc:9090", DNS)
    allow.check("http://127.0.0.1:9090", DNS)
    allow.check("http://inside.example", DNS)  # 10.1.2.3
    msg = _refused(allow, "http://mixed.example")  # 8.8.8.8 is outside every network
    assert "host mixed.example (10.1.2.3, 8.8.8.8) is not allowed" in msg
    assert "allowed: *.monitoring.svc, 127.0.0.0/8, 10.0.0.0/8" in msg
    only_names = PrometheusAllow(("prometheus.monitoring.svc",))
    assert "is not allowed" in _refused(only_names, "http://127.0.0.1:9090")


@pytest.mark.parametrize(
    ("url", "said"),
    [("file:///etc/passwd", "expected http:// or https://"), ("gopher://x", "expected http")],
)
def test_only_http_urls(url: str, said: str) -> None:
    assert said in _refused(PrometheusAllow(), url)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254\\@inside.example/",  # urllib3 connects to 169.254.169.254
        "http://inside.example\\@169.254.169.254/",
        "http://inside.example /",
        "http://inside.example\t/",
    ],
)
def test_an_ambiguous_url_is_refused(url: str) -> None:
    """Where the URL parser of the check and the one of the HTTP client could disagree on
    the host, the URL is refused (a backslash is a path to one and userinfo to the other)."""
    msg = _refused(PrometheusAllow(), url)
    assert "ambiguous URL" in msg or "not a URL" in msg, msg


def test_userinfo_does_not_hide_the_host() -> None:
    assert "169.254.169.254" in _refused(
        PrometheusAllow(), "http://inside.example@169.254.169.254/"
    )


def test_a_host_that_does_not_resolve_is_unreachable_not_allowed() -> None:
    with pytest.raises(PrometheusUnreachable, match=r"host nowhere\.example does not resolve"):
        PrometheusAllow().check("http://nowhere.example", DNS)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "host:9090", "http://x", "a b"])
def test_bad_patterns_are_refused_at_start(bad: str) -> None:
    with pytest.raises(ValueError, match="--prometheus-allow"):
        PrometheusAllow.parse(bad)
    assert PrometheusAllow.parse(None).patterns == ("*",)
    assert PrometheusAllow.parse("").patterns == ("*",)


def _reader(
    url: str, resolver: Any = DNS, allow: PrometheusAllow | None = None
) -> tuple[DemandReader, list[str]]:
    reader = DemandReader(
        PrometheusSource(url=url, timeout_seconds=2), allow=allow, resolve=resolver
    )
    calls: list[str] = []

    def record(*a: Any, **k: Any) -> list[Any]:
        calls.append(str(a))
        return []

    reader._prom.custom_query_range = record  # type: ignore[method-assign]
    reader._prom.custom_query = record  # type: ignore[method-assign]
    return reader, calls


def test_the_reader_refuses_before_any_request() -> None:
    reader, calls = _reader("http://evil.example:9090")
    with pytest.raises(BadQuery, match=r"spec.prometheus.url 'http://evil.example:9090'"):
        reader.read(PrometheusQueries(), end=time.time(), history_seconds=3600, step_seconds=300)
    with pytest.raises(BadQuery):
        reader.read_usage(PrometheusQueries(), end=time.time(), step_seconds=300)
    assert calls == []
    reader.close()


def test_an_allowed_reader_checks_once_per_cycle_then_queries() -> None:
    resolver = FakeResolver({"prometheus.monitoring.svc": ["10.96.4.2"]})
    reader, calls = _reader("http://prometheus.monitoring.svc:9090", resolver)
    read = reader.read(PrometheusQueries(), end=time.time(), history_seconds=3600, step_seconds=300)
    assert read.empty and len(calls) == 4  # three rates and the data age
    reader.read_usage(PrometheusQueries(), end=time.time(), step_seconds=300)
    assert resolver.asked == ["prometheus.monitoring.svc"]
    reader.close()


def test_through_the_cycle_a_refused_url_is_a_permanent_bad_query() -> None:
    scenario = tiny_scenario()
    snapshot = scenario.snapshot()
    policy = next(p for p in snapshot.policies if isinstance(p, FleetPolicy))
    url = "http://169.254.169.254/latest/meta-data/iam/"
    source = policy.spec.prometheus.model_copy(update={"url": url})
    policy = policy.model_copy(
        update={"spec": policy.spec.model_copy(update={"prometheus": source})}
    )
    reader, calls = _reader(url)
    out = read_demand(policy, snapshot, reader, time.time(), forecast_histories)
    assert isinstance(out, DemandFailure)
    assert (out.reason, out.permanent) == (Reason.BAD_QUERY, True)
    assert "spec.prometheus.url" in out.message and "--prometheus-allow" in out.message
    assert calls == []


class _Redirect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        return None


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_never_followed(redirecting: str) -> None:
    """An allowed host answering with a redirect to the metadata service is a BadQuery."""
    reader = DemandReader(PrometheusSource(url=redirecting, timeout_seconds=2))
    try:
        with pytest.raises(BadQuery, match="with a redirect, which is not followed"):
            reader.read(
                PrometheusQueries(), end=time.time(), history_seconds=3600, step_seconds=300
            )
    finally:
        reader.close()
