"""The kopf operator marks objects Valid / not Valid in status, with Events, and survives bad input."""

from __future__ import annotations

import copy

from conftest import wait_for
from llmfleet.api import API_VERSION, BY_KIND
from llmfleet.kube.client import Cluster
from support.builders import all_samples, sample


def _valid(cluster: Cluster, kind: str, name: str, namespace: str | None):
    obj = cluster.get(API_VERSION, kind, name, namespace)
    for c in (obj or {}).get("status", {}).get("conditions", []):
        if c["type"] == "Valid":
            return c
    return None


def _wait_valid(cluster: Cluster, kind: str, name: str, namespace: str | None, status: str) -> dict:
    """Wait until the object's Valid condition has ``status``; return the condition."""
    return wait_for(
        lambda: (c := _valid(cluster, kind, name, namespace)) and c["status"] == status and c,
        what=f"{kind} {name} Valid={status}",
    )


def _events(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    return [
        e for e in cluster.list("v1", "Event", namespace) if e["involvedObject"]["name"] == name
    ]


def _apply(cluster: Cluster, doc: dict, namespace: str) -> dict:
    doc = copy.deepcopy(doc)
    if BY_KIND[doc["kind"]].info.scope == "Namespaced":
        doc["metadata"]["namespace"] = namespace
    return cluster.apply(doc)


def test_samples_become_valid(cluster: Cluster, namespace: str, operator):
    for doc in all_samples():
        _apply(cluster, doc, namespace)
    for doc in all_samples():
        kind, name = doc["kind"], doc["metadata"]["name"]
        ns = None if BY_KIND[kind].info.scope == "Cluster" else namespace
        cond = wait_for(
            lambda kind=kind, name=name, ns=ns: _valid(cluster, kind, name, ns),
            what=f"{kind} {name} Valid condition",
        )
        assert cond["status"] == "True", cond
    region = cluster.get(API_VERSION, "Region", "us-east")
    status = region["status"]
    assert status["poolCount"] == 4
    assert status["maxGpus"] == 8 * (16 + 16 + 24 + 24)
    assert status["gpus"] == 8  # one A100 on-demand node is the floor
    assert status["observedGeneration"] == region["metadata"]["generation"]


def test_unknown_tier_is_reported_then_resolved(cluster: Cluster, namespace: str, operator):
    tenant = sample("TenantQuota", "acme-chat")
    tenant["spec"]["tier"] = "platinum"
    tenant["spec"]["models"] = []
    _apply(cluster, tenant, namespace)
    cond = _wait_valid(cluster, "TenantQuota", "acme-chat", namespace, "False")
    assert cond["reason"] == "UnknownSLATier"
    assert "spec.tier" in cond["message"] and "'platinum'" in cond["message"]
    warning = wait_for(
        lambda: [e for e in _events(cluster, namespace, "acme-chat") if e["type"] == "Warning"],
        what="a Warning event",
    )
    assert warning[0]["reason"] == "UnknownSLATier"

    tier = sample("SLATier", "interactive-fast")
    tier["metadata"]["name"] = "platinum"
    _apply(cluster, tier, namespace)
    cond = _wait_valid(cluster, "TenantQuota", "acme-chat", namespace, "True")
    assert cond["reason"] == "ReferencesResolved"
    assert wait_for(
        lambda: [e for e in _events(cluster, namespace, "acme-chat") if e["type"] == "Normal"],
        what="a Normal event",
    )


def test_model_for_a_gpu_type_no_region_has(cluster: Cluster, namespace: str, operator):
    _apply(cluster, sample("Region", "eu-west"), namespace)
    model = sample("LLMModel", "llama-3-1-8b")
    model["metadata"]["name"] = "tiny"
    model["spec"]["profiles"] = [
        {
            "gpuType": "TPU-v5e",
            "gpusPerReplica": 1,
            "prefillTokensPerSecond": 1000,
            "decodeTokensPerSecond": 100,
        }
    ]
    _apply(cluster, model, namespace)
    cond = _wait_valid(cluster, "LLMModel", "tiny", namespace, "False")
    assert cond["reason"] == "UnknownGPUType"
    assert "TPU-v5e" in cond["message"]


def test_operator_survives_a_stream_of_bad_objects(cluster: Cluster, namespace: str, operator):
    for i in range(10):
        tenant = sample("TenantQuota", "initech-search")
        tenant["metadata"]["name"] = f"broken-{i}"
        tenant["spec"]["tier"] = f"nope-{i}"
        tenant["spec"]["models"] = [f"ghost-{i}"]
        tenant["spec"]["origins"] = [{"region": f"atlantis-{i}", "fraction": 1.0}]
        _apply(cluster, tenant, namespace)
    for i in range(10):
        cond = wait_for(
            lambda i=i: (c := _valid(cluster, "TenantQuota", f"broken-{i}", namespace)) and c,
            what=f"broken-{i}",
        )
        assert cond["status"] == "False"
        assert {"UnknownSLATier"} <= {cond["reason"]}
        assert "ghost" in cond["message"] and "atlantis" in cond["message"]
    good = sample("SLATier", "batch")
    _apply(cluster, good, namespace)
    cond = wait_for(
        lambda: _valid(cluster, "SLATier", "batch", namespace), what="a good object after bad ones"
    )
    assert cond["status"] == "True"
    assert operator.alive(), operator.output()[-3000:]
    assert "Traceback" not in operator.output(), operator.output()[-3000:]
