"""Read demand history from Prometheus into :class:`DemandHistory` values, and replica state.

Demand comes from the layer that knows tenant, tier and origin: the gateway
(``spec.prometheus.queries.profile``: ``envoy-ai-gateway`` by default, ``llm-d-epp``, or
``vllm`` when only vLLM's series exist; :data:`llmfleet.api.policy.PROFILE_TEMPLATES`). Its
templates are range-queried over ``[end - historySeconds, end]`` at a resolution of ``step``
seconds, ``$window`` replaced by the step (e.g. ``3600s``), so

    1. value(t) = rate over (t - step, t]   (the average rate of the step ending at t),

and the sample at grid time ``t`` is history step ``i = (t - start) / step - 1`` with
``start = end - historySeconds`` aligned down to the step. Each result series must carry the
labels ``model_name``, ``region`` (the origin) and ``tier``; a series without ``tier`` is
``queries.defaultTier`` when that is set (profile ``vllm``: vLLM knows no tier). A
``model_name`` that is an LLMModel's served name (the gateway's ``gen_ai_request_model`` is
the request's ``model`` field) is read as that LLMModel (``served_names``). Series with the
same labels are summed. A flow with data at a step but missing one of its three rates gets 0
for that rate; a step with no data at all is NaN (the forecaster fills gaps).

Per-tenant usage (``tenantUsage``) is one instant query at the cycle's time, ``$window``
replaced by the step the same way; each result series must carry ``tenant``,
``model_name`` and ``region`` (:func:`usage_from_results`; series with the same labels are
summed). Profile ``vllm`` reads none (vLLM's series carry no tenant).

Replica state and data age read vLLM's own series per (model, serving region)
(``running``, ``waiting``, ``kvCacheUsage``, ``ttftP95``, ``completions``:
:meth:`DemandReader.read_replica_state`; ``newestSample``): the data age is
``now - min over serving regions of the newest sample`` (the region that lags most); when
that is empty (no sample within Prometheus's lookback) it falls back to the newest step with
data in the range result.

A result series that lacks a required label is a :class:`MissingLabel` (a
:class:`BadQuery`) naming the template, the label and the configuration that provides it.

Errors are values a caller can sort: :class:`PrometheusUnreachable` (connection refused,
timeout, 5xx: try again later) and :class:`BadQuery` (HTTP 400/422: the template is wrong,
retrying will not help).

Trust boundary: ``spec.prometheus.url`` is written by whoever may write a FleetPolicy, and
the operator fetches it from inside the cluster, so it must not become a way to reach what
only the operator's pod can (the cloud's instance metadata service and its credentials).
Before any request, :class:`PrometheusAllow` checks the URL's host, resolved to its IP
addresses by the reader's resolver: a URL it refuses is a :class:`BadQuery` naming
``spec.prometheus.url`` and the allow-list (permanent: no retry until the spec changes).
The default allows any host except the link-local networks (169.254.0.0/16, fe80::/10), the
other cloud metadata addresses and the metadata host names, which no allow-list reopens.
Redirects are not followed (an allowed host could otherwise send the reader anywhere). The
check is made once per reader (per planning cycle); a DNS answer that changes between the
check and the request (rebinding) is not caught here: deny egress to 169.254.169.254 with a
NetworkPolicy too where that matters.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url
from urllib3.util.retry import Retry

from llmfleet.api.policy import (
    REPLICA_LABEL_SOURCES,
    DemandSeriesTemplate,
    PrometheusQueries,
    PrometheusSource,
)
from llmfleet.cycle.ports import BadQuery, DemandRead, DemandSourceError, SourceUnreachable
from llmfleet.fairness.limits import Usage
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey, Series

LABELS = ("model_name", "region", "tier")
QUERY_FIELDS: Mapping[Series, DemandSeriesTemplate] = {
    "requests": "requests",
    "prompt_tokens": "prompt_tokens",
    "output_tokens": "generation_tokens",
}
"""Which template of :class:`PrometheusQueries` gives each rate of a flow."""
USAGE_LABELS = ("tenant", "model_name", "region")
REPLICA_LABELS = ("model_name", "region")
REPLICA_FIELDS: tuple[str, ...] = (
    "running", "waiting", "kv_cache_usage", "ttft_p95", "completions",
)  # fmt: skip
"""The replica-state templates of :class:`PrometheusQueries`, read by
:meth:`DemandReader.read_replica_state`."""


class MissingLabel(BadQuery):
    """A result series of ``template`` lacks ``label``; ``provider`` is the configuration
    that puts it there. A value: callers read the fields, never the message."""

    def __init__(self, template: str, label: str, provider: str, series: Mapping[str, str]):
        self.template = template
        self.label = label
        self.provider = provider
        self.series = dict(series)
        super().__init__(
            f"spec.prometheus.queries.{template}: result series {self.series} lacks label "
            f"{label} (provided by {provider})"
        )


@dataclass(frozen=True)
class ReplicaState:
    """vLLM's view of one model in one serving region now (NaN: no series)."""

    model: str
    region: str
    running: float = math.nan
    """Requests being served."""
    waiting: float = math.nan
    """Requests queued."""
    kv_cache_usage: float = math.nan
    """Mean KV-cache use of the replicas, 0..1."""
    ttft_p95: float = math.nan
    """p95 time to first token over the window, seconds."""
    completions: float = math.nan
    """Requests finished per second over the window."""


# The cycle's port errors, under the names this reader has always used.
PrometheusError = DemandSourceError
PrometheusUnreachable = SourceUnreachable


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> the IP addresses a connection to it may reach (``getaddrinfo``)."""

DENIED_NETWORKS: tuple[str, ...] = (
    "169.254.0.0/16",  # IPv4 link-local: AWS/GCP/Azure/OpenStack metadata at 169.254.169.254
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "64:ff9b::a9fe:0/112",  # 169.254.0.0/16 through NAT64
)
"""Never allowed, whatever the allow-list says."""
DENIED_HOSTS: tuple[str, ...] = (
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
)
"""Cloud metadata host names, never allowed (also when they do not resolve here)."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (numeric forms such as ``0xa9fea9fe`` included)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


def _address(text: str) -> IPAddress:
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return ip


_NAME_PATTERN = re.compile(r"[A-Za-z0-9*?_.\-]+")


@dataclass(frozen=True)
class PrometheusAllow:
    """Which Prometheus URLs the operator may fetch (``llmfleet operator --prometheus-allow``).

    ``patterns``: ``*`` (any host), host name patterns (shell-style, case-insensitive, e.g.
    ``prometheus.monitoring.svc`` or ``*.monitoring.svc.cluster.local``) and IP networks or
    addresses (``10.0.0.0/8``, ``127.0.0.1``). A URL is allowed when its scheme is http or
    https, its host is no metadata name (:data:`DENIED_HOSTS`), none of the addresses it
    resolves to is in :data:`DENIED_NETWORKS`, and either its host name matches a name
    pattern or every address it resolves to is in a listed network (``*`` matches all).
    """

    patterns: tuple[str, ...] = ("*",)

    def __post_init__(self) -> None:
        if not self.patterns:
            raise ValueError("--prometheus-allow: give at least one pattern (* allows any host)")
        for p in self.patterns:
            if self._network(p) is None and not _NAME_PATTERN.fullmatch(p):
                raise ValueError(
                    f"--prometheus-allow {p!r}: expected *, a host name pattern or an IP "
                    "network such as 10.0.0.0/8"
                )

    @classmethod
    def parse(cls, text: str | Iterable[str] | None) -> PrometheusAllow:
        """From ``a,b,c`` (or a list of such); None or empty is the default (``*``)."""
        items = [text] if isinstance(text, str) else list(text or [])
        patterns = tuple(p.strip() for item in items for p in item.split(",") if p.strip())
        return cls(patterns or ("*",))

    @staticmethod
    def _network(pattern: str) -> IPNetwork | None:
        try:
            return ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return None

    def describe(self) -> str:
        return (
            f"allowed: {', '.join(self.patterns)}, never link-local or cloud metadata "
            "(llmfleet operator --prometheus-allow, chart value operator.prometheusAllow)"
        )

    def check(self, url: str, resolve: Resolver = resolve_host) -> None:
        """Raise :class:`BadQuery` when ``url`` may not be fetched; :class:`SourceUnreachable`
        when its host does not resolve (nothing could be fetched from it either)."""
        where = f"spec.prometheus.url {url!r}"
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            # the host the HTTP client will connect to (urllib3's parser): the check is
            # about that one, so the two parsers must agree (``http://a\@b/`` is b to one
            # and a to the other)
            connect_host = (parse_url(url).host or "").strip("[]").lower()
        except (ValueError, LocationParseError) as err:
            raise BadQuery(f"{where}: not a URL ({err})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadQuery(f"{where}: expected http:// or https:// and a host")
        if any(c == "\\" or c.isspace() or not c.isprintable() for c in url) or (
            connect_host != parts.hostname.lower()
        ):
            raise BadQuery(f"{where}: an ambiguous URL (backslash, space or control character)")
        host = parts.hostname.lower().rstrip(".")
        if host in DENIED_HOSTS:
            raise BadQuery(f"{where}: host {host} is a cloud metadata service; {self.describe()}")
        try:
            addresses = [_address(a) for a in resolve(host, port)]
        except (OSError, UnicodeError) as err:
            raise SourceUnreachable(
                f"Prometheus {url}: host {host} does not resolve ({type(err).__name__}: {err})"
            ) from None
        except ValueError as err:
            raise SourceUnreachable(f"Prometheus {url}: host {host}: {err}") from None
        if not addresses:
            raise SourceUnreachable(f"Prometheus {url}: host {host} resolves to no address")
        denied = [ipaddress.ip_network(n) for n in DENIED_NETWORKS]
        for ip in addresses:
            if any(ip in n for n in denied if n.version == ip.version):
                raise BadQuery(
                    f"{where}: host {host} is (or resolves to) {ip}, a link-local or cloud "
                    f"metadata address; {self.describe()}"
                )
        networks = [n for n in map(self._network, self.patterns) if n is not None]
        names = [p.lower().rstrip(".") for p in self.patterns if self._network(p) is None]
        if any(fnmatch.fnmatchcase(host, p) for p in names):
            return
        if networks and all(
            any(ip in n for n in networks if n.version == ip.version) for ip in addresses
        ):
            return
        shown = ", ".join(str(a) for a in addresses)
        raise BadQuery(f"{where}: host {host} ({shown}) is not allowed; {self.describe()}")


def number(text: object) -> float:
    """A sample's time or value as a float; NaN when Prometheus (or whatever answered in its
    place) sent something that is not a number."""
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def render(template: str, step_seconds: int) -> str:
    """A query template with ``$window`` replaced by the step."""
    return template.replace("$window", f"{step_seconds}s")


def peak_query(template: str, peak_seconds: int, step_seconds: int) -> str:
    """The busiest ``peak_seconds`` of a demand template inside each step: the template at
    ``$window = peak_seconds``, its maximum over the step by a subquery at a resolution of
    a minute (or the window, if shorter)."""
    resolution = max(1, min(60, peak_seconds))
    inner = render(template, peak_seconds)
    return f"max_over_time(({inner})[{step_seconds}s:{resolution}s])"


def with_peaks(
    histories: Sequence[DemandHistory], peaks: Sequence[DemandHistory]
) -> list[DemandHistory]:
    """``histories`` with each flow's ``peaks`` from the peak query's histories of the same
    flow (None where that query had no series for it)."""
    by_key = {p.key: p.rates for p in peaks}
    return [h.model_copy(update={"peaks": by_key.get(h.key)}) for h in histories]


def _model(metric: Mapping[str, str], served_names: Mapping[str, str]) -> str:
    name = metric["model_name"]
    return served_names.get(name, name)


def histories_from_results(
    results: Mapping[Series, Sequence[Mapping[str, Any]]],
    start: float,
    step_seconds: int,
    steps: int,
    queries: PrometheusQueries | None = None,
    served_names: Mapping[str, str] | None = None,
) -> list[DemandHistory]:
    """Turn ``query_range`` results (one list of ``{metric, values}`` per rate) into one
    :class:`DemandHistory` per flow, sorted by flow. ``queries`` gives the profile (whose
    configuration the errors name) and ``defaultTier``; ``served_names`` maps served model
    names to LLMModel names. Raises :class:`MissingLabel` when a series lacks one of
    :data:`LABELS`."""
    q = queries or PrometheusQueries()
    names = served_names or {}
    grid: dict[FlowKey, dict[Series, list[float]]] = {}
    for series, result in results.items():
        for item in result:
            metric = dict(item.get("metric") or {})
            if not metric.get("tier") and q.default_tier:
                metric["tier"] = q.default_tier
            for lab in LABELS:
                if not metric.get(lab):
                    provider = q.label_source(lab)
                    if lab == "tier":
                        provider += " (or set spec.prometheus.queries.defaultTier)"
                    raise MissingLabel(_camel(QUERY_FIELDS[series]), lab, provider, metric)
            key = FlowKey(model=_model(metric, names), origin=metric["region"], tier=metric["tier"])
            rows = grid.setdefault(key, {})
            row = rows.setdefault(series, [math.nan] * steps)
            for pair in item.get("values") or []:
                if not isinstance(pair, list | tuple) or len(pair) != 2:
                    continue
                when, value = number(pair[0]), number(pair[1])
                if not math.isfinite(when):
                    continue  # a garbled sample is no sample
                i = round((when - start) / step_seconds) - 1
                if 0 <= i < steps and math.isfinite(value):
                    row[i] = (0.0 if math.isnan(row[i]) else row[i]) + max(value, 0.0)
    out = []
    for key in sorted(grid, key=lambda k: (k.model, k.origin, k.tier)):
        rows = grid[key]
        seen = [any(not math.isnan(r[i]) for r in rows.values()) for i in range(steps)]
        cols: dict[Series, tuple[float, ...]] = {}
        for s in QUERY_FIELDS:
            r = rows.get(s, [math.nan] * steps)
            cols[s] = tuple(
                (0.0 if math.isnan(r[i]) else r[i]) if seen[i] else math.nan for i in range(steps)
            )
        out.append(
            DemandHistory(
                key=key,
                start=start,
                step_seconds=step_seconds,
                rates=DemandRates(
                    requests_per_s=cols["requests"],
                    prompt_tokens_per_s=cols["prompt_tokens"],
                    output_tokens_per_s=cols["output_tokens"],
                ),
            )
        )
    return out


def usage_from_results(
    result: Sequence[Mapping[str, Any]],
    queries: PrometheusQueries | None = None,
    served_names: Mapping[str, str] | None = None,
) -> tuple[Usage, ...]:
    """Instant-query results of ``tenantUsage`` -> one :class:`Usage` per (tenant, model,
    region), sorted; same labels summed, negative and non-finite values dropped. Raises
    :class:`MissingLabel` when a series lacks one of :data:`USAGE_LABELS`."""
    q = queries or PrometheusQueries()
    names = served_names or {}
    total: dict[tuple[str, str, str], float] = {}
    for item in result:
        metric = item.get("metric") or {}
        for lab in USAGE_LABELS:
            if not metric.get(lab):
                raise MissingLabel("tenantUsage", lab, q.label_source(lab), metric)
        value = item.get("value") or []
        v = number(value[1]) if len(value) == 2 else math.nan
        if not math.isfinite(v):
            continue
        key = (metric["tenant"], _model(metric, names), metric["region"])
        total[key] = total.get(key, 0.0) + max(v, 0.0)
    return tuple(Usage(t, m, r, v) for (t, m, r), v in sorted(total.items()))


def replica_states_from_results(
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    served_names: Mapping[str, str] | None = None,
) -> tuple[ReplicaState, ...]:
    """Instant-query results of the replica-state templates (keyed by field name, e.g.
    ``kv_cache_usage``) -> one :class:`ReplicaState` per (model, serving region), sorted;
    same labels summed. Raises :class:`MissingLabel` when a series lacks one of
    :data:`REPLICA_LABELS`."""
    names = served_names or {}
    values: dict[tuple[str, str], dict[str, float]] = {}
    for fieldname, result in results.items():
        for item in result:
            metric = item.get("metric") or {}
            for lab in REPLICA_LABELS:
                if not metric.get(lab):
                    raise MissingLabel(_camel(fieldname), lab, REPLICA_LABEL_SOURCES[lab], metric)
            value = item.get("value") or []
            v = number(value[1]) if len(value) == 2 else math.nan
            if not math.isfinite(v):
                continue
            row = values.setdefault((_model(metric, names), metric["region"]), {})
            row[fieldname] = row.get(fieldname, 0.0) + v
    return tuple(ReplicaState(model=m, region=r, **row) for (m, r), row in sorted(values.items()))


def newest_per_region(result: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Instant-query results of ``newestSample`` -> region -> Unix time of its newest
    sample. Raises :class:`MissingLabel` when a series lacks ``region``."""
    out: dict[str, float] = {}
    for item in result:
        metric = item.get("metric") or {}
        if not metric.get("region"):
            raise MissingLabel("newestSample", "region", REPLICA_LABEL_SOURCES["region"], metric)
        value = item.get("value") or []
        v = number(value[1]) if len(value) == 2 else math.nan
        if math.isfinite(v):
            out[metric["region"]] = max(v, out.get(metric["region"], -math.inf))
    return out


def newest_with_data(histories: Sequence[DemandHistory]) -> float | None:
    """End time of the newest step that has data in any history."""
    newest: float | None = None
    for h in histories:
        for i in range(len(h.rates) - 1, -1, -1):
            if not math.isnan(h.rates.prompt_tokens_per_s[i]):
                t = h.start + (i + 1) * h.step_seconds
                newest = t if newest is None else max(newest, t)
                break
    return newest


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class DemandReader:
    """Range queries against one Prometheus (every request bounded by ``timeoutSeconds``),
    once its URL passed ``allow`` (module docstring; ``resolve`` is how host names become
    addresses, a fake in tests; ``served_names`` maps each LLMModel's served name to the
    LLMModel's name, as a gateway labels series with the request's ``model`` field)."""

    def __init__(
        self,
        source: PrometheusSource,
        *,
        allow: PrometheusAllow | None = None,
        resolve: Resolver = resolve_host,
        served_names: Mapping[str, str] | None = None,
    ) -> None:
        self.source = source
        self.served_names = dict(served_names or {})
        self.url = source.url.rstrip("/")
        self.allow = allow or PrometheusAllow()
        self._resolve = resolve
        self._checked = False
        session = requests.Session()
        session.max_redirects = 0  # a redirect is an error, never followed
        # one quick retry on connection errors; no long backoff inside a planning cycle
        self._prom = PrometheusConnect(
            url=self.url,
            timeout=source.timeout_seconds,
            retry=Retry(total=1, backoff_factor=0.1, status_forcelist=()),
            session=session,
        )

    @property
    def where(self) -> str:
        return f"Prometheus {self.source.url}"

    def close(self) -> None:
        self._prom.close()

    def _check(self) -> None:
        """The URL against the allow-list, before the first request (raises BadQuery)."""
        if not self._checked:
            self.allow.check(self.source.url, self._resolve)
            self._checked = True

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self._check()
        try:
            return fn(*args, **kwargs)
        except requests.TooManyRedirects:
            raise BadQuery(
                f"spec.prometheus.url {self.source.url!r} answered {what} with a redirect, "
                "which is not followed: give the URL of the Prometheus API itself"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as err:
            raise PrometheusUnreachable(
                f"Prometheus {self.url} unreachable ({what}): {type(err).__name__}"
            ) from None
        except requests.RequestException as err:
            raise PrometheusUnreachable(f"Prometheus {self.url} ({what}): {err}") from None
        except PrometheusApiClientException as err:
            text = str(err)
            if "HTTP Status Code 400" in text or "HTTP Status Code 422" in text:
                raise BadQuery(f"Prometheus {self.url} rejected {what}: {text[:500]}") from None
            raise PrometheusUnreachable(f"Prometheus {self.url} ({what}): {text[:500]}") from None
        except ValueError as err:  # a non-JSON answer (a proxy's error page)
            raise PrometheusUnreachable(
                f"Prometheus {self.url} ({what}): not a Prometheus API answer: {err}"
            ) from None

    def _range(
        self, queries: PrometheusQueries, start: float, end_aligned: float, step_seconds: int,
        peak_seconds: int = 0,
    ) -> dict[Series, list[dict[str, Any]]]:
        """Every demand template range-queried at ``step_seconds`` (``peak_seconds > 0``: its
        busiest ``peak_seconds`` inside each step, :func:`peak_query`)."""
        results: dict[Series, list[dict[str, Any]]] = {}
        for series, fieldname in QUERY_FIELDS.items():
            template = queries.template(fieldname)
            query = (peak_query(template, peak_seconds, step_seconds) if peak_seconds > 0
                     else render(template, step_seconds))
            results[series] = self._call(
                f"spec.prometheus.queries.{_camel(fieldname)} {query!r}",
                self._prom.custom_query_range,
                query,
                start_time=datetime.fromtimestamp(start + step_seconds, UTC),
                end_time=datetime.fromtimestamp(end_aligned, UTC),
                step=f"{step_seconds}s",
            )
        return results

    def read(
        self,
        queries: PrometheusQueries,
        *,
        end: float,
        history_seconds: int,
        step_seconds: int,
        peak_seconds: int = 0,
    ) -> DemandRead:
        """Demand of every flow over ``[end - history_seconds, end]`` at ``step_seconds``, and
        with ``peak_seconds > 0`` each step's busiest ``peak_seconds`` (the histories'
        ``peaks``)."""
        end_aligned = math.floor(end / step_seconds) * step_seconds
        steps = max(1, history_seconds // step_seconds)
        start = end_aligned - steps * step_seconds
        results = self._range(queries, start, end_aligned, step_seconds)
        peaks = (self._range(queries, start, end_aligned, step_seconds, peak_seconds)
                 if peak_seconds > 0 else None)
        try:
            histories = histories_from_results(
                results, start, step_seconds, steps, queries, self.served_names
            )
            if peaks is not None:
                histories = with_peaks(histories, histories_from_results(
                    peaks, start, step_seconds, steps, queries, self.served_names))
        except (AttributeError, TypeError, KeyError) as err:  # not the API's result shape
            raise PrometheusUnreachable(
                f"Prometheus {self.url}: not a Prometheus API answer: {type(err).__name__}: {err}"
            ) from None
        newest = self._newest_sample(queries, end) or newest_with_data(histories)
        return DemandRead(
            histories=tuple(histories),
            start=start,
            step_seconds=step_seconds,
            newest_sample=newest,
            age_seconds=None if newest is None else max(0.0, end - newest),
        )

    def read_usage(
        self, queries: PrometheusQueries, *, end: float, step_seconds: int
    ) -> tuple[Usage, ...]:
        """Each tenant's tokens/s per (model, region) at ``end`` (``tenantUsage``); empty
        when Prometheus has no per-tenant series, or the profile reads none (``vllm``)."""
        template = queries.usage_template()
        if template is None:
            return ()
        query = render(template, step_seconds)
        out = self._instant(f"spec.prometheus.queries.tenantUsage {query!r}", query, end)
        try:
            return usage_from_results(out, queries, self.served_names)
        except (AttributeError, TypeError, KeyError) as err:  # not the API's result shape
            raise self._garbled(err) from None

    def read_recent(
        self, queries: PrometheusQueries, *, end: float, window_seconds: int
    ) -> dict[FlowKey, tuple[float, float, float]]:
        """Each flow's (requests, prompt tokens, output tokens) per second over the last
        ``window_seconds`` before ``end``: the demand templates as instant queries at
        ``$window`` = the window (the short-term correction's demand rule)."""
        results: dict[Series, list[dict[str, Any]]] = {}
        for series, fieldname in QUERY_FIELDS.items():
            query = render(queries.template(fieldname), window_seconds)
            out = self._instant(f"spec.prometheus.queries.{_camel(fieldname)} {query!r}", query, end)
            results[series] = [{"metric": item.get("metric"), "values": [item.get("value")]}
                               for item in out if isinstance(item, Mapping)]
        try:
            histories = histories_from_results(
                results, end - window_seconds, window_seconds, 1, queries, self.served_names)
        except (AttributeError, TypeError, KeyError) as err:  # not the API's result shape
            raise self._garbled(err) from None
        return {h.key: (_finite(h.rates.requests_per_s[0]), _finite(h.rates.prompt_tokens_per_s[0]),
                        _finite(h.rates.output_tokens_per_s[0])) for h in histories}

    def read_replica_state(
        self, queries: PrometheusQueries, *, end: float
    ) -> tuple[ReplicaState, ...]:
        """vLLM's running, waiting, KV-cache use, p95 TTFT and completions per (model,
        serving region) at ``end``, ``$window`` = ``replicaWindowSeconds``."""
        results: dict[str, list[dict[str, Any]]] = {}
        for fieldname in REPLICA_FIELDS:
            query = render(getattr(queries, fieldname), queries.replica_window_seconds)
            results[fieldname] = self._instant(
                f"spec.prometheus.queries.{_camel(fieldname)} {query!r}", query, end
            )
        try:
            return replica_states_from_results(results, self.served_names)
        except (AttributeError, TypeError, KeyError) as err:  # not the API's result shape
            raise self._garbled(err) from None

    def _instant(self, what: str, query: str, at: float) -> list[dict[str, Any]]:
        out = self._call(what, self._prom.custom_query, query, params={"time": f"{at:.3f}"})
        return list(out or [])

    def _garbled(self, err: Exception) -> PrometheusUnreachable:
        return PrometheusUnreachable(
            f"Prometheus {self.url}: not a Prometheus API answer: {type(err).__name__}: {err}"
        )

    def _newest_sample(self, queries: PrometheusQueries, at: float) -> float | None:
        """The newest sample of the serving region that lags most (``newestSample``)."""
        query = render(queries.newest_sample, queries.replica_window_seconds)
        out = self._instant(f"spec.prometheus.queries.newestSample {query!r}", query, at)
        try:
            newest = newest_per_region(out)
        except (AttributeError, TypeError, KeyError) as err:
            raise self._garbled(err) from None
        return min(newest.values()) if newest else None
