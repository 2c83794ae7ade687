"""Demand at the gateway, read the way the operator reads it (issue 14): the load generator
replays requests (tenant, tier and origin headers; streaming chat with usage) through the
box's front door (load generator -> router (gen_ai metrics) -> Traefik -> Service ClusterIP ->
harness -> emulator); Prometheus scrapes the router's gen_ai series (origin_region -> region);
the default ``envoy-ai-gateway`` query profile's templates, unchanged, give per (model, origin,
tier) the prompt and generated tokens and the requests the load generator sent, and per
(tenant, model, origin) the tokens, within 5% (the window's edges are two scrapes of the
gateway, so rate() does not extrapolate: rate * window is the increase between them).

Needs Traefik (``bash hack/fleet.sh build traefik``, not in CI: see hack/traefik/README.md) and
Prometheus (``bash hack/tools.sh prometheus``). Run it by path::

    python -m pytest tests/integration/box/gateway_demand.py
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from gatewaybox import (
    GATEWAY,
    NAMESPACE,
    SERVED,
    GatewayBox,
    complete,
    gateway_box,
    model_doc,
    route_accepted,
    serve_model,
    wait_for,
)

from llmfleet.api.model import LLMModel
from llmfleet.api.policy import ParentRef, PrometheusQueries
from llmfleet.box.loadgen import Planned, replay, summarize
from llmfleet.kube import render
from llmfleet.kube.client import Cluster
from llmfleet.routing.table import RouteEntry

TENANTS = ("acme", "zed")
TIERS = ("gold", "batch")
ORIGINS = ("box-east", "box-west")
REQUESTS = 240
SECONDS = 24.0
TOLERANCE = 0.05


@pytest.fixture
def box(tmp_path: Path) -> Iterator[GatewayBox]:
    yield from gateway_box(tmp_path, scrape_interval="500ms")


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


def _last_scrape(box: GatewayBox, at: float) -> float:
    """The Unix time of the gateway's newest scrape at or before ``at`` (milliseconds)."""
    (row,) = box.query('timestamp(up{job="gateway"})', at)
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


def test_the_envoy_ai_gateway_profile_reads_what_the_load_generator_sent(box: GatewayBox) -> None:
    cluster = Cluster.connect(box.kubeconfig, timeout=20)
    try:
        serve_model(box, cluster)
        model = LLMModel.model_validate(model_doc())
        entry = RouteEntry(
            model="tiny", tier="gold", origin="box-east", weights=(("r1", 500), ("r2", 500)),
            fractions=(("r1", 0.5), ("r2", 0.5)), tenants=TENANTS,
        )  # fmt: skip
        (route,) = render.render_httproutes(
            model, [entry], namespace=NAMESPACE, parent_refs=[ParentRef(name=GATEWAY)],
            policy_namespace=NAMESPACE, tier_header="x-tier", tenant_header="x-tenant-id",
            local_regions=frozenset(("r1", "r2")), match_origin=False,
        )  # fmt: skip
        cluster.apply(route)
        wait_for(lambda: route_accepted(cluster, route["metadata"]["name"]), 60,
                 f"the HTTPRoute accepted\n{box.logs()}")  # fmt: skip
        # the router sets the model header the route matches
        probe = {"x-tenant-id": TENANTS[0], "x-tier": TIERS[0], "x-origin-region": ORIGINS[0]}
        wait_for(lambda: complete(box.router, probe) == 200, 60,
                 f"a completion through the router\n{box.logs()}")  # fmt: skip
        assert complete(box.traefik, {}) == 404  # without the header Traefik has no route

        warm = asyncio.run(replay(box.router, SERVED, _warmup(), api="chat"))
        assert all(o.ok for o in warm), [o for o in warm if not o.ok]
        t_warm = time.time()
        wait_for(lambda: box.scraped_after("gateway", t_warm + 0.1), 30, "a scrape after warm-up")
        # the window's edges are scrapes of the gateway (a sample on each edge: rate() does not
        # extrapolate, so rate * window is the increase between them)
        first = _last_scrape(box, time.time())

        outcomes = asyncio.run(replay(box.router, SERVED, _plan(14), api="chat"))
        summary = summarize(outcomes, SECONDS)
        # every request answered, or failed where the client sees it (a stream cut off); the
        # gateway counts the tokens of the answers' usage, so the answered ones are compared
        assert summary.sent == REQUESTS and not summary.http_errors, summary
        assert summary.ok >= 0.99 * REQUESTS, summary
        t_done = time.time()
        wait_for(lambda: box.scraped_after("gateway", t_done + 0.1), 30, "a scrape after the load")
        end = _last_scrape(box, time.time())
        window_ms = round((end - first) * 1000)  # scrape times are whole milliseconds
        window = window_ms / 1000

        sent: dict[str, dict[tuple[str, ...], float]] = {
            k: defaultdict(float) for k in ("prompt", "output", "requests", "usage")
        }
        for o in outcomes:
            # requests: every one sent (the gateway counts failures too, error_type="_OTHER";
            # a failure's series born inside the window is not counted by rate(): its first
            # sample is already 1, as in any Prometheus)
            sent["requests"][(SERVED, o.origin, o.tier)] += 1
            if not o.ok:
                continue
            # the usage the client got is what was planned (the emulator counts the words)
            assert (o.prompt_tokens, o.completion_tokens) == (
                o.planned_prompt_tokens, o.planned_output_tokens)  # fmt: skip
            flow = (SERVED, o.origin, o.tier)
            sent["prompt"][flow] += o.planned_prompt_tokens
            sent["output"][flow] += o.planned_output_tokens
            sent["usage"][(o.tenant, SERVED, o.origin)] += (
                o.planned_prompt_tokens + o.planned_output_tokens
            )

        queries = PrometheusQueries()  # the defaults: profile envoy-ai-gateway
        assert queries.profile == "envoy-ai-gateway"
        w = f"{window_ms}ms"
        worst: dict[str, float] = {}
        for name, key in (("prompt_tokens", "prompt"), ("generation_tokens", "output"),
                          ("requests", "requests")):  # fmt: skip
            result = box.query(queries.template(name).replace("$window", w), end)  # type: ignore[arg-type]
            got = {
                (r["metric"]["model_name"], r["metric"]["region"], r["metric"]["tier"]):
                    float(r["value"][1]) * window
                for r in result
            }  # fmt: skip
            worst[name] = _close(got, dict(sent[key]), name)
        usage_t = queries.usage_template()
        assert usage_t is not None
        result = box.query(usage_t.replace("$window", w), end)
        got = {
            (r["metric"]["tenant"], r["metric"]["model_name"], r["metric"]["region"]):
                float(r["value"][1]) * window
            for r in result
        }  # fmt: skip
        worst["tenant_usage"] = _close(got, dict(sent["usage"]), "tenant_usage")
        print(f"\ndemand through the envoy-ai-gateway profile over {window:.1f} s, "
              f"{REQUESTS} requests ({summary.ok} answered, transport errors "
              f"{summary.transport_errors}): largest relative error per template {worst}")  # fmt: skip
    finally:
        cluster.close()
