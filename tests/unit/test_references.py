"""Cross-object reference checks (pure)."""

from __future__ import annotations

from llmfleet.api.loading import parse_object, snapshot_of
from llmfleet.api.references import ObjectKey, check_references
from support.builders import all_samples, sample


def _snapshot(docs, namespace="llmfleet"):
    return snapshot_of(parse_object(d, namespace) for d in docs)


def _problems(docs, kind, name, namespace="llmfleet"):
    ns = None if kind == "Region" else namespace
    return check_references(_snapshot(docs))[ObjectKey(kind, ns, name)]


def test_samples_are_consistent():
    result = check_references(_snapshot(all_samples()))
    assert len(result) == 22
    assert all(v == [] for v in result.values())


def test_tenant_naming_unknown_tier_model_and_region():
    docs = all_samples()
    t = next(d for d in docs if d["metadata"]["name"] == "acme-chat")
    t["spec"]["tier"] = "gold"
    t["spec"]["models"] = ["llama-3-1-8b", "gpt-9"]
    t["spec"]["origins"] = [{"region": "mars-1", "fraction": 1.0}]
    reasons = {p.reason: p.message for p in _problems(docs, "TenantQuota", "acme-chat")}
    assert set(reasons) == {"UnknownSLATier", "UnknownLLMModel", "UnknownRegion"}
    assert "'gold'" in reasons["UnknownSLATier"] and "spec.tier" in reasons["UnknownSLATier"]
    assert "'gpt-9'" in reasons["UnknownLLMModel"]


def test_model_profile_for_gpu_type_no_region_has():
    docs = all_samples()
    m = next(d for d in docs if d["metadata"]["name"] == "llama-3-1-8b")
    m["spec"]["profiles"].append(
        {
            "gpuType": "B200",
            "gpusPerReplica": 1,
            "prefillTokensPerSecond": 50000,
            "decodeTokensPerSecond": 9000,
        }
    )
    probs = _problems(docs, "LLMModel", "llama-3-1-8b")
    assert [p.reason for p in probs] == ["UnknownGPUType"]
    assert "B200" in probs[0].message


def test_model_that_fits_nowhere_is_unplaceable():
    docs = [sample("Region"), sample("LLMModel")]
    docs[1]["spec"]["profiles"] = [
        {
            "gpuType": "L4",
            "gpusPerReplica": 1,
            "prefillTokensPerSecond": 5000,
            "decodeTokensPerSecond": 900,
        }
    ]
    assert {p.reason for p in _problems(docs, "LLMModel", docs[1]["metadata"]["name"])} == {
        "UnknownGPUType",
        "Unplaceable",
    }


def test_references_are_namespaced():
    tier = sample("SLATier", "interactive-fast")
    tier["metadata"]["namespace"] = "other"
    tenant = sample("TenantQuota", "acme-chat")
    tenant["spec"]["models"] = []
    tenant["spec"]["origins"] = []
    probs = _problems([tier, tenant], "TenantQuota", "acme-chat")
    assert [p.reason for p in probs] == ["UnknownSLATier"]


def test_region_latency_to_unknown_region():
    r = sample("Region", "us-east")
    probs = _problems([r], "Region", "us-east")
    assert {p.reason for p in probs} == {"UnknownRegion"}
