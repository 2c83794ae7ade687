"""The generated CRDs in a real kube-apiserver: install, samples, rejections, columns."""

from __future__ import annotations

import copy

import pytest

from llmfleet.api import API_VERSION, BY_KIND, KINDS
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
