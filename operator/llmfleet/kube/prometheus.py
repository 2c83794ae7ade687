"""Read demand history from Prometheus (vLLM metrics) into :class:`DemandHistory` values.

The FleetPolicy's query templates (``spec.prometheus.queries``) are range-queried over
``[end - historySeconds, end]`` at a resolution of ``step`` seconds, ``$window`` replaced
by the step (e.g. ``3600s``), so

    1. value(t) = rate over (t - step, t]   (the average rate of the step ending at t),

and the sample at grid time ``t`` is history step ``i = (t - start) / step - 1`` with
``start = end - historySeconds`` aligned down to the step. Each result series must carry the
labels ``model_name``, ``region`` (the origin) and ``tier``; series with the same labels are
summed. A flow with data at a step but missing one of its three rates gets 0 for that rate;
a step with no data at all is NaN (the forecaster fills gaps).

Per-tenant usage (``tenantUsage``) is one instant query at the cycle's time, ``$window``
replaced by the step the same way; each result series must carry ``tenant``,
``model_name`` and ``region`` (:func:`usage_from_results`; series with the same labels are
summed, a series lacking a label is a :class:`BadQuery`).

The data age is ``now - max(timestamp(vllm:prompt_tokens_total))`` (an instant query); when
that is empty (no sample within Prometheus's lookback) it falls back to the newest step with
data in the range result.

Errors are values a caller can sort: :class:`PrometheusUnreachable` (connection refused,
timeout, 5xx: try again later) and :class:`BadQuery` (HTTP 400/422: the template is wrong,
retrying will not help).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from llmfleet.api.policy import PrometheusQueries, PrometheusSource
from llmfleet.cycle.ports import BadQuery, DemandRead, DemandSourceError, SourceUnreachable
from llmfleet.fairness.limits import Usage
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey, Series
from llmfleet.observe.metrics import VLLM_PROMPT_TOKENS

LABELS = ("model_name", "region", "tier")
QUERY_FIELDS: Mapping[Series, str] = {
    "requests": "requests",
    "prompt_tokens": "prompt_tokens",
    "output_tokens": "generation_tokens",
}
"""Which template of :class:`PrometheusQueries` gives each rate of a flow."""
USAGE_LABELS = ("tenant", "model_name", "region")


# The cycle's port errors, under the names this reader has always used.
PrometheusError = DemandSourceError
PrometheusUnreachable = SourceUnreachable


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


def histories_from_results(
    results: Mapping[Series, Sequence[Mapping[str, Any]]],
    start: float,
    step_seconds: int,
    steps: int,
) -> list[DemandHistory]:
    """Turn ``query_range`` results (one list of ``{metric, values}`` per rate) into one
    :class:`DemandHistory` per flow, sorted by flow. Raises :class:`BadQuery` when a series
    lacks one of :data:`LABELS`."""
    grid: dict[FlowKey, dict[Series, list[float]]] = {}
    for series, result in results.items():
        for item in result:
            metric = item.get("metric") or {}
            missing = [lab for lab in LABELS if not metric.get(lab)]
            if missing:
                raise BadQuery(
                    f"spec.prometheus.queries.{_camel(QUERY_FIELDS[series])}: result series "
                    f"{dict(metric)} lacks label(s) {', '.join(missing)} "
                    f"(the query must keep {', '.join(LABELS)})"
                )
            key = FlowKey(model=metric["model_name"], origin=metric["region"], tier=metric["tier"])
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


def usage_from_results(result: Sequence[Mapping[str, Any]]) -> tuple[Usage, ...]:
    """Instant-query results of ``tenantUsage`` -> one :class:`Usage` per (tenant, model,
    region), sorted; same labels summed, negative and non-finite values dropped. Raises
    :class:`BadQuery` when a series lacks one of :data:`USAGE_LABELS`."""
    total: dict[tuple[str, str, str], float] = {}
    for item in result:
        metric = item.get("metric") or {}
        missing = [lab for lab in USAGE_LABELS if not metric.get(lab)]
        if missing:
            raise BadQuery(
                f"spec.prometheus.queries.tenantUsage: result series {dict(metric)} lacks "
                f"label(s) {', '.join(missing)} (the query must keep {', '.join(USAGE_LABELS)})"
            )
        value = item.get("value") or []
        v = number(value[1]) if len(value) == 2 else math.nan
        if not math.isfinite(v):
            continue
        key = (metric["tenant"], metric["model_name"], metric["region"])
        total[key] = total.get(key, 0.0) + max(v, 0.0)
    return tuple(Usage(t, m, r, v) for (t, m, r), v in sorted(total.items()))


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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class DemandReader:
    """Range queries against one Prometheus (every request bounded by ``timeoutSeconds``)."""

    def __init__(self, source: PrometheusSource) -> None:
        self.source = source
        self.url = source.url.rstrip("/")
        # one quick retry on connection errors; no long backoff inside a planning cycle
        self._prom = PrometheusConnect(
            url=self.url,
            timeout=source.timeout_seconds,
            retry=Retry(total=1, backoff_factor=0.1, status_forcelist=()),
        )

    @property
    def where(self) -> str:
        return f"Prometheus {self.source.url}"

    def close(self) -> None:
        self._prom.close()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
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

    def read(
        self,
        queries: PrometheusQueries,
        *,
        end: float,
        history_seconds: int,
        step_seconds: int,
    ) -> DemandRead:
        """Demand of every flow over ``[end - history_seconds, end]`` at ``step_seconds``."""
        end_aligned = math.floor(end / step_seconds) * step_seconds
        steps = max(1, history_seconds // step_seconds)
        start = end_aligned - steps * step_seconds
        results: dict[Series, list[dict[str, Any]]] = {}
        for series, fieldname in QUERY_FIELDS.items():
            template: str = getattr(queries, fieldname)
            query = render(template, step_seconds)
            results[series] = self._call(
                f"spec.prometheus.queries.{_camel(fieldname)} {query!r}",
                self._prom.custom_query_range,
                query,
                start_time=datetime.fromtimestamp(start + step_seconds, UTC),
                end_time=datetime.fromtimestamp(end_aligned, UTC),
                step=f"{step_seconds}s",
            )
        try:
            histories = histories_from_results(results, start, step_seconds, steps)
        except (AttributeError, TypeError, KeyError) as err:  # not the API's result shape
            raise PrometheusUnreachable(
                f"Prometheus {self.url}: not a Prometheus API answer: {type(err).__name__}: {err}"
            ) from None
        newest = self._newest_sample(end) or newest_with_data(histories)
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
        when Prometheus has no per-tenant series."""
        query = render(queries.tenant_usage, step_seconds)
        out = self._call(
            f"spec.prometheus.queries.tenantUsage {query!r}",
            self._prom.custom_query,
            query,
            params={"time": f"{end:.3f}"},
        )
        try:
            return usage_from_results(out or [])
        except (AttributeError, TypeError, KeyError) as err:  # not the API's result shape
            raise PrometheusUnreachable(
                f"Prometheus {self.url}: not a Prometheus API answer: {type(err).__name__}: {err}"
            ) from None

    def _newest_sample(self, at: float) -> float | None:
        query = f"max(timestamp({VLLM_PROMPT_TOKENS}))"
        out = self._call(
            f"data age {query!r}", self._prom.custom_query, query, params={"time": f"{at:.3f}"}
        )
        for item in out or []:
            value = item.get("value") or []
            if len(value) == 2 and math.isfinite(number(value[1])):
                return number(value[1])
        return None
