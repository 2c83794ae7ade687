"""The routing table and its JSON document."""

from __future__ import annotations

import json

from llmfleet.api.tenant import TenantQuota
from llmfleet.routing import ROUTING_API_VERSION, routing_document, routing_json, routing_table
from support.builders import sample
from support.plans import fleet_plan


def _plan():
    return fleet_plan(
        routing={
            ("llama", "fast", "us-east"): {"us-east": 0.7, "eu-west": 0.3},
            ("llama", "batch", "us-east"): {"eu-west": 1.0},
            ("llama", "fast", "eu-west"): {"eu-west": 0.0},
            ("mistral", "fast", "eu-west"): {"eu-west": 0.5, "us-east": 0.4999},
        }
    )


def test_entries_are_sorted_weighted_and_drop_empty_flows():
    t = routing_table(_plan(), total=100)
    keys = [(e.model, e.origin, e.tier) for e in t.entries]
    assert keys == [
        ("llama", "us-east", "batch"),
        ("llama", "us-east", "fast"),
        ("mistral", "eu-west", "fast"),
    ]
    assert dict(t.entries[1].weights) == {"eu-west": 30, "us-east": 70}
    assert dict(t.entries[2].weights) == {"eu-west": 50, "us-east": 50}
    assert t.serving_regions("llama") == ("eu-west", "us-east")
    assert t.models() == ("llama", "mistral")


def test_tenants_of_the_tier_that_may_use_the_model():
    doc = sample("TenantQuota")
    tq = []
    for tid, tier, models in [
        ("acme", "fast", []),
        ("bob", "fast", ["mistral"]),
        ("c", "batch", []),
    ]:
        d = json.loads(json.dumps(doc))
        d["metadata"] = {"name": tid, "namespace": "x"}
        d["spec"].update(tenantId=tid, tier=tier, models=models)
        tq.append(TenantQuota.from_wire(d))
    t = routing_table(_plan(), tenants=tq)
    by = {(e.model, e.tier): e.tenants for e in t.entries}
    assert by[("llama", "fast")] == ("acme",)
    assert by[("mistral", "fast")] == ("acme", "bob")
    assert by[("llama", "batch")] == ("c",)


def test_document_is_versioned_stable_and_complete():
    t = routing_table(_plan())
    doc = routing_document(
        t,
        policy="p",
        tier_header="x-tier",
        tenant_header="x-tenant",
        served_names={"llama": "meta/L"},
    )
    assert doc["apiVersion"] == ROUTING_API_VERSION
    assert doc["headers"]["tier"] == "x-tier"
    assert doc["models"]["llama"]["servedModelName"] == "meta/L"
    assert doc["models"]["mistral"]["servedModelName"] == "mistral"
    route = doc["models"]["llama"]["routes"][1]
    assert route["weights"] == {"eu-west": 300, "us-east": 700}
    assert route["fractions"] == {"eu-west": 0.3, "us-east": 0.7}
    text = routing_json(doc)
    assert json.loads(text) == doc
    # same plan, rules in another order -> same bytes
    plan = _plan()
    shuffled = plan.model_copy(update={"routing": list(reversed(plan.routing))})
    again = routing_document(
        routing_table(shuffled),
        policy="p",
        tier_header="x-tier",
        tenant_header="x-tenant",
        served_names={"llama": "meta/L"},
    )
    assert routing_json(again) == text
