"""The throttling publication in a real apiserver: Envoy Gateway BackendTrafficPolicy (pinned
upstream CRD from the Go module, ``hack/tools.sh crds``), the ConfigMap and TenantQuota status
match the computed table; quotas the plan cannot honour are reported in status."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from llmfleet.api import API_VERSION
from llmfleet.api.policy import IngressTarget, ParentRef
from llmfleet.api.tenant import TenantQuota
from llmfleet.fairness.limits import PoolCapacity, Usage, compute_limits
from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.throttling import (
    BTP_API_VERSION,
    BTP_NAME,
    CALL_INDEX_HEADER,
    publish_throttling,
    throttling_document,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def envoy_crds(cluster: Cluster) -> None:
    out = subprocess.run(
        ["bash", str(ROOT / "hack/tools.sh"), "dir", "envoy-gateway"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    path = Path(out.stdout.strip()) / "gateway.envoyproxy.io_backendtrafficpolicies.yaml"
    assert path.exists(), f"{path} missing: run `bash hack/tools.sh crds`"
    doc = yaml.safe_load(path.read_text())
    cluster.apply(doc)
    cluster.wait_crds_established([doc["metadata"]["name"]])


def _quota(ns: str, tenant: str, weight: float, tier: str = "fast", **budgets: int) -> TenantQuota:
    return TenantQuota.new(
        tenant,
        {
            "tenantId": tenant,
            "tier": tier,
            "weight": weight,
            "budgets": budgets,
            "application": {
                "meanInputTokens": 700,
                "meanOutputTokens": 300,
                "callsPerInteraction": 2 if tenant == "agent" else 1,
            },
        },
        namespace=ns,
    )


def _stored_quotas(cluster: Cluster, quotas: list[TenantQuota]) -> list[TenantQuota]:
    for q in quotas:
        cluster.apply(q.to_wire())
    return [
        TenantQuota.from_wire(cluster.get(API_VERSION, "TenantQuota", q.name, q.namespace) or {})
        for q in quotas
    ]


def test_published_objects_match_the_computed_table(cluster: Cluster, envoy_crds, namespace):
    quotas = _stored_quotas(
        cluster,
        [
            _quota(namespace, "abuser", 1, tokensPerMinute=600_000),
            _quota(namespace, "agent", 2, guaranteedTokensPerMinute=6_000),
            _quota(namespace, "light", 1),
            _quota(namespace, "orphan", 1, tier="gold"),
        ],
    )
    pools = [
        PoolCapacity("llama", "us", "fast", 3000, slots=64),
        PoolCapacity("llama", "eu", "fast", 1000, slots=32),
    ]
    usage = [
        Usage("abuser", "llama", "us", 5000),
        Usage("agent", "llama", "us", 1500),
        Usage("light", "llama", "us", 100),
        Usage("light", "llama", "eu", 50),
    ]
    table = compute_limits(quotas, pools, usage)
    ingress = IngressTarget(parent_refs=[ParentRef(name="gw-a"), ParentRef(name="gw-b")])
    pub = publish_throttling(
        cluster,
        table,
        quotas,
        namespace=namespace,
        policy="default",
        ingress=ingress,
        now=NOW,
        token_costs=True,
    )
    assert pub.errors == ()

    cm = cluster.get("v1", "ConfigMap", "llmfleet-throttling", namespace)
    assert cm is not None
    doc = json.loads(cm["data"]["throttling.json"])
    assert doc == throttling_document(table, policy="default", tenant_header="x-tenant-id")
    assert doc["overloaded"] == [{"model": "llama", "region": "us", "tier": "fast"}]

    btp = cluster.get(BTP_API_VERSION, "BackendTrafficPolicy", BTP_NAME, namespace)
    assert btp is not None
    assert [r["name"] for r in btp["spec"]["targetRefs"]] == ["gw-a", "gw-b"]
    rules = btp["spec"]["rateLimit"]["global"]["rules"]
    assert rules == pub.policies[0]["spec"]["rateLimit"]["global"]["rules"]
    # an interaction rule and a token rule per tenant whose limits are enforced (they bite:
    # throttled on the overloaded pool, or a budget); the others get none
    enforced = [t for t in table.tenants if t.enforced]
    assert enforced and len(enforced) < len(table.tenants)
    assert len(rules) == 2 * len(enforced)
    first = rules[0]  # throttled tenants first: the abuser
    hdrs = first["clientSelectors"][0]["headers"]
    assert hdrs[0] == {
        "name": "x-tenant-id",
        "type": "Exact",
        "value": "abuser",
        "invert": False,
    }
    assert hdrs[1]["name"] == CALL_INDEX_HEADER and hdrs[1]["invert"] is True
    abuser = table.tenant("abuser")
    assert abuser is not None and abuser.throttled
    assert first["limit"] == {
        "requests": -(-int(abuser.limits.requests_per_second * 60e6) // 10**6),
        "unit": "Minute",
    }
    assert rules[1]["cost"]["response"]["metadata"]["namespace"] == "io.envoy.ai_gateway"

    for q in quotas:
        st = (cluster.get(API_VERSION, "TenantQuota", q.name, namespace) or {})["status"]
        t = table.tenant(q.spec.tenant_id)
        assert t is not None
        assert st["limits"] == t.limits.to_wire()
        assert st["usageTokensPerSecond"] == pytest.approx(t.usage_tokens_per_second)
        cond = next(c for c in st["conditions"] if c["type"] == "Throttling")
        if q.spec.tenant_id == "abuser":
            assert (cond["status"], cond["reason"]) == ("True", "Active")
        elif q.spec.tenant_id == "orphan":  # a quota the plan cannot honour is reported
            assert (cond["status"], cond["reason"]) == ("False", "QuotaNotHonoured")
            assert "no planned capacity for tier gold" in cond["message"]
        else:
            assert cond["status"] == "False"

    # Without AI Gateway installed, auto-detection drops the token rules; re-applying is
    # idempotent for the ConfigMap.
    rv = cm["metadata"]["resourceVersion"]
    pub2 = publish_throttling(
        cluster, table, quotas, namespace=namespace, policy="default", ingress=ingress, now=NOW
    )
    assert pub2.errors == ()
    btp2 = cluster.get(BTP_API_VERSION, "BackendTrafficPolicy", BTP_NAME, namespace)
    assert btp2 is not None
    assert len(btp2["spec"]["rateLimit"]["global"]["rules"]) == len(enforced)
    cm2 = cluster.get("v1", "ConfigMap", "llmfleet-throttling", namespace)
    assert cm2 is not None and cm2["metadata"]["resourceVersion"] == rv


def test_bad_quota_specs_are_rejected_or_reported(cluster: Cluster, envoy_crds, namespace):
    bad = _quota(namespace, "greedy", 1).to_wire()  # pydantic would refuse it too
    bad["spec"]["budgets"] = {"tokensPerMinute": 1000, "guaranteedTokensPerMinute": 5000}
    with pytest.raises(KubeError, match="guaranteedTokensPerMinute must be <= tokensPerMinute"):
        cluster.create(bad)
    # valid each on its own, but the guarantees together exceed what the plan provides
    quotas = _stored_quotas(
        cluster,
        [
            _quota(namespace, "g1", 1, guaranteedTokensPerMinute=60_000),
            _quota(namespace, "g2", 1, guaranteedTokensPerMinute=60_000),
        ],
    )
    table = compute_limits(
        quotas,
        [PoolCapacity("llama", "us", "fast", 1500)],
        [Usage("g1", "llama", "us", 900), Usage("g2", "llama", "us", 900)],
    )
    pub = publish_throttling(
        cluster,
        table,
        quotas,
        namespace=namespace,
        policy="default",
        ingress=IngressTarget(),
        now=NOW,
        token_costs=False,
    )
    assert pub.policies == () and pub.errors == ()
    for q in quotas:
        st = (cluster.get(API_VERSION, "TenantQuota", q.name, namespace) or {})["status"]
        cond = next(c for c in st["conditions"] if c["type"] == "Throttling")
        assert cond["reason"] == "QuotaNotHonoured"
        assert "guarantees on llama/us (fast) sum to 2000 tokens/s" in cond["message"]
        assert st["limits"]["tokensPerSecond"] == pytest.approx(750)
