"""Demand at the gateway, read the way the operator reads it (issue 14), as a check both
gateway tests run: the load generator replays requests (tenant, tier and origin headers;
streaming chat with usage) through the router, whose gen_ai series Prometheus scrapes (job
``gateway``, the request's ``origin_region`` relabelled to ``region`` as each region's
Prometheus external label does); the default ``envoy-ai-gateway`` query profile's templates,
unchanged, must give per (model, origin, tier) the prompt and generated tokens and the
requests the load generator sent, and per (tenant, model, origin) the tokens, within 5%.

The window's edges are two scrapes of the gateway, so rate() does not extrapolate: rate *
window is the increase between them."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from typing import Any, Protocol

from llmfleet.api.policy import PrometheusQueries
from llmfleet.box.loadgen import Planned, replay, summarize
from support.fleetbox import wait_for

TENANTS = ("acme", "zed")
TIERS = ("gold", "batch")
ORIGINS = ("box-east", "box-west")
REQUESTS = 240
SECONDS = 24.0
TOLERANCE = 0.05
HEADER_ATTRIBUTES = "x-tenant-id:tenant.id,x-tier:tier,x-origin-region:origin.region"
"""The router's ``--metrics-header-attributes`` (hack/fleet.sh's, Envoy AI Gateway's
``metricsRequestHeaderAttributes``)."""


def gateway_job(target: str) -> dict[str, Any]:
    """The scrape config of a region's gateway (hack/fleet.sh writes the same): the request's
    origin (header label ``origin_region``) becomes ``region``."""
    return {
        "job_name": "gateway",
        "static_configs": [{"targets": [target]}],
        "metric_relabel_configs": [
            {"source_labels": ["origin_region"], "regex": "(.+)", "target_label": "region"},
            {"regex": "origin_region", "action": "labeldrop"},
        ],
    }


class Prometheus(Protocol):
    def query(self, promql: str, at: float) -> list[dict[str, Any]]: ...

    def scraped_after(self, job: str, t: float) -> bool: ...


def _plan(seed: int) -> list[Planned]:
    rng = random.Random(seed)
    out = []
    for i in range(REQUESTS):
        out.append(Planned(
            index=i, at=i * SECONDS / REQUESTS,
            prompt_tokens=rng.randint(5, 200), output_tokens=rng.randint(1, 24),
            tenant=rng.choice(TENANTS), tier=rng.choice(TIERS), origin=rng.choice(ORIGINS),
        ))  # fmt: skip
    return out


def _warmup() -> list[Planned]:
    """One small request per (tenant, tier, origin): every series exists before the window."""
    combos = [(t, s, o) for t in TENANTS for s in TIERS for o in ORIGINS]
    return [Planned(i, 0.0, 1, 1, t, s, o) for i, (t, s, o) in enumerate(combos)]


def _last_scrape(prom: Prometheus, at: float) -> float:
    """The Unix time of the gateway's newest scrape at or before ``at`` (milliseconds)."""
    (row,) = prom.query('timestamp(up{job="gateway"})', at)
    return float(row["value"][1])


def _close(got: dict[tuple[str, ...], float], want: dict[tuple[str, ...], float],
           what: str) -> float:  # fmt: skip
    """Every key within TOLERANCE of what was sent; the largest relative error."""
    assert set(got) == set(want), (what, sorted(got), sorted(want))
    worst = 0.0
    for key, w in want.items():
        err = abs(got[key] - w) / w
        worst = max(worst, err)
        assert err <= TOLERANCE, (what, key, got[key], w, err)
    return worst


def check_gateway_demand(router: str, served: str, prom: Prometheus) -> str:
    """Replay through ``router`` and compare the profile's templates with what was sent
    (module doc); a line with the figures."""
    warm = asyncio.run(replay(router, served, _warmup(), api="chat"))
    assert all(o.ok for o in warm), [o for o in warm if not o.ok]
    t_warm = time.time()
    wait_for(lambda: prom.scraped_after("gateway", t_warm + 0.1), 30, "a scrape after warm-up")
    first = _last_scrape(prom, time.time())

    outcomes = asyncio.run(replay(router, served, _plan(14), api="chat"))
    summary = summarize(outcomes, SECONDS)
    # every request answered, or failed where the client sees it (a stream cut off); the
    # gateway counts the tokens of the answers' usage, so the answered ones are compared
    assert summary.sent == REQUESTS and not summary.http_errors, summary
    assert summary.ok >= 0.99 * REQUESTS, summary
    t_done = time.time()
    wait_for(lambda: prom.scraped_after("gateway", t_done + 0.1), 30, "a scrape after the load")
    end = _last_scrape(prom, time.time())
    window_ms = round((end - first) * 1000)  # scrape times are whole milliseconds
    window = window_ms / 1000

    sent: dict[str, dict[tuple[str, ...], float]] = {
        k: defaultdict(float) for k in ("prompt", "output", "requests", "usage")
    }
    for o in outcomes:
        # requests: every one sent (the gateway counts failures too, error_type="_OTHER";
        # a failure's series born inside the window is not counted by rate(): its first
        # sample is already 1, as in any Prometheus)
        sent["requests"][(served, o.origin, o.tier)] += 1
        if not o.ok:
            continue
        # the usage the client got is what was planned (the emulator counts the words)
        assert (o.prompt_tokens, o.completion_tokens) == (
            o.planned_prompt_tokens, o.planned_output_tokens)  # fmt: skip
        flow = (served, o.origin, o.tier)
        sent["prompt"][flow] += o.planned_prompt_tokens
        sent["output"][flow] += o.planned_output_tokens
        sent["usage"][(o.tenant, served, o.origin)] += (
            o.planned_prompt_tokens + o.planned_output_tokens
        )

    queries = PrometheusQueries()  # the defaults: profile envoy-ai-gateway
    assert queries.profile == "envoy-ai-gateway"
    w = f"{window_ms}ms"
    worst: dict[str, float] = {}
    for name, key in (("prompt_tokens", "prompt"), ("generation_tokens", "output"),
                      ("requests", "requests")):  # fmt: skip
        result = prom.query(queries.template(name).replace("$window", w), end)  # type: ignore[arg-type]
        got = {
            (r["metric"]["model_name"], r["metric"]["region"], r["metric"]["tier"]):
                float(r["value"][1]) * window
            for r in result
        }  # fmt: skip
        worst[name] = _close(got, dict(sent[key]), name)
    usage_t = queries.usage_template()
    assert usage_t is not None
    result = prom.query(usage_t.replace("$window", w), end)
    got = {
        (r["metric"]["tenant"], r["metric"]["model_name"], r["metric"]["region"]):
            float(r["value"][1]) * window
        for r in result
    }  # fmt: skip
    worst["tenant_usage"] = _close(got, dict(sent["usage"]), "tenant_usage")
    return (f"demand through the envoy-ai-gateway profile over {window:.1f} s, "
            f"{REQUESTS} requests ({summary.ok} answered, transport errors "
            f"{summary.transport_errors}): largest relative error per template "
            + ", ".join(f"{k} {v:.2%}" for k, v in worst.items()))  # fmt: skip
