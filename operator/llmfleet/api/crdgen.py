"""Generate CustomResourceDefinitions from the pydantic types.

``llmfleet crds`` writes one YAML file per kind into ``crds/``; ``llmfleet crds --check``
exits non-zero when the files on disk differ from what the types generate (the drift
test runs the same check).

Pydantic emits JSON Schema (2020-12) with ``$ref``/``$defs``, ``anyOf`` for optionals and
numeric ``exclusiveMinimum``. Kubernetes wants a *structural* OpenAPI v3 schema: every
node typed, no references, no ``anyOf`` at the top of a property, boolean exclusive
bounds. :func:`structural` does that translation and nothing else; everything it emits
comes from a field declaration.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any

import yaml

from llmfleet.api.base import GROUP, VERSION, ApiModel, ObjectMeta
from llmfleet.api.kinds import KINDS
from llmfleet.api.resource import Resource

_DROP = {"title", "$defs"}

#: The apiserver's schema check takes ``3.0`` for an ``integer`` (a whole JSON number),
#: but then a CEL rule reading the field fails (``expected int, got float64``) and
#: Kubernetes' built-in types refuse it. Pydantic's wire parsing is strict (no decimal
#: point for an ``int``), so every integer property carries this rule: converting ``self``
#: to a CEL value rejects a decimal number, whatever other rules read the field.
INTEGER_RULE = {
    "rule": "type(self) == int",
    "message": "must be an integer, without a decimal point",
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            target = copy.deepcopy(defs[name])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target.update(extra)
            return _resolve(target, defs)
        return {k: _resolve(v, defs) for k, v in node.items() if k not in _DROP}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _collapse_optional(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` -> X (optional fields are omitted, never null)."""
    options = node.get("anyOf")
    if not options:
        return node
    non_null = [o for o in options if o.get("type") != "null"]
    if len(non_null) != 1:
        raise ValueError(f"cannot express union in a structural schema: {options}")
    merged = dict(non_null[0])
    for k, v in node.items():
        if k != "anyOf" and not (k == "default" and v is None):
            merged[k] = v
    return merged


def _structural(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = _collapse_optional(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: _structural(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "default" and value is None:
            continue
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" in out:
        out.pop("additionalProperties", None)
    if out.get("format") == "date-time":
        out["type"] = "string"
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "integer":
        out["x-kubernetes-validations"] = [INTEGER_RULE, *out.get("x-kubernetes-validations", [])]
    return out


def _attach_rules(schema: dict[str, Any], model: type[ApiModel] | None) -> None:
    """Walk the schema alongside the model classes, adding each class's CEL rules."""
    if model is None:
        return
    rules = [r.as_schema() for r in getattr(model, "__rules__", ())]
    if rules:
        schema["x-kubernetes-validations"] = rules
    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.alias or name
        sub = props.get(alias)
        if sub is None:
            continue
        for cls in _model_classes(field.annotation):
            if sub.get("type") == "array":
                _attach_rules(sub["items"], cls)
            else:
                _attach_rules(sub, cls)


def _model_classes(annotation: Any) -> list[type[ApiModel]]:
    found: list[type[ApiModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        found.extend(_model_classes(arg))
    return found


def structural(model: type[ApiModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (no ``$ref``, every node typed)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve(raw, raw.get("$defs", {}))
    schema: dict[str, Any] = _structural(resolved)
    _attach_rules(schema, model)
    return schema


def crd_for(kind: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    info = kind.info
    spec_model = kind.model_fields["spec"].annotation
    status_model = _model_classes(kind.model_fields["status"].annotation)[0]
    assert isinstance(spec_model, type) and issubclass(spec_model, ApiModel)
    spec_schema = structural(spec_model)
    status_schema = structural(status_model)
    spec_schema["description"] = spec_model.__doc__ or ""
    status_schema["description"] = status_model.__doc__ or ""
    meta_model = kind.model_fields["metadata"].annotation
    assert isinstance(meta_model, type) and issubclass(meta_model, ObjectMeta)
    name_schema = {
        k: v
        for k, v in meta_model.model_json_schema(mode="validation")["properties"]["name"].items()
        if k != "title"
    }
    root: dict[str, Any] = {
        "type": "object",
        "description": (kind.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object", "properties": {"name": name_schema}},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
        "categories": list(info.categories),
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "llmfleet"},
        },
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": info.scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.as_schema() for c in info.printer_columns],
                }
            ],
        },
    }


HEADER = "# Generated by `llmfleet crds` from operator/llmfleet/api. Do not edit.\n"


def render(kind: type[Resource]) -> str:
    return HEADER + yaml.safe_dump(crd_for(kind), sort_keys=True, width=100)


def file_name(kind: type[Resource]) -> str:
    return f"{GROUP}_{kind.info.plural}.yaml"


def generate(out_dir: Path) -> list[Path]:
    """Write every CRD into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = out_dir / file_name(kind)
        path.write_text(render(kind))
        written.append(path)
    return written


def drift(out_dir: Path) -> list[str]:
    """Names of CRD files in ``out_dir`` that are missing or differ from the types."""
    stale = []
    expected = {file_name(k): render(k) for k in KINDS}
    for name, text in expected.items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            stale.append(name)
    for path in out_dir.glob(f"{GROUP}_*.yaml"):
        if path.name not in expected:
            stale.append(path.name)
    return sorted(stale)
