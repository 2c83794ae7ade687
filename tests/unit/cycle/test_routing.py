"""The router's shares in the planning cycle: the demand split, the plan it makes, and what
``explain`` says about the replicas that exist because of routing."""

from __future__ import annotations

from typing import Any

import pytest

from llmfleet.api.loading import parse_object
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.cycle import policy_snapshot
from llmfleet.cycle.demand import Demand
from llmfleet.cycle.routing import route_demand, route_forecasts
from llmfleet.forecast.types import DemandForecast, DemandRates, FlowKey
from llmfleet.plan.explain import explain, routed_replicas
from llmfleet.plan.instance import CurrentState, from_snapshot
from llmfleet.routing.models.serving import RouterShares, RouteShare, TierShares
from support.cycles import cycle

API = "llmfleet.dev/v1alpha1"
BIG, SMALL = "big", "small"


def _model(name: str, gpus: int, prefill: float, decode: float) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "LLMModel",
        "metadata": {"name": name},
        "spec": {
            "servedModelName": name,
            "profiles": [
                {
                    "gpuType": "H100-80GB",
                    "gpusPerReplica": gpus,
                    "prefillTokensPerSecond": prefill,
                    "decodeTokensPerSecond": decode,
                    "maxConcurrentSequences": 256,
                    "loadSeconds": 60,
                }
            ],
            "evaluations": [{"metric": "accuracy", "score": 86.0 if gpus > 1 else 73.0}],
            "routingCost": {
                "promptUsdPerMillionTokens": 0.88 if gpus > 1 else 0.18,
                "outputUsdPerMillionTokens": 0.88 if gpus > 1 else 0.18,
                "meanOutputTokens": 280,
            },
        },
    }


def fleet(routing: bool = True) -> list[dict[str, Any]]:
    """One region, a 4-GPU reference and a 1-GPU candidate, one routed interactive tier and
    an unrouted deadline tier."""
    chat: dict[str, Any] = {
        "type": "interactive",
        "interactive": {"ttftP95Seconds": 5.0},
        "targetUtilization": 0.75,
    }
    if routing:
        chat["routing"] = {
            "referenceModel": BIG,
            "candidates": [SMALL, BIG],
            "maxQualityDrop": 1.0,
        }
    tenant = {
        "tokensPerMinute": 3_000_000,
        "requestsPerMinute": 100_000,
        "maxConcurrency": 4096,
    }
    return [
        {
            "apiVersion": API,
            "kind": "Region",
            "metadata": {"name": "r1"},
            "spec": {
                "location": "x",
                "pools": [
                    {
                        "name": "h100",
                        "gpuType": "H100-80GB",
                        "gpusPerNode": 8,
                        "pricePerNodeHour": 98.0,
                        "maxNodes": 20,
                        "provisioningSeconds": 300,
                    }
                ],
            },
        },
        _model(BIG, 4, 10800, 2740),
        _model(SMALL, 1, 56400, 7220),
        {"apiVersion": API, "kind": "SLATier", "metadata": {"name": "chat"}, "spec": chat},
        {
            "apiVersion": API,
            "kind": "SLATier",
            "metadata": {"name": "batch"},
            "spec": {"type": "deadline", "deadline": {"completionSeconds": 86400}},
        },
        {
            "apiVersion": API,
            "kind": "TenantQuota",
            "metadata": {"name": "a"},
            "spec": {"tenantId": "a", "tier": "chat", "models": [BIG], "budgets": tenant},
        },
        {
            "apiVersion": API,
            "kind": "TenantQuota",
            "metadata": {"name": "b"},
            "spec": {"tenantId": "b", "tier": "batch", "models": [BIG], "budgets": tenant},
        },
    ]


def _snapshot(routing: bool = True) -> FleetSnapshot:
    return policy_snapshot([parse_object(d, "ns") for d in fleet(routing)], "ns")


def _policy() -> FleetPolicy:
    doc = {
        "apiVersion": API,
        "kind": "FleetPolicy",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "intervalSeconds": 300,
            "horizon": {"stepSeconds": 300, "steps": 2},
            "solver": {"timeLimitSeconds": 5},
        },
    }
    return FleetPolicy.from_wire(doc)


def _flow(model: str, tier: str, value: float, origin: str = "r1") -> DemandForecast:
    rates = DemandRates(
        requests_per_s=(value / 1000, 2 * value / 1000),
        prompt_tokens_per_s=(value, 2 * value),
        output_tokens_per_s=(value / 4, value / 2),
    )
    upper = DemandRates(
        requests_per_s=tuple(1.2 * v for v in rates.requests_per_s),
        prompt_tokens_per_s=tuple(1.2 * v for v in rates.prompt_tokens_per_s),
        output_tokens_per_s=tuple(1.2 * v for v in rates.output_tokens_per_s),
    )
    return DemandForecast(
        key=FlowKey(model=model, origin=origin, tier=tier),
        start=0.0,
        step_seconds=300,
        point=rates,
        upper=upper,
        quantile=0.9,
        method="naive",
    )


SHARES = RouterShares(
    (
        TierShares(
            "chat",
            BIG,
            (RouteShare(BIG, 0.4, 0.45, 0.5), RouteShare(SMALL, 0.6, 0.55, 0.5)),
            note="test",
        ),
    )
)


def _by_key(forecasts: tuple[DemandForecast, ...]) -> dict[tuple[str, str], DemandForecast]:
    return {(f.key.model, f.key.tier): f for f in forecasts}


def test_split_conserves_requests_and_prompt_tokens_and_leaves_other_tiers_alone():
    ref, batch = _flow(BIG, "chat", 1000.0), _flow(BIG, "batch", 500.0)
    out, applied = route_forecasts((ref, batch), _snapshot(), SHARES)
    got = _by_key(out)
    assert set(got) == {(BIG, "chat"), (SMALL, "chat"), (BIG, "batch")}
    assert got[(BIG, "batch")] == batch
    for series in ("requests_per_s", "prompt_tokens_per_s"):
        for which in ("point", "upper"):
            total = [
                a + b
                for a, b in zip(
                    getattr(getattr(got[(BIG, "chat")], which), series),
                    getattr(getattr(got[(SMALL, "chat")], which), series),
                    strict=True,
                )
            ]
            assert total == pytest.approx(getattr(getattr(ref, which), series))
    small = got[(SMALL, "chat")]
    assert small.point.requests_per_s == pytest.approx((0.6, 1.2))
    assert small.point.prompt_tokens_per_s == pytest.approx((550.0, 1100.0))
    assert applied.tiers == ("chat",) and not applied.notes
    # what explain attributes with: all of the small flow is routed, the reference kept 45%
    rs = applied.shares[FlowKey(model=SMALL, origin="r1", tier="chat")]
    assert rs.added == 1.0 and rs.load == pytest.approx(1.2 * (550 + 125))
    kept = applied.shares[FlowKey(model=BIG, origin="r1", tier="chat")]
    assert kept.removed_load == pytest.approx(1.2 * (1250 - 450 - 125))


def test_best_of_n_multiplies_output_by_n_and_counts_the_prompt_once():
    shares = RouterShares(
        (
            TierShares(
                "chat",
                BIG,
                (RouteShare(BIG, 0.5, 0.5, 0.5), RouteShare(SMALL, 0.5, 0.5, 0.5, samples=4)),
            ),
        )
    )
    out, _ = route_forecasts((_flow(BIG, "chat", 1000.0),), _snapshot(), shares)
    small = _by_key(out)[(SMALL, "chat")]
    assert small.point.output_tokens_per_s == pytest.approx((4 * 0.5 * 250, 4 * 0.5 * 500))
    assert small.point.prompt_tokens_per_s == pytest.approx((500.0, 1000.0))
    assert small.point.requests_per_s == pytest.approx((0.5, 1.0))
    fanned = RouterShares((TierShares("chat", BIG, shares.tiers[0].options, True),))
    out, _ = route_forecasts((_flow(BIG, "chat", 1000.0),), _snapshot(), fanned)
    assert _by_key(out)[(SMALL, "chat")].point.prompt_tokens_per_s == pytest.approx((2000, 4000))


def test_routed_flow_adds_to_the_candidates_own_requests():
    direct = _flow(SMALL, "chat", 100.0)
    out, applied = route_forecasts((_flow(BIG, "chat", 1000.0), direct), _snapshot(), SHARES)
    small = _by_key(out)[(SMALL, "chat")]
    assert small.point.requests_per_s == pytest.approx((0.1 + 0.6, 0.2 + 1.2))
    rs = applied.shares[small.key]
    assert rs.added == pytest.approx(1.2 * 675 / (1.2 * (675 + 125)))


def test_shares_that_do_not_fit_the_fleet_are_not_applied_and_say_why():
    flows = (_flow(BIG, "chat", 1000.0),)
    out, applied = route_forecasts(flows, _snapshot(routing=False), SHARES)
    assert out == flows and "no spec.routing" in applied.message
    other = RouterShares(
        (TierShares("chat", BIG, (RouteShare(BIG, 0.5, 0.5, 0.5), RouteShare("x", 0.5, 0.5, 0.5))),)
    )
    out, applied = route_forecasts(flows, _snapshot(), other)
    assert [f.key.model for f in out] == [BIG]
    assert out[0].point.requests_per_s == pytest.approx(flows[0].point.requests_per_s)
    assert "x not among spec.routing.candidates, its 50% stays on big" in applied.message
    wrong = RouterShares((TierShares("chat", SMALL, (RouteShare(SMALL, 1, 1, 1),)),))
    assert "referenceModel is big" in route_forecasts(flows, _snapshot(), wrong)[1].message


def test_no_shares_leave_the_demand_as_it_is():
    d = Demand((_flow(BIG, "chat", 1.0),), "history", "1 flow")
    assert route_demand(d, _snapshot(), None) is d
    routed = route_demand(d, _snapshot(), SHARES)
    assert routed.routing is not None and "router shares applied to tier(s) chat" in routed.message


def _replicas(result: Any, model: str) -> int:
    assert result.planned, result.failure
    return sum(r.replicas for r in result.spec.replicas if r.model == model)


def test_a_cycle_with_shares_plans_fewer_reference_replicas_and_says_why():
    snap, pol = _snapshot(), _policy()
    plain = cycle(pol, snap)
    routed = cycle(pol, snap, router_shares=SHARES)
    assert _replicas(routed, BIG) < _replicas(plain, BIG)
    assert _replicas(routed, SMALL) > _replicas(plain, SMALL)
    assert not plain.routing and "routing" not in plain.spec.solver.message
    cells = {(c.model, c.region): c for c in routed.routing}
    small = cells[(SMALL, "r1")]
    assert small.routed_replicas == pytest.approx(_replicas(routed, SMALL))  # all routed
    assert cells[(BIG, "r1")].saved_replicas > 0
    assert "exist because of routing" in routed.spec.solver.message
    # explain says it, from the same instance the cycle planned
    assert routed.demand is not None and routed.demand.routing is not None
    inst = from_snapshot(snap, list(routed.demand.forecasts), CurrentState(), pol)
    assert routed_replicas(routed.plan, inst, routed.demand.routing.shares) == routed.routing
    text = explain(routed.plan, inst, routing=routed.demand.routing.shares)
    assert f"- {SMALL} @ r1:" in text
    assert "of these replicas exist because of routing" in text
    assert "more replica(s) would be needed here without routing" in text
    assert text.splitlines()[-1].startswith("routing: ")
    assert "routing" not in explain(routed.plan, inst)
