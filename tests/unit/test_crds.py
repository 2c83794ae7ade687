"""crds/ is generated from the types, structural, and carries the rules and columns."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmfleet.api import KINDS
from llmfleet.api.crdgen import crd_for, drift, file_name

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_on_disk_match_the_types():
    stale = drift(CRDS)
    assert stale == [], f"regenerate with `llmfleet crds`: {stale}"


def _walk(node, path="$"):
    yield path, node
    for key in ("properties",):
        for k, v in node.get(key, {}).items():
            yield from _walk(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.info.kind)
def test_schema_is_structural_and_documented(kind):
    crd = crd_for(kind)
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "type" in node, f"{path} has no type"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "title", "$defs"):
            assert banned not in node, f"{path} has {banned}"
        if path.count(".") >= 2 and not path.endswith("[]") and "{}" not in path:
            assert node.get("description"), f"{path} has no description"
    assert version["subresources"] == {"status": {}}
    assert "llmfleet" in crd["spec"]["names"]["categories"]
    assert crd["spec"]["names"]["shortNames"]
    status = schema["properties"]["status"]["properties"]
    assert {"conditions", "observedGeneration"} <= set(status)


def test_cel_rules_and_printer_columns_are_rendered():
    text = (CRDS / "llmfleet.dev_regions.yaml").read_text()
    crd = yaml.safe_load(text)
    pool = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["pools"]["items"]
    rules = {r["message"]: r for r in pool["x-kubernetes-validations"]}
    assert rules["minNodes must be <= maxNodes"]["rule"] == (
        "(has(self.minNodes) ? self.minNodes : 0) <= self.maxNodes"
    )
    assert rules["minNodes must be <= maxNodes"]["fieldPath"] == ".minNodes"
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:5] == ["Location", "Pools", "GPUs", "Max-GPUs", "USD/h"]
    assert file_name(KINDS[0]) == "llmfleet.dev_regions.yaml"


def test_numeric_exclusive_bounds_are_openapi_v3_booleans():
    crd = crd_for(next(k for k in KINDS if k.info.kind == "LLMModel"))
    prof = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["profiles"]["items"]
    prefill = prof["properties"]["prefillTokensPerSecond"]
    assert prefill["minimum"] == 0 and prefill["exclusiveMinimum"] is True
