"""SLATier ``spec.routing`` and LLMModel ``spec.evaluations``/``routingCost``: every
inconsistent combination is rejected with a message naming the field, by the apiserver's CEL
and pydantic alike (within one object), or by the reference checks the controller reports as
``Valid=False`` (across objects)."""

from __future__ import annotations

import copy
from typing import Any

import celpy
import pytest
import yaml
from celpy import celtypes
from pydantic import ValidationError

from llmfleet.api.conditions import Reason
from llmfleet.api.crdgen import crd_for
from llmfleet.api.loading import ManifestError, parse_object, snapshot_of
from llmfleet.api.references import ObjectKey, check_references
from llmfleet.api.tier import SLATier
from llmfleet.cli import main as cli_main
from support.builders import all_samples, sample

ROUTED = "interactive-normal"


def _routing_schema() -> dict[str, Any]:
    root = crd_for(SLATier)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    node: dict[str, Any] = root["properties"]["spec"]["properties"]["routing"]
    return node


def _cel(value: dict[str, Any]) -> dict[str, bool]:
    """Each CEL rule of ``spec.routing`` on ``value``: message -> holds."""
    env = celpy.Environment()
    out = {}
    for rule in _routing_schema()["x-kubernetes-validations"]:
        program = env.program(env.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        assert isinstance(result, celtypes.BoolType), result
        out[rule["message"]] = bool(result)
    return out


def _tier(routing: dict[str, Any]) -> dict[str, Any]:
    doc = sample("SLATier", ROUTED)
    doc["spec"]["routing"] = routing
    return doc


BASE = {
    "referenceModel": "llama-3-3-70b",
    "candidates": ["llama-3-1-8b", "llama-3-3-70b"],
    "maxQualityDrop": 1.0,
}


def test_the_sample_tier_routes_and_every_rule_holds_on_it():
    routing = sample("SLATier", ROUTED)["spec"]["routing"]
    assert all(_cel(routing).values())
    tier = parse_object(sample("SLATier", ROUTED), "llmfleet")
    assert isinstance(tier, SLATier) and tier.spec.routing is not None
    assert tier.spec.routing.router.kind == "quality"
    assert all(_cel(BASE).values())  # router, metric omitted: the guards hold


@pytest.mark.parametrize(
    ("change", "message", "field"),
    [
        (
            {"referenceModel": "llama-3-1-405b"},
            "referenceModel must be one of candidates",
            "referenceModel",
        ),
        (
            {
                "candidates": ["llama-3-1-8b", "llama-3-3-70b", "llama-3-1-405b"],
                "router": {"kind": "good-enough"},
            },
            "router good-enough takes exactly 2 candidates",
            "candidates",
        ),
    ],
    ids=["reference-not-a-candidate", "good-enough-with-3"],
)
def test_cel_and_pydantic_reject_the_same_routing(change, message, field):
    routing = {**copy.deepcopy(BASE), **change}
    results = _cel(routing)
    assert [m for m, ok in results.items() if not ok] == [m for m in results if message in m]
    with pytest.raises(ValidationError, match=message) as err:
        SLATier.from_wire(_tier(routing))
    assert f"({field})" in str(err.value)
    # the apiserver's error names the field too
    rule = next(r for r in _routing_schema()["x-kubernetes-validations"] if message in r["message"])
    assert rule["fieldPath"] == f".{field}"


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"candidates": ["llama-3-3-70b"]}, "candidates", "at least 2"),
        ({"candidates": ["llama-3-3-70b", "llama-3-3-70b"]}, "candidates", "duplicate"),
        ({"maxQualityDrop": -0.5}, "maxQualityDrop", "greater than or equal to 0"),
        ({"metric": "Accuracy!"}, "metric", "pattern"),
        ({"router": {"kind": "llm-judge"}}, "kind", "random"),
        ({"router": {"threshold": -1}}, "threshold", "greater than or equal to 0"),
        ({"router": {"confidence": 1.0}}, "confidence", "less than 1"),
    ],
    ids=[
        "one-candidate",
        "duplicate-candidate",
        "negative-drop",
        "bad-metric",
        "unknown-router",
        "negative-threshold",
        "confidence-1",
    ],
)
def test_schema_bounds_reject_with_the_field_named(change, field, fragment):
    with pytest.raises(ValidationError) as err:
        SLATier.from_wire(_tier({**copy.deepcopy(BASE), **change}))
    assert field in str(err.value) and fragment in str(err.value)
    props = _routing_schema()["properties"]
    assert props["candidates"]["minItems"] == 2 and props["maxQualityDrop"]["minimum"] == 0
    assert props["router"]["properties"]["kind"]["enum"] == [
        "random",
        "good-enough",
        "quality",
        "cluster",
        "blend",
    ]


def test_a_missing_quality_floor_is_required():
    routing = {k: v for k, v in BASE.items() if k != "maxQualityDrop"}
    with pytest.raises(ValidationError, match="maxQualityDrop"):
        SLATier.from_wire(_tier(routing))
    assert "maxQualityDrop" in _routing_schema()["required"]


def test_a_deadline_tier_may_route():
    doc = sample("SLATier", "batch")
    doc["spec"]["routing"] = copy.deepcopy(BASE)
    assert SLATier.from_wire(doc).spec.routing is not None


# -- across objects: what the controller reports as Valid=False -----------------------------


def _tier_problems(docs: list[dict[str, Any]]) -> dict[str, str]:
    snap = snapshot_of(parse_object(d, "llmfleet") for d in docs)
    problems = check_references(snap)[ObjectKey("SLATier", "llmfleet", ROUTED)]
    return {p.reason: p.message for p in problems}


def _model(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "LLMModel" and d["metadata"]["name"] == name)


def _routing(docs: list[dict[str, Any]]) -> dict[str, Any]:
    tier = next(d for d in docs if d["kind"] == "SLATier" and d["metadata"]["name"] == ROUTED)
    routing: dict[str, Any] = tier["spec"]["routing"]
    return routing


def test_samples_route_consistently():
    assert _tier_problems(all_samples()) == {}


def test_candidate_that_does_not_exist():
    docs = all_samples()
    _routing(docs)["candidates"].append("gpt-9")
    got = _tier_problems(docs)
    assert set(got) == {Reason.ROUTING_UNKNOWN_MODEL}
    assert "spec.routing.candidates" in got[Reason.ROUTING_UNKNOWN_MODEL]
    assert "'gpt-9'" in got[Reason.ROUTING_UNKNOWN_MODEL]


def test_candidate_in_another_namespace_does_not_count():
    docs = [d for d in all_samples() if d["kind"] in ("SLATier", "Region")]
    other = sample("LLMModel", "llama-3-1-8b")
    other["metadata"]["namespace"] = "elsewhere"
    docs.append(other)
    got = _tier_problems(docs)
    assert "'llama-3-1-8b'" in got[Reason.ROUTING_UNKNOWN_MODEL]


def test_candidate_without_an_evaluation_on_the_metric():
    docs = all_samples()
    _routing(docs)["metric"] = "mt-bench"
    got = _tier_problems(docs)
    assert set(got) == {Reason.ROUTING_NO_EVALUATION}
    assert "'mt-bench'" in got[Reason.ROUTING_NO_EVALUATION]
    assert "spec.evaluations" in got[Reason.ROUTING_NO_EVALUATION]
    assert "'llama-3-1-8b', 'llama-3-3-70b'" in got[Reason.ROUTING_NO_EVALUATION]


def test_candidate_without_a_routing_cost():
    docs = all_samples()
    del _model(docs, "llama-3-1-8b")["spec"]["routingCost"]
    got = _tier_problems(docs)
    assert set(got) == {Reason.ROUTING_NO_COST}
    assert (
        "'llama-3-1-8b'" in got[Reason.ROUTING_NO_COST]
        and "spec.routingCost" in got[Reason.ROUTING_NO_COST]
    )


def test_candidate_that_no_region_can_serve():
    docs = all_samples()
    _model(docs, "llama-3-1-8b")["spec"]["profiles"] = [
        {
            "gpuType": "L4",
            "gpusPerReplica": 1,
            "prefillTokensPerSecond": 5000,
            "decodeTokensPerSecond": 900,
        }
    ]
    got = _tier_problems(docs)
    assert set(got) == {Reason.ROUTING_UNPLACEABLE}
    assert "'llama-3-1-8b' cannot be served in any Region" in got[Reason.ROUTING_UNPLACEABLE]


def test_candidates_sharing_a_served_name():
    docs = all_samples()
    _model(docs, "llama-3-1-8b")["spec"]["servedModelName"] = "meta-llama/Llama-3.3-70B-Instruct"
    got = _tier_problems(docs)
    assert set(got) == {Reason.ROUTING_SHARED_SERVED_NAME}
    assert "spec.servedModelName" in got[Reason.ROUTING_SHARED_SERVED_NAME]


def test_llmfleet_validate_names_the_field(tmp_path, capsys):
    docs = all_samples()
    _routing(docs)["candidates"].append("gpt-9")
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    assert cli_main(["validate", str(path)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "spec.routing.candidates" in text and "gpt-9" in text


def test_evaluations_are_keyed_by_metric():
    doc = sample("LLMModel", "llama-3-1-8b")
    doc["spec"]["evaluations"].append({"metric": "accuracy", "score": 50})
    with pytest.raises(ManifestError, match="evaluations: duplicate entry metric=accuracy"):
        parse_object(doc, "llmfleet")
    doc = sample("LLMModel", "llama-3-1-8b")
    doc["spec"]["evaluations"][0]["score"] = 101
    with pytest.raises(ManifestError, match=r"spec.evaluations\[0\].score"):
        parse_object(doc, "llmfleet")
