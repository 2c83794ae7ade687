"""Generated fleet objects, valid and invalid, of every kind (Hypothesis strategies): the
corpus the apiserver-agreement test and the cycle's robustness test share.

``manifests()`` draws (kind, manifest): a realistic sample of that kind, mutated 0-3 times
(optional fields dropped or nulled, numbers out of bounds and on them, bad names, wrong JSON
types, empty, huge and pattern-breaking strings, duplicated list entries, unknown fields).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from llmfleet.api import API_VERSION, BY_KIND
from llmfleet.api.crdgen import crd_for
from llmfleet.api.policy import PROMQL_RULES, promql_structure_problem
from support.builders import all_samples

BATCH = 25
EXAMPLES = 80  # x BATCH = 2,000 objects
KINDS = ["Region", "LLMModel", "SLATier", "TenantQuota", "FleetPolicy", "FleetPlan"]

PLAN: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "FleetPlan",
    "metadata": {"name": "default-20260101000000"},
    "spec": {
        "policy": "default",
        "inputsDigest": "sha256:0123",
        "madeAt": "2026-01-01T00:00:00Z",
        "stepSeconds": 3600,
        "steps": 24,
        "solver": {"status": "Optimal", "solveSeconds": 0.5, "gap": 0.0, "objective": 10.0},
        "costPerHour": 12.5,
        "nodes": [
            {
                "region": "us-east",
                "pool": "h100-od",
                "gpuType": "H100-80GB",
                "capacityType": "on-demand",
                "nodes": 2,
                "currentNodes": 1,
            }
        ],
        "replicas": [
            {"model": "llama-3-1-8b", "region": "us-east", "pool": "h100-od", "replicas": 3}
        ],
        "routing": [
            {
                "model": "llama-3-1-8b",
                "tier": "batch",
                "origin": "us-east",
                "weights": [{"region": "us-east", "fraction": 1.0}],
            }
        ],
        "throttles": [
            {
                "tenant": "acme-chat",
                "tier": "batch",
                "tokensPerSecond": 100.0,
                "requestsPerSecond": 1.0,
                "burstTokens": 1000.0,
                "maxConcurrency": 8,
            }
        ],
        "unmet": [
            {
                "model": "llama-3-1-8b",
                "origin": "us-east",
                "tier": "batch",
                "tokensPerSecond": 1.0,
                "reason": "every pool is at maxNodes",
            }
        ],
        "explanation": [
            {"region": "us-east", "pool": "h100-od", "reason": "demand", "message": "load"}
        ],
    },
}


def _rich() -> list[dict[str, Any]]:
    """Valid objects that fill optional fields the samples leave out."""
    region = next(d for d in all_samples() if d["kind"] == "Region")
    region["spec"]["cluster"] = {
        "mode": "kubeconfig",
        "kubeconfigSecretRef": {"name": "kc", "namespace": "llmfleet", "key": "kubeconfig"},
    }
    region["spec"]["pools"][0]["provider"] = {
        "type": "clusterAPI",
        "machineDeploymentRef": {"name": "md-0", "namespace": "capi"},
    }
    region["spec"]["pools"][1]["provider"] = {"type": "karpenter", "nodePoolRef": {"name": "np"}}
    model = next(d for d in all_samples() if d["kind"] == "LLMModel")
    model["spec"]["runtime"]["env"] = [{"name": "HF_HOME", "value": "/cache"}]
    model["spec"]["allowedRegions"] = ["us-east", "eu-west"]
    tier = next(d for d in all_samples() if d["kind"] == "SLATier")
    tier["spec"]["interactive"] = {"ttftP95Seconds": 1, "e2eP95Seconds": 30, "tpotP95Seconds": 0.05}
    policy = next(d for d in all_samples() if d["kind"] == "FleetPolicy")
    policy["spec"]["ingress"]["parentRefs"][0].update(
        {"sectionName": "https", "group": "gateway.networking.k8s.io", "kind": "Gateway"}
    )
    return [region, model, tier, policy, copy.deepcopy(PLAN)]


def _bases() -> dict[str, list[dict[str, Any]]]:
    docs = [*all_samples(), *_rich()]
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for d in docs:
        full = BY_KIND[d["kind"]].from_wire(d).to_wire()  # every default written out
        for source in (d, full):
            doc = copy.deepcopy(source)
            doc["metadata"] = {"name": f"ag-{d['kind'].lower()}"}
            out[d["kind"]].append(doc)
    return out


BASES = _bases()
SCHEMAS = {
    k: crd_for(BY_KIND[k])["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for k in KINDS
}

# -- mutations -------------------------------------------------------------------------------

Path = tuple[str | int, ...]


def _targets(value: Any, schema: dict[str, Any], path: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = [(path, schema)]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k, v in value.items():
            out += _targets(v, props.get(k, {}), (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _targets(v, schema.get("items", {}), (*path, i))
    return out


def _get(doc: Any, path: Path) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: Path, value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _delete(doc: Any, path: Path) -> None:
    del _get(doc, path[:-1])[path[-1]]


BAD_STRINGS = [
    "",
    " ",
    "evil.model",
    "Evil",
    "-x",
    "a_b",
    "has space",
    "x;y",
    "sum(rate(x[5m])",
    "up; drop table",
    "http://169.254.169.254/latest",
    "ftp://prom:9090",
    "http://user:pw@prom:9090",
    "vllm/vllm-openai:",
    "UPPER/case:1",
    "1ABC",
    "3",
    "2026-01-01",
    "2026-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01 00:00:00Z",
    "2026-01-01T00:00:00.5+01:00",
    "naïve",
    "x" * 49,
    "x" * 63,
    "x" * 64,
    "a" * 253,
    "a" * 254,
]
WRONG_TYPES: list[Any] = ["7", 7, 7.5, 3.0, True, [], {}, ["x"], {"a": 1}]


def _string_values(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(st.sampled_from(BAD_STRINGS))
    if choice == 1 and "maxLength" in schema:
        n = schema["maxLength"]
        return draw(st.sampled_from(["a" * n, "a" * (n + 1), "1" * n]))
    if choice == 2:
        return "x" * draw(st.sampled_from([300, 5000, 70_000]))
    if choice == 3 and "enum" in schema:
        return draw(st.sampled_from([*schema["enum"], "Other", ""]))
    if choice == 4:
        return draw(st.text(max_size=12))
    return draw(st.from_regex(r"[a-z0-9][-a-z0-9.]{0,8}", fullmatch=True))


def _number_values(draw: st.DrawFn, schema: dict[str, Any], integer: bool) -> Any:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    edges: list[Any] = [0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30]
    if lo is not None:
        edges += [lo, lo - 1] if integer else [lo, lo - 0.001, lo + 0.001]
    if hi is not None:
        edges += [hi, hi + 1] if integer else [hi, hi + 0.001, hi - 0.001]
    if integer:
        edges += [3.0, 2.5]
        return draw(st.one_of(st.sampled_from(edges), st.integers(-(10**6), 10**6)))
    edges += [3, 1e300]
    return draw(
        st.one_of(
            st.sampled_from(edges),
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        )
    )


@st.composite
def mutate(draw: st.DrawFn, doc: dict[str, Any], kind: str) -> None:
    targets = _targets(doc["spec"], SCHEMAS[kind]["properties"]["spec"], ("spec",))
    if draw(st.integers(0, 7)) == 0:  # one mutation in eight is of the name
        path, schema = ("metadata", "name"), {"type": "string", "maxLength": 63}
    else:
        path, schema = draw(st.sampled_from(targets))
    value = _get(doc, path)
    t = schema.get("type")
    op = draw(st.sampled_from(["value", "value", "value", "drop", "null", "type", "shape"]))
    if op == "drop" and path != ("spec",):
        _delete(doc, path)
    elif op == "null":
        _set(doc, path, None)
    elif op == "type":
        _set(doc, path, copy.deepcopy(draw(st.sampled_from(WRONG_TYPES))))
    elif t == "string":
        _set(doc, path, _string_values(draw, schema))
    elif t in ("integer", "number"):
        _set(doc, path, _number_values(draw, schema, t == "integer"))
    elif t == "boolean":
        _set(doc, path, not value if isinstance(value, bool) else True)
    elif t == "array" and isinstance(value, list):
        how = draw(st.sampled_from(["empty", "dup", "many"]))
        if how == "empty" or not value:
            _set(doc, path, [])
        elif how == "dup":
            value.append(copy.deepcopy(value[0]))
        elif schema.get("maxItems", 10**6) <= 100:
            _set(doc, path, [copy.deepcopy(value[0]) for _ in range(schema["maxItems"] + 1)])
    elif t == "object" and isinstance(value, dict):
        how = draw(st.sampled_from(["unknown", "empty", "minimal"]))
        if how == "unknown":
            value["bogusField"] = 1
        elif how == "empty":
            _set(doc, path, {})
        else:
            required = set(schema.get("required", []))
            for k in [k for k in value if k not in required]:
                del value[k]


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(KINDS))
    doc = copy.deepcopy(draw(st.sampled_from(BASES[kind])))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        try:
            draw(mutate(doc, kind))
        except (KeyError, IndexError, TypeError):
            break  # an earlier mutation removed or replaced the path's parent
    _keep_to_shared_checks(doc)
    return kind, doc


def _keep_to_shared_checks(doc: dict[str, Any]) -> None:
    """A query template that only pydantic can find wrong (it passes every CEL rule but its
    nesting or a string literal is broken) is replaced: the apiserver cannot see that."""
    try:
        queries = doc["spec"]["prometheus"]["queries"]
    except (KeyError, TypeError):
        return
    if not isinstance(queries, dict):
        return
    for key, query in queries.items():
        if (
            isinstance(query, str)
            and all(rule.check(query) for rule in PROMQL_RULES)
            and promql_structure_problem(query)
        ):
            queries[key] = "up"
