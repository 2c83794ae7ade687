"""The routing table of a plan and the JSON document gateways read.

A :class:`~llmfleet.api.plan.FleetPlanSpec` carries, per (model, tier, origin region), the
share of requests each serving region gets. This module turns that into

1. integer weights per serving region (:func:`~llmfleet.routing.weights.integer_weights`,
   sum ``total``, a positive fraction never rounds to 0), one :class:`RouteEntry` per
   (model, tier, origin) with at least one positive fraction;
2. the tenants whose requests match each entry by tenant header (tenants of that tier that
   may use the model: ``spec.models`` empty or containing it);
3. a versioned JSON document (``apiVersion: llmfleet.dev/routing/v1``) with sorted keys and
   fractions rounded to 6 decimals, so the same plan always gives the same bytes (the
   ConfigMap only changes when routing does). It carries nothing that changes between
   plans with equal routing (no timestamps, no input digest).

Rules without demand (no positive weight) are dropped: the gateway's default applies.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmfleet.api.plan import FleetPlanSpec
from llmfleet.api.tenant import TenantQuota
from llmfleet.routing.weights import DEFAULT_TOTAL, integer_weights

ROUTING_API_VERSION = "llmfleet.dev/routing/v1"
MODEL_HEADER = "x-gateway-model-name"
"""Header carrying the OpenAI ``model`` of a request; set by a body-based router (the
Gateway API Inference Extension's body-based routing writes this name)."""
ORIGIN_HEADER = "x-origin-region"
"""Header carrying the origin region, needed only where one gateway serves several regions
(the load generator and the gateway metrics' `origin_region` label use the same name)."""


@dataclass(frozen=True)
class RouteEntry:
    """Where requests of one (model, tier) from one origin go."""

    model: str
    tier: str
    origin: str
    weights: tuple[tuple[str, int], ...]
    """(serving region, integer weight), sorted by region; weights sum to the table total."""
    fractions: tuple[tuple[str, float], ...]
    """(serving region, the plan's fraction), sorted by region."""
    tenants: tuple[str, ...] = ()
    """Tenant ids of this tier allowed on this model (matched by tenant header)."""

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(r for r, _ in self.weights)


@dataclass(frozen=True)
class RoutingTable:
    """Every route of one plan, sorted by (model, origin, tier)."""

    entries: tuple[RouteEntry, ...]
    total: int = DEFAULT_TOTAL

    def models(self) -> tuple[str, ...]:
        return tuple(sorted({e.model for e in self.entries}))

    def for_model(self, model: str) -> tuple[RouteEntry, ...]:
        return tuple(e for e in self.entries if e.model == model)

    def serving_regions(self, model: str) -> tuple[str, ...]:
        return tuple(sorted({r for e in self.for_model(model) for r in e.regions}))


def _tenants_by_tier_model(
    tenants: Iterable[TenantQuota],
) -> Mapping[str, list[tuple[str, frozenset[str]]]]:
    out: dict[str, list[tuple[str, frozenset[str]]]] = defaultdict(list)
    for t in tenants:
        out[t.spec.tier].append((t.spec.tenant_id, frozenset(t.spec.models)))
    return out


def routing_table(
    plan: FleetPlanSpec,
    tenants: Iterable[TenantQuota] = (),
    total: int = DEFAULT_TOTAL,
) -> RoutingTable:
    """The routing table of ``plan`` (rules with the same key are summed)."""
    fractions: dict[tuple[str, str, str], dict[str, float]] = defaultdict(
        lambda: defaultdict(float)
    )
    for rule in plan.routing:
        for w in rule.weights:
            fractions[(rule.model, rule.tier, rule.origin)][w.region] += w.fraction
    by_tier = _tenants_by_tier_model(tenants)
    entries = []
    for (model, tier, origin), fr in fractions.items():
        weights = integer_weights(fr, total)
        if not weights:
            continue
        allowed = sorted(
            {tid for tid, models in by_tier.get(tier, []) if not models or model in models}
        )
        entries.append(
            RouteEntry(
                model=model,
                tier=tier,
                origin=origin,
                weights=tuple(sorted(weights.items())),
                fractions=tuple(sorted((r, f) for r, f in fr.items() if f > 0)),
                tenants=tuple(allowed),
            )
        )
    entries.sort(key=lambda e: (e.model, e.origin, e.tier))
    return RoutingTable(entries=tuple(entries), total=total)


def routing_document(
    table: RoutingTable,
    *,
    policy: str,
    tier_header: str,
    tenant_header: str,
    served_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole routing policy as one JSON-ready mapping (schema ``llmfleet.dev/routing/v1``):

    ``{"apiVersion", "policy", "weightTotal", "headers": {model, tier, tenant, origin},
    "models": {model: {"servedModelName", "routes": [{"origin", "tier", "tenants",
    "weights": {region: int}, "fractions": {region: float}}]}}}``.
    """
    served = served_names or {}
    models: dict[str, Any] = {}
    for model in table.models():
        models[model] = {
            "servedModelName": served.get(model, model),
            "routes": [
                {
                    "origin": e.origin,
                    "tier": e.tier,
                    "tenants": list(e.tenants),
                    "weights": dict(e.weights),
                    "fractions": {r: round(f, 6) for r, f in e.fractions},
                }
                for e in table.for_model(model)
            ],
        }
    return {
        "apiVersion": ROUTING_API_VERSION,
        "policy": policy,
        "weightTotal": table.total,
        "headers": {
            "model": MODEL_HEADER,
            "tier": tier_header,
            "tenant": tenant_header,
            "origin": ORIGIN_HEADER,
        },
        "models": models,
    }


def routing_json(document: Mapping[str, Any]) -> str:
    """Stable text of a routing document: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, sort_keys=True, indent=2) + "\n"
