"""Every CEL rule of every generated CRD, evaluated (cel-python) on objects with optional
fields omitted: no rule may fail with ``no such key``, and each gives pydantic's answer.

The apiserver does not fill in defaults of an omitted *object* (``spec.horizon``), and a
rule that reads an absent field errors instead of answering; so every optional field a rule
reads is guarded (``has()``, :func:`llmfleet.api.base.cel_or_default`). The instances are
the samples, the samples with every default filled in (``to_wire``), a FleetPlan, and each
of those with every optional property dropped in turn, and all of them at once.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import celpy
import pytest
from celpy import celtypes
from pydantic import BaseModel, ValidationError

from llmfleet.api import BY_KIND, KINDS
from llmfleet.api.base import ApiModel, Rule
from llmfleet.api.crdgen import INTEGER_RULE, crd_for
from llmfleet.api.policy import PROMQL_RULES
from support.builders import all_samples

PLAN = {
    "apiVersion": "llmfleet.dev/v1alpha1",
    "kind": "FleetPlan",
    "metadata": {"name": "default-20260101000000", "namespace": "ns"},
    "spec": {
        "policy": "default",
        "inputsDigest": "sha256:0",
        "madeAt": "2026-01-01T00:00:00Z",
        "stepSeconds": 3600,
        "steps": 24,
        "solver": {"status": "Optimal", "solveSeconds": 0.5, "gap": 0.0},
        "costPerHour": 12.5,
        "nodes": [
            {
                "region": "us-east",
                "pool": "h100-od",
                "gpuType": "H100-80GB",
                "capacityType": "on-demand",
                "nodes": 2,
            }
        ],
    },
}


# -- Kubernetes' CEL libraries the rules use, for cel-python ---------------------------------


def _split(s: celtypes.StringType, sep: celtypes.StringType) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(p) for p in str(s).split(str(sep))])


def _sum(items: celtypes.ListType) -> Any:
    values = list(items)
    if all(isinstance(v, celtypes.IntType) for v in values):
        return celtypes.IntType(sum(int(v) for v in values))
    return celtypes.DoubleType(sum(float(v) for v in values))


FUNCTIONS = {"split": _split, "sum": _sum}
ENV = celpy.Environment()


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value as the apiserver hands it to CEL: ``number`` fields are doubles even
    when written as integers."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return celtypes.MapType(
            {celtypes.StringType(k): to_cel(v, props.get(k, {})) for k, v in value.items()}
        )
    if isinstance(value, list):
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if schema.get("type") == "number" and isinstance(value, int):
        return celtypes.DoubleType(float(value))
    return celpy.json_to_cel(value)


def evaluate(rule: str, value: Any, schema: dict[str, Any]) -> bool:
    program = ENV.program(ENV.compile(rule), functions=FUNCTIONS)
    result = program.evaluate({"self": to_cel(value, schema)})
    if isinstance(result, celpy.CELEvalError):
        raise result
    assert isinstance(result, celtypes.BoolType), f"{rule!r} gave {result!r}"
    return bool(result)


# -- where the rules sit ---------------------------------------------------------------------


def _model_of(annotation: Any) -> type[ApiModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found:
            return found
    return None


def sites(
    schema: dict[str, Any], model: type[BaseModel] | None, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], dict[str, Any], type[BaseModel] | None]]:
    """(path, schema node, model class at that node) for every node; ``[]`` marks items."""
    yield path, schema, model
    fields = {(f.alias or n): f for n, f in model.model_fields.items()} if model else {}
    for key, sub in schema.get("properties", {}).items():
        field = fields.get(key)
        sub_model = _model_of(field.annotation) if field else None
        if sub.get("type") == "array":
            yield (*path, key), sub, None
            yield from sites(sub["items"], sub_model, (*path, key, "[]"))
        else:
            yield from sites(sub, sub_model, (*path, key))


def kind_sites() -> list[tuple[str, tuple[str, ...], dict[str, Any], type[BaseModel] | None]]:
    out = []
    for kind in KINDS:
        root = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            model = _model_of(kind.model_fields[part].annotation)
            for path, node, cls in sites(root["properties"][part], model, (part,)):
                if node.get("x-kubernetes-validations"):
                    out.append((kind.info.kind, path, node, cls))
    return out


SITES = kind_sites()


def documents(kind: str) -> list[dict[str, Any]]:
    docs = [d for d in all_samples() if d["kind"] == kind] or (
        [PLAN] if kind == "FleetPlan" else []
    )
    return docs + [BY_KIND[kind].from_wire(d).to_wire() for d in docs]


def values_at(node: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield node
        return
    head, rest = path[0], path[1:]
    if head == "[]":
        for item in node if isinstance(node, list) else []:
            yield from values_at(item, rest)
    elif isinstance(node, dict) and head in node:
        yield from values_at(node[head], rest)


def optional_paths(
    value: Any, schema: dict[str, Any], path: tuple[Any, ...] = ()
) -> Iterator[tuple[Any, ...]]:
    """Paths of the optional properties present in ``value``, at any depth."""
    if isinstance(value, dict):
        required = set(schema.get("required", []))
        for key, sub in value.items():
            sub_schema = schema.get("properties", {}).get(key, {})
            if key not in required:
                yield (*path, key)
            yield from optional_paths(sub, sub_schema, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from optional_paths(item, schema.get("items", {}), (*path, i))


def dropped(value: Any, path: tuple[Any, ...]) -> Any:
    out = copy.deepcopy(value)
    node = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def minimal(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` with every optional property dropped, at every depth."""
    if isinstance(value, dict):
        required = set(schema.get("required", []))
        props = schema.get("properties", {})
        return {k: minimal(v, props.get(k, {})) for k, v in value.items() if k in required}
    if isinstance(value, list):
        return [minimal(v, schema.get("items", {})) for v in value]
    return value


def variants(value: Any, schema: dict[str, Any]) -> list[Any]:
    out = [value, minimal(value, schema)]
    out += [dropped(value, p) for p in optional_paths(value, schema)]
    return out


def rule_objects(model: type[BaseModel] | None) -> dict[str, Rule]:
    rules = getattr(model, "__rules__", ()) if model else ()
    return {r.message: r for r in rules}


# -- the tests -------------------------------------------------------------------------------


def test_every_kind_with_rules_is_covered():
    covered = {(k, p) for k, p, _, _ in SITES}
    # the cross-field rules are where we think they are
    expected = {
        ("Region", ("spec", "cluster")),
        ("Region", ("spec", "pools", "[]")),
        ("Region", ("spec", "pools", "[]", "provider")),
        ("LLMModel", ("spec", "profiles", "[]")),
        ("SLATier", ("spec",)),
        ("TenantQuota", ("spec",)),
        ("TenantQuota", ("spec", "budgets")),
        ("FleetPolicy", ("spec",)),
        ("FleetPolicy", ("spec", "prometheus", "queries", "promptTokens")),
    }
    assert expected <= covered


@pytest.mark.parametrize(
    ("kind", "path", "node", "model"),
    [s for s in SITES if s[2].get("type") == "object"],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else (v if isinstance(v, str) else ""),
)
def test_object_rules_never_fail_on_omitted_fields_and_agree_with_pydantic(kind, path, node, model):
    rules = node["x-kubernetes-validations"]
    python = rule_objects(model)
    assert {r["message"] for r in rules} == set(python), "every CEL rule has its predicate"
    checked = 0
    for doc in documents(kind):
        for value in values_at(doc, path):
            for variant in variants(value, node):
                results = {r["message"]: evaluate(r["rule"], variant, node) for r in rules}
                checked += 1
                try:
                    model.model_validate(variant)  # type: ignore[union-attr]
                except ValidationError as err:
                    top = [e for e in err.errors() if e["loc"] == ()]
                    for e in top:
                        failed = [m for m in results if m in e["msg"]]
                        assert failed and not any(results[m] for m in failed), (
                            f"pydantic: {e['msg']}; CEL: {results} on {variant}"
                        )
                    continue
                assert all(results.values()), f"pydantic accepts, CEL says {results} on {variant}"
    assert checked >= 2, f"no instance of {kind} {'.'.join(path)} to check"


def test_rules_with_every_optional_field_omitted_evaluate():
    """The smallest objects: only required properties, as a hand-written manifest may be."""
    for kind in ("FleetPolicy", "TenantQuota", "SLATier", "Region"):
        minimal_spec = {
            "FleetPolicy": {},
            "TenantQuota": {"tenantId": "t", "tier": "batch"},
            "SLATier": {"type": "deadline", "deadline": {"completionSeconds": 3600}},
            "Region": {
                "location": "x",
                "pools": [
                    {
                        "name": "p",
                        "gpuType": "L4",
                        "gpusPerNode": 1,
                        "pricePerNodeHour": 1,
                        "maxNodes": 1,
                    }
                ],
            },
        }[kind]
        for k, path, node, _ in SITES:
            if k != kind or node.get("type") != "object":
                continue
            for value in values_at({"spec": minimal_spec}, path):
                for r in node["x-kubernetes-validations"]:
                    assert evaluate(r["rule"], value, node), f"{kind} {path}: {r['message']}"


def test_every_integer_rule_rejects_a_decimal_point():
    ints = [s for s in SITES if s[2].get("type") == "integer"]
    assert len(ints) > 40
    for _, _, node, _ in ints:
        assert node["x-kubernetes-validations"][0] == INTEGER_RULE
        assert evaluate(INTEGER_RULE["rule"], 3, node)
        assert not evaluate(INTEGER_RULE["rule"], 3.0, node)


@pytest.mark.parametrize(
    ("query", "ok"),
    [
        ("sum by (model_name) (rate(vllm:prompt_tokens_total[$window]))", True),
        ('sum(rate(x{path=~"/v1/(a|b)"}[5m]))', True),
        ("up; drop", False),
        ("sum(rate(x[5m])", False),
        ("x[5m]]", False),
        ("{a}}", False),
    ],
)
def test_promql_rules_match_their_predicates(query, ok):
    node = {"type": "string"}
    for rule in PROMQL_RULES:
        assert evaluate(rule.cel, query, node) == rule.check(query)
    assert all(rule.check(query) for rule in PROMQL_RULES) == ok


def test_every_field_a_rule_reads_is_required_or_guarded():
    """Structural backstop of the evaluation above: ``self.x`` of an optional ``x`` appears
    only inside ``has(self.x)`` or after a ``has(self.x) ?``/``&&``/``||`` guard."""
    for kind, path, node, _ in SITES:
        if node.get("type") != "object":
            continue
        required = set(node.get("required", []))
        for r in node["x-kubernetes-validations"]:
            for field in set(re.findall(r"self\.([A-Za-z0-9_]+)", r["rule"])):
                if field in required:
                    continue
                assert f"has(self.{field})" in r["rule"], (
                    f"{kind} {'.'.join(path)}: {r['rule']!r} reads optional {field} unguarded"
                )


def profile_defaults(alias: str) -> list[str | None]:
    from llmfleet.api.policy import PROFILE_TEMPLATES, PrometheusQueries

    name = next(n for n, f in PrometheusQueries.model_fields.items() if f.alias == alias)
    return [t.get(name) for t in PROFILE_TEMPLATES.values()]  # type: ignore[call-overload]


def test_string_rules_hold_on_every_written_value_and_match_their_predicates():
    strings = [s for s in SITES if s[2].get("type") == "string"]
    assert strings, "the query templates carry CEL rules"
    by_cel = {r.cel: r for r in PROMQL_RULES}
    for kind, path, node, _ in strings:
        values = [v for doc in documents(kind) for v in values_at(doc, path)]
        if not values and path[:3] == ("spec", "prometheus", "queries"):
            # a template the samples leave to the profile: check every profile's default
            values = [v for v in profile_defaults(path[-1]) if v is not None]
        assert values, f"no {kind} {'.'.join(path)} to check"
        for value in [*values, "sum(x", "a;b"]:
            for r in node["x-kubernetes-validations"]:
                assert evaluate(r["rule"], value, node) == by_cel[r["rule"]].check(value)
        assert all(
            evaluate(r["rule"], v, node) for v in values for r in node["x-kubernetes-validations"]
        )


def test_every_rule_site_is_one_of_the_checked_shapes():
    assert {s[2].get("type") for s in SITES} == {"object", "integer", "string"}
