"""Names, images, env names, args, the Prometheus URL and query templates are validated
with bounds in the types, so the CRD schema carries them and both enforcers reject the
same values; errors name the field."""

from __future__ import annotations

from typing import Any

import pytest

from llmfleet.api import BY_KIND, KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.api.loading import ManifestError, parse_object
from llmfleet.api.policy import promql_structure_problem
from support.builders import sample


def _schema(kind: str) -> dict[str, Any]:
    crd = crd_for(BY_KIND[kind])
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _rejected(doc: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(ManifestError) as err:
        parse_object(doc)
    text = str(err.value)
    for f in fragments:
        assert f in text, text
    return text


@pytest.mark.parametrize("kind", ["Region", "LLMModel", "SLATier"])
@pytest.mark.parametrize("name", ["evil.model", "Evil", "-x", "x-", "a" * 64, ""])
def test_names_that_become_parts_of_other_names_are_dns_labels(kind, name):
    doc = sample(kind)
    doc["metadata"]["name"] = name
    _rejected(doc, "metadata.name")
    meta = _schema(kind)["properties"]["metadata"]["properties"]["name"]
    assert (meta["maxLength"], meta["minLength"]) == (63, 1)
    assert meta["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def test_a_63_character_label_is_a_fine_model_name():
    doc = sample("LLMModel")
    doc["metadata"]["name"] = "m" * 63
    assert parse_object(doc).name == "m" * 63


def test_policy_names_leave_room_for_the_plan_suffix():
    doc = sample("FleetPolicy")
    doc["metadata"]["name"] = "p" * 48
    assert parse_object(doc).name == "p" * 48
    doc["metadata"]["name"] = "p" * 49
    _rejected(doc, "metadata.name", "48")
    assert _schema("FleetPolicy")["properties"]["metadata"]["properties"]["name"]["maxLength"] == 48


def test_other_kinds_keep_the_subdomain_names_kubernetes_allows():
    doc = sample("TenantQuota")
    doc["metadata"]["name"] = "acme.chat"
    assert parse_object(doc).name == "acme.chat"
    doc["metadata"]["name"] = "Acme"
    _rejected(doc, "metadata.name")


def _runtime(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"].setdefault("runtime", {})  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "image",
    ["", "has space:1", "vllm/UPPER:1", "vllm/vllm-openai:", "a" * 513, "vllm//x", ":latest"],
)
def test_bad_images_are_rejected(image):
    doc = sample("LLMModel")
    _runtime(doc)["image"] = image
    _rejected(doc, "spec.runtime.image")


@pytest.mark.parametrize(
    "image",
    [
        "vllm/vllm-openai:v0.11.0",
        "registry.example.com:5000/llm/vllm-openai:v0.11.0",
        "ghcr.io/org/server@sha256:" + "a" * 64,
        "localhost/x",
        "nginx",
    ],
)
def test_plausible_images_are_accepted(image):
    doc = sample("LLMModel")
    _runtime(doc)["image"] = image
    assert parse_object(doc).spec.runtime.image == image  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["", "1ABC", "A B", "A=B", "x" * 257])
def test_bad_env_names_are_rejected(name):
    doc = sample("LLMModel")
    _runtime(doc)["env"] = [{"name": name, "value": "1"}]
    _rejected(doc, "spec.runtime.env[0].name")


def test_env_names_follow_kubernetes():
    doc = sample("LLMModel")
    _runtime(doc)["env"] = [{"name": n} for n in ("HF_HOME", "_x", "vllm.flag", "-a")]
    assert len(parse_object(doc).spec.runtime.env) == 4  # type: ignore[attr-defined]


def test_args_are_bounded_in_count_and_length():
    doc = sample("LLMModel")
    _runtime(doc)["args"] = ["x" * 1_000_000]
    _rejected(doc, "spec.runtime.args[0]", "4096")
    _runtime(doc)["args"] = ["--a"] * 65
    _rejected(doc, "spec.runtime.args", "64")
    args = _schema("LLMModel")["properties"]["spec"]["properties"]["runtime"]["properties"]["args"]
    assert args["maxItems"] == 64 and args["items"]["maxLength"] == 4096


def test_duplicate_set_entries_are_rejected_as_the_apiserver_does():
    doc = sample("TenantQuota", "acme-chat")
    doc["spec"]["models"] = ["llama-3-1-8b", "llama-3-1-8b"]
    _rejected(doc, "models", "duplicate")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://prometheus:9090",
        "http://",
        "http:///api",
        "http://user:pw@prom:9090",
        "http://prom:9090/?q=1",
        "http://prom 9090",
        "prometheus:9090",
        "http://" + "a" * 2048,
    ],
)
def test_prometheus_url_needs_http_scheme_and_host(url):
    doc = sample("FleetPolicy")
    doc["spec"]["prometheus"]["url"] = url
    _rejected(doc, "spec.prometheus.url")


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus-operated.monitoring.svc:9090",
        "https://10.0.0.1/prom",
        "http://[::1]:9090",
    ],
)
def test_prometheus_urls_with_a_host_are_accepted(url):
    doc = sample("FleetPolicy")
    doc["spec"]["prometheus"]["url"] = url
    assert parse_object(doc).spec.prometheus.url == url  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", "at least 1"),
        ("   ", "pattern"),
        ("up; drop", "no ';'"),
        ("sum(rate(x[5m])", "as many ')' as '('"),
        ("x" * 4097, "4096"),
        # pydantic only: the counts match, the nesting does not
        ("sum)(x", "closes nothing open"),
        ('sum(x{a="b})', "not closed"),
    ],
)
def test_bad_query_templates_are_rejected_naming_the_field(query, says):
    doc = sample("FleetPolicy")
    doc["spec"]["prometheus"]["queries"] = {"tenantUsage": query}
    _rejected(doc, "spec.prometheus.queries.tenantUsage", says)


def test_query_templates_outside_string_literals_and_comments_are_scanned():
    assert promql_structure_problem('sum(x{path=~"/(v1"})') is None  # a ( in a string
    assert promql_structure_problem("sum(x) # )\n") is None
    assert promql_structure_problem("sum(x[5m)]") == (
        "')' at offset 8 does not close the '[' at offset 5"
    )
    assert promql_structure_problem("'a\\'b'") is None


def test_every_query_template_carries_the_rules_and_its_default_is_well_formed():
    from llmfleet.api.policy import PROMQL_RULES, PrometheusQueries

    queries = _schema("FleetPolicy")["properties"]["spec"]["properties"]["prometheus"][
        "properties"
    ]["queries"]["properties"]
    assert set(queries) == {f.alias for f in PrometheusQueries.model_fields.values()}
    settings = {"profile", "defaultTier", "replicaWindowSeconds"}
    by_profile = {"promptTokens", "generationTokens", "requests", "tenantUsage"}
    for name, node in queries.items():
        if name in settings:
            continue
        assert [r["rule"] for r in node["x-kubernetes-validations"]] == [
            r.cel for r in PROMQL_RULES
        ]
        assert (node["minLength"], node["maxLength"]) == (1, 4096), name
        if name in by_profile:  # no schema default: the apiserver must not pick the profile
            assert "default" not in node, name
        else:
            assert promql_structure_problem(node["default"]) is None, name
    assert queries["profile"]["enum"] == ["envoy-ai-gateway", "llm-d-epp", "vllm"]


def test_wire_parsing_is_as_strict_as_the_apiserver():
    doc = sample("Region")
    doc["spec"]["pools"][0]["gpusPerNode"] = 8.0
    _rejected(doc, "spec.pools[0].gpusPerNode", "integer")
    doc = sample("Region")
    doc["spec"]["pools"][0]["maxNodes"] = "16"
    _rejected(doc, "spec.pools[0].maxNodes")
    doc = sample("TenantQuota")
    doc["spec"]["weight"] = True
    _rejected(doc, "spec.weight")
    doc = sample("Region")
    doc["spec"]["location"] = 7
    _rejected(doc, "spec.location")


def test_null_properties_are_omitted_fields_as_at_the_apiserver():
    doc = sample("TenantQuota")
    doc["spec"]["weight"] = None
    doc["spec"]["budgets"] = None
    quota = parse_object(doc)
    assert quota.spec.weight == 1.0  # type: ignore[attr-defined]
    doc["spec"]["models"] = [None]
    _rejected(doc, "spec.models[0]")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.info.kind)
def test_every_spec_string_list_and_integer_is_bounded(kind):
    spec = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def walk(node: dict[str, Any], path: str) -> None:
        t = node.get("type")
        if t == "string" and "enum" not in node and node.get("format") != "date-time":
            assert "maxLength" in node, f"{path} has no maxLength"
        if t == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
            walk(node["items"], f"{path}[]")
        if t == "integer":
            assert "maximum" in node, f"{path} has no maximum"
        for k, v in node.get("properties", {}).items():
            walk(v, f"{path}.{k}")

    walk(spec, "spec")


def test_wire_parsing_reads_timestamps_of_the_status():
    from llmfleet.api import FleetPolicy

    doc = sample("FleetPolicy")
    doc["status"] = {
        "conditions": [
            {
                "type": "Valid",
                "status": "True",
                "reason": "Checked",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "lastRunTime": "2026-01-01T00:15:00Z",
    }
    status = FleetPolicy.from_wire(doc).status
    assert status is not None and status.last_run_time is not None
    assert status.conditions[0].last_transition_time.year == 2026


def test_an_unknown_field_is_rejected_even_when_null():
    doc = sample("LLMModel")
    doc["spec"]["profiles"][0]["bogusField"] = None
    _rejected(doc, "spec.profiles[0].bogusField")


@pytest.mark.parametrize(
    ("when", "ok"),
    [
        ("2026-01-01T00:00:00Z", True),
        ("2026-01-01t00:00:00.25+01:00", True),
        ("3", False),  # pydantic alone reads a Unix time
        ("2026-01-01", False),
        ("2026-02-30T00:00:00Z", False),
        ("2026-01-01T24:00:00Z", False),
        ("2026-01-01 00:00:00Z", False),
    ],
)
def test_timestamps_are_rfc3339_date_times_as_the_apiserver_reads_them(when, ok):
    doc = {
        "apiVersion": "llmfleet.dev/v1alpha1",
        "kind": "FleetPlan",
        "metadata": {"name": "p-1", "namespace": "ns"},
        "spec": {
            "policy": "p",
            "inputsDigest": "d",
            "madeAt": when,
            "stepSeconds": 3600,
            "steps": 1,
            "solver": {"status": "Optimal", "solveSeconds": 0},
            "costPerHour": 0,
        },
    }
    if ok:
        assert parse_object(doc).spec.made_at.year == 2026  # type: ignore[attr-defined]
    else:
        _rejected(doc, "spec.madeAt")
