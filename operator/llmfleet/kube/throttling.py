"""Publish the per-tenant throttling policy: ingress rate limits, a ConfigMap, TenantQuota status.

From one cycle's :class:`~llmfleet.fairness.limits.LimitTable` this renders

1. a ConfigMap (``spec.ingress.throttlingConfigMap``, default ``llmfleet-throttling``) holding
   the whole table as versioned JSON (``apiVersion: llmfleet.dev/throttling/v1``; sorted keys,
   rounded figures, no timestamps, so an unchanged table writes the same bytes);
2. one Envoy Gateway ``BackendTrafficPolicy`` per namespace of the FleetPolicy's Gateways
   (``spec.ingress.parentRefs`` of kind Gateway) with **global** rate-limit rules keyed by the
   tenant header (``spec.ingress.tenantHeader``):

   * an interaction rule per tenant: ``ceil(60 * rps / calls_per_interaction)`` first calls
     per minute;
   * where Envoy AI Gateway is present (its API group is served, or ``token_costs=True``), a
     token rule per tenant: ``ceil(60 * tokens_per_second / calls_per_interaction)`` tokens
     per minute of first calls, charged from the response's token usage (AI Gateway's
     ``io.envoy.ai_gateway`` metadata; the request itself costs 0);

   both match only *first* calls: a request whose ``x-llmfleet-call-index`` header is a
   positive number (a later call of an interaction already under way, set by a trusted
   component in front of the tenant) is never limited, so each first call stands for its
   whole interaction. At most 256 rules fit a policy; throttled tenants come first and the
   tenants left out are returned;
3. each TenantQuota's status: ``limits``, ``usageTokensPerSecond``, ``throttled`` and a
   ``Throttling`` condition (``True``/``Active`` while the tenant's limit bites, ``False``
   with the problem when its quota cannot be honoured by the plan).

The ConfigMap and the BackendTrafficPolicies carry ``app.kubernetes.io/managed-by=llmfleet``
and ``llmfleet.dev/component=throttling``; an object of their name without those labels is
not llmfleet's and is not written (an error of target ``throttling``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmfleet.api import API_VERSION
from llmfleet.api.base import Condition
from llmfleet.api.policy import IngressTarget
from llmfleet.api.tenant import TenantQuota
from llmfleet.fairness.limits import LimitTable, TenantTotals
from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.errors import ActuationError, check_owned
from llmfleet.kube.render import component_labels, render_config_map

THROTTLING_API_VERSION = "llmfleet.dev/throttling/v1"
CALL_INDEX_HEADER = "x-llmfleet-call-index"
"""0 (or absent) for the first call of an interaction, 1, 2, ... for the later ones."""
AI_GATEWAY_GROUP = "aigateway.envoyproxy.io"
AI_GATEWAY_METADATA_NAMESPACE = "io.envoy.ai_gateway"
AI_GATEWAY_TOKEN_KEY = "llm_total_token"
"""The metadata key an AIGatewayRoute's ``llmRequestCosts`` (type TotalToken) writes."""
BTP_API_VERSION = "gateway.envoyproxy.io/v1alpha1"
BTP_NAME = "llmfleet-throttling"
MAX_RULES = 256
CONDITION = "Throttling"
COMPONENT = "throttling"
THROTTLING_KEY = "throttling.json"


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def throttling_document(table: LimitTable, *, policy: str, tenant_header: str) -> dict[str, Any]:
    """(1) The whole table as a JSON-ready dict."""
    pools: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in table.pools:
        pools[p.tenant].append(
            {
                "model": p.model,
                "region": p.region,
                "tokensPerSecond": _r(p.tokens_per_second),
                "requestsPerSecond": _r(p.requests_per_second, 4),
                "burstTokens": _r(p.burst_tokens, 1),
                "maxConcurrency": p.max_concurrency,
                "entitlementTokensPerSecond": _r(p.entitlement),
                "allocationTokensPerSecond": _r(p.allocation),
                "guaranteeTokensPerSecond": _r(p.guarantee),
                "usageTokensPerSecond": _r(p.demand),
                "weight": p.weight,
                "overloaded": p.overloaded,
                "throttled": p.throttled,
            }
        )
    tenants = {
        t.tenant: {
            "tier": t.tier,
            "tokensPerSecond": t.limits.tokens_per_second,
            "requestsPerSecond": t.limits.requests_per_second,
            "burstTokens": t.limits.burst_tokens,
            "maxConcurrency": t.limits.max_concurrency,
            "usageTokensPerSecond": t.usage_tokens_per_second,
            "callsPerInteraction": t.calls_per_interaction,
            "throttled": t.throttled,
            "enforced": t.enforced,
            "problems": list(t.problems),
            "pools": sorted(pools[t.tenant], key=lambda d: (d["model"], d["region"])),
        }
        for t in table.tenants
    }
    return {
        "apiVersion": THROTTLING_API_VERSION,
        "policy": policy,
        "headers": {"tenant": tenant_header, "callIndex": CALL_INDEX_HEADER},
        "overloaded": [
            {"model": m, "region": r, "tier": t} for (m, r, t) in sorted(table.overloaded)
        ],
        "tenants": tenants,
    }


def render_throttling_config_map(
    table: LimitTable, *, namespace: str, policy: str, ingress: IngressTarget
) -> dict[str, Any]:
    """(1) The ConfigMap ``spec.ingress.throttlingConfigMap`` holding the table."""
    doc = throttling_document(table, policy=policy, tenant_header=ingress.tenant_header)
    return render_config_map(
        ingress.throttling_config_map,
        namespace,
        {THROTTLING_KEY: json.dumps(doc, sort_keys=True, indent=1)},
        component=COMPONENT,
    )


def _selector(tenant_header: str, tenant: str) -> dict[str, Any]:
    return {
        "headers": [
            {"name": tenant_header, "type": "Exact", "value": tenant, "invert": False},
            {
                "name": CALL_INDEX_HEADER,
                "type": "RegularExpression",
                "value": "[1-9][0-9]*",
                "invert": True,
            },
        ]
    }


def rate_limit_rules(
    tenants: Sequence[TenantTotals], *, tenant_header: str, token_costs: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """(2) The global rules of the tenants whose limits are enforced, throttled tenants first;
    returns (rules, tenants left out). A tenant whose limits do not bite gets no rule."""
    ordered = sorted((t for t in tenants if t.enforced), key=lambda t: (not t.throttled, t.tenant))
    per = 2 if token_costs else 1
    rules: list[dict[str, Any]] = []
    left_out: list[str] = []
    for t in ordered:
        if len(rules) + per > MAX_RULES:
            left_out.append(t.tenant)
            continue
        calls = max(1.0, t.calls_per_interaction)
        sel = _selector(tenant_header, t.tenant)
        rules.append(
            {
                "clientSelectors": [sel],
                "limit": {
                    "requests": max(1, math.ceil(60 * t.limits.requests_per_second / calls)),
                    "unit": "Minute",
                },
            }
        )
        if token_costs:
            rules.append(
                {
                    "clientSelectors": [sel],
                    "limit": {
                        "requests": max(1, math.ceil(60 * t.limits.tokens_per_second / calls)),
                        "unit": "Minute",
                    },
                    "cost": {
                        "request": {"from": "Number", "number": 0},
                        "response": {
                            "from": "Metadata",
                            "metadata": {
                                "namespace": AI_GATEWAY_METADATA_NAMESPACE,
                                "key": AI_GATEWAY_TOKEN_KEY,
                            },
                        },
                    },
                }
            )
    return rules, sorted(left_out)


def render_policies(
    table: LimitTable, *, namespace: str, ingress: IngressTarget, token_costs: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """(2) One BackendTrafficPolicy per namespace of the Gateways; (objects, tenants left out)."""
    gateways: dict[str, list[str]] = defaultdict(list)
    for ref in ingress.parent_refs:
        if ref.kind == "Gateway" and ref.group == "gateway.networking.k8s.io":
            gateways[ref.namespace or namespace].append(ref.name)
    if not gateways or not table.tenants:
        return [], []
    rules, left_out = rate_limit_rules(
        table.tenants, tenant_header=ingress.tenant_header, token_costs=token_costs
    )
    out = []
    for ns, names in sorted(gateways.items()):
        out.append(
            {
                "apiVersion": BTP_API_VERSION,
                "kind": "BackendTrafficPolicy",
                "metadata": {
                    "name": BTP_NAME,
                    "namespace": ns,
                    "labels": component_labels(COMPONENT),
                },
                "spec": {
                    "targetRefs": [
                        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": n}
                        for n in sorted(set(names))
                    ],
                    "rateLimit": {"global": {"rules": rules}},
                },
            }
        )
    return out, left_out


def condition_for(t: TenantTotals | None, now: datetime, generation: int | None) -> Condition:
    """(3) The ``Throttling`` condition of one tenant."""
    if t is None:
        status, reason, msg = "False", "NotPlanned", "the tenant has no limits this cycle"
    elif t.problems:
        status, reason, msg = "False", "QuotaNotHonoured", "; ".join(t.problems)
    elif t.throttled:
        status, reason = "True", "Active"
        msg = (
            f"overloaded: limited to {t.limits.tokens_per_second:.0f} tokens/s "
            f"(using {t.usage_tokens_per_second:.0f})"
        )
    else:
        status, reason = "False", "NotOverloaded"
        msg = f"limit {t.limits.tokens_per_second:.0f} tokens/s does not bite"
    return Condition(
        type=CONDITION,
        status=status,
        reason=reason,
        message=msg,
        last_transition_time=now,
        observed_generation=generation,
    )


def render_status(quota: TenantQuota, table: LimitTable, now: datetime) -> dict[str, Any]:
    """(3) The status apply body for one TenantQuota."""
    t = table.tenant(quota.spec.tenant_id)
    gen = quota.metadata.generation
    cond = condition_for(t, now, gen).to_wire()
    old = quota.status.condition(CONDITION) if quota.status else None
    if old is not None and old.status == cond["status"]:
        cond["lastTransitionTime"] = old.to_wire()["lastTransitionTime"]
    status: dict[str, Any] = {"conditions": [cond]}
    if t is not None:
        status["limits"] = t.limits.to_wire()
        status["usageTokensPerSecond"] = t.usage_tokens_per_second
        status["throttled"] = t.throttled
    return {
        "apiVersion": API_VERSION,
        "kind": "TenantQuota",
        "metadata": {"name": quota.name, "namespace": quota.namespace},
        "status": status,
    }


def ai_gateway_present(cluster: Cluster) -> bool:
    """Whether Envoy AI Gateway's API group is served (its CRDs are installed)."""
    try:
        cluster.raw_get(f"/apis/{AI_GATEWAY_GROUP}")
    except KubeError as err:
        if err.status == 404:
            return False
        raise
    return True


@dataclass(frozen=True)
class Publication:
    config_map: dict[str, Any]
    policies: tuple[dict[str, Any], ...]
    statuses: tuple[dict[str, Any], ...]
    left_out: tuple[str, ...]
    """Tenants without an ingress rule (more than 256 rules)."""
    errors: tuple[ActuationError, ...] = ()
    """Typed failures (region ``""``: the operator's cluster; target ``throttling``; the
    object's name); ``str(e)`` is the apiserver's message as before."""


def publish_throttling(
    cluster: Cluster,
    table: LimitTable,
    quotas: Iterable[TenantQuota],
    *,
    namespace: str,
    policy: str,
    ingress: IngressTarget,
    now: datetime,
    token_costs: bool | None = None,
) -> Publication:
    """Apply the ConfigMap, the BackendTrafficPolicies and every TenantQuota's status.

    ``token_costs=None`` detects Envoy AI Gateway. A failure on one object (or an object of
    that name that is not llmfleet's, which is never written) is recorded in ``errors`` and
    the rest are still written.
    """
    if token_costs is None:
        token_costs = ai_gateway_present(cluster)
    cm = render_throttling_config_map(table, namespace=namespace, policy=policy, ingress=ingress)
    btps, left_out = render_policies(
        table, namespace=namespace, ingress=ingress, token_costs=token_costs
    )
    statuses = [render_status(q, table, now) for q in quotas]
    errors: list[ActuationError] = []
    for obj in [cm, *btps]:
        meta = obj["metadata"]
        try:
            check_owned(cluster, obj)
            cluster.apply(obj)
        except KubeError as err:
            errors.append(ActuationError("", "throttling", meta["name"], str(err)))
    for st in statuses:
        try:
            cluster.apply(st, subresource="status")
        except KubeError as err:
            errors.append(ActuationError("", "throttling", st["metadata"]["name"], str(err)))
    return Publication(cm, tuple(btps), tuple(statuses), tuple(left_out), tuple(errors))

