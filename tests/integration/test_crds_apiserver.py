"""The generated CRDs in a real kube-apiserver: install, samples, rejections, columns."""

from __future__ import annotations

import copy

import pytest

from llmfleet.api import API_VERSION, BY_KIND, KINDS
from llmfleet.api.loading import ManifestError, parse_object
from llmfleet.kube.client import Cluster, KubeError
from support.builders import BAD_CASES, BadCase, all_samples


def _in(namespace: str, doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    if BY_KIND[doc["kind"]].info.scope == "Namespaced":
        doc["metadata"]["namespace"] = namespace
    return doc


def test_all_crds_are_established_and_in_the_category(cluster: Cluster, crds):
    groups = cluster.raw_get(f"/apis/{API_VERSION}")
    served = {r["name"]: r for r in groups["resources"]}
    for kind in KINDS:
        res = served[kind.info.plural]
        assert res["kind"] == kind.info.kind
        assert "llmfleet" in res.get("categories", [])
        assert set(kind.info.short_names) <= set(res.get("shortNames", []))
        assert res["namespaced"] == (kind.info.scope == "Namespaced")
        assert f"{kind.info.plural}/status" in served


def test_every_sample_applies_and_round_trips_losslessly(cluster: Cluster, namespace: str):
    for sample_doc in all_samples():
        doc = _in(namespace, sample_doc)
        kind = BY_KIND[doc["kind"]]
        if kind.info.scope == "Cluster":
            doc["metadata"]["name"] = f"{doc['metadata']['name']}-{namespace}"
            doc["spec"].pop("latencies", None)
        typed = kind.from_wire(doc)
        cluster.apply(typed.to_wire())
        stored = cluster.get(API_VERSION, kind.info.kind, typed.name, namespace)
        assert stored is not None
        back = kind.from_wire(stored)
        assert back.spec == typed.spec, f"{kind.info.kind} {typed.name} changed in the apiserver"
        assert back.to_wire()["spec"] == typed.to_wire()["spec"]


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.id)
def test_bad_cr_is_rejected_with_a_message_naming_the_field(
    cluster: Cluster, namespace: str, case: BadCase
):
    doc = _in(namespace, case.manifest())
    with pytest.raises(KubeError) as err:
        cluster.create(doc)
    text = str(err.value)
    assert err.value.status == 422, text
    assert case.field in text, text
    assert case.message.lower() in text.lower(), text


def test_printer_columns_show_the_numbers(cluster: Cluster, namespace: str):
    tier = _in(
        namespace, next(d for d in all_samples() if d["metadata"]["name"] == "interactive-fast")
    )
    cluster.apply(tier)
    table = cluster.table(API_VERSION, "slatiers", namespace)
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:6] == ["Name", "Type", "TTFT-p95", "Deadline-s", "Priority", "Spot"]
    row = next(r["cells"] for r in table["rows"] if r["cells"][0] == "interactive-fast")
    assert row[1:6] == ["interactive", 1, None, 300, False]


def test_status_is_a_subresource(cluster: Cluster, namespace: str):
    tier = _in(namespace, next(d for d in all_samples() if d["metadata"]["name"] == "batch"))
    tier["status"] = {"attainment": 0.5}
    cluster.apply(tier)
    stored = cluster.get(API_VERSION, "SLATier", "batch", namespace)
    assert "attainment" not in (stored.get("status") or {})


MINIMAL = [
    ("FleetPolicy", {}),
    ("TenantQuota", {"tenantId": "minimal", "tier": "batch"}),
    ("SLATier", {"type": "interactive", "interactive": {"ttftP95Seconds": 2}}),
    (
        "Region",
        {
            "location": "x",
            "pools": [
                {
                    "name": "p",
                    "gpuType": "L4",
                    "gpusPerNode": 1,
                    "pricePerNodeHour": 1,
                    "maxNodes": 2,
                }
            ],
        },
    ),
]


@pytest.mark.parametrize(("kind", "spec"), MINIMAL, ids=[k for k, _ in MINIMAL])
def test_objects_with_every_optional_field_omitted_are_accepted_by_both(
    cluster: Cluster, namespace: str, kind: str, spec: dict
):
    """The CEL rules guard what they read: no ``no such key: horizon``/``origins``."""
    name = f"minimal-{namespace}"
    doc = _in(
        namespace,
        {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec},
    )
    parse_object(doc)  # what `llmfleet validate` runs
    created = cluster.create(doc)
    assert created["metadata"]["name"] == name


def _model_runtime(**runtime) -> dict:
    doc = next(d for d in all_samples() if d["kind"] == "LLMModel")
    doc["spec"]["runtime"].update(runtime)
    return doc


def _policy(**prometheus) -> dict:
    doc = next(d for d in all_samples() if d["kind"] == "FleetPolicy")
    doc["spec"]["prometheus"].update(prometheus)
    return doc


def _named(kind: str, name: str) -> dict:
    doc = next(d for d in all_samples() if d["kind"] == kind)
    doc["metadata"]["name"] = name
    return doc


BOUNDS = [
    ("dotted-model-name", _named("LLMModel", "evil.model"), "metadata.name", "should match"),
    ("long-tier-name", _named("SLATier", "t" * 64), "metadata.name", "63"),
    ("long-policy-name", _named("FleetPolicy", "p" * 49), "metadata.name", "48"),
    ("empty-image", _model_runtime(image=""), "spec.runtime.image", ""),
    ("bad-image", _model_runtime(image="vllm/vllm openai:1"), "spec.runtime.image", "should match"),
    ("empty-env-name", _model_runtime(env=[{"name": ""}]), "spec.runtime.env[0].name", ""),
    (
        "bad-env-name",
        _model_runtime(env=[{"name": "1X"}]),
        "spec.runtime.env[0].name",
        "should match",
    ),
    ("huge-arg", _model_runtime(args=["x" * 1_000_000]), "spec.runtime.args[0]", "4096"),
    ("many-args", _model_runtime(args=["-x"] * 65), "spec.runtime.args", "64"),
    ("url-without-host", _policy(url="http:///x"), "spec.prometheus.url", "should match"),
    ("url-not-http", _policy(url="file:///etc/passwd"), "spec.prometheus.url", "should match"),
    (
        "query-two-statements",
        _policy(queries={"running": "up; up"}),
        "spec.prometheus.queries.running",
        "no ';'",
    ),
    (
        "query-unbalanced",
        _policy(queries={"waiting": "sum(vllm:num_requests_waiting"}),
        "spec.prometheus.queries.waiting",
        "as many ')' as '('",
    ),
    ("query-empty", _policy(queries={"requests": ""}), "spec.prometheus.queries.requests", ""),
    (
        "decimal-integer",
        {**_named("FleetPolicy", "dec"), "spec": {"intervalSeconds": 900.0}},
        "spec.intervalSeconds",
        "integer",
    ),
]


@pytest.mark.parametrize(
    ("doc", "field", "says"), [b[1:] for b in BOUNDS], ids=[b[0] for b in BOUNDS]
)
def test_bounds_are_enforced_by_the_apiserver_naming_the_field(
    cluster: Cluster, namespace: str, doc: dict, field: str, says: str
):
    doc = _in(namespace, doc)
    with pytest.raises(ManifestError) as offline:
        parse_object(doc)  # what `llmfleet validate` runs: it rejects it too, naming the field
    assert field in str(offline.value), offline.value
    with pytest.raises(KubeError) as err:
        cluster.create(doc)
    text = str(err.value)
    assert err.value.status == 422, text
    assert field in text and says in text, text
