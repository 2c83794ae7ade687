"""Read llmfleet objects from YAML manifests, with errors that say file, document and field."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llmfleet.api.base import API_VERSION
from llmfleet.api.kinds import BY_KIND
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.resource import Resource


class ManifestError(ValueError):
    """A manifest that is not a valid llmfleet object; the message names where and why."""


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem: ``spec.pools[0].maxNodes: Input should be ...``."""
    lines = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        lines.append(f"{path or '<object>'}: {e['msg']}")
    return "; ".join(lines)


def parse_object(doc: dict[str, Any], namespace: str | None = None, where: str = "") -> Resource:
    """Parse one manifest dict into its typed kind."""
    prefix = f"{where}: " if where else ""
    if not isinstance(doc, dict):
        raise ManifestError(f"{prefix}expected a mapping, got {type(doc).__name__}")
    if doc.get("apiVersion") != API_VERSION:
        raise ManifestError(
            f"{prefix}apiVersion must be {API_VERSION}, got {doc.get('apiVersion')!r}"
        )
    kind = BY_KIND.get(doc.get("kind", ""))
    if kind is None:
        known = ", ".join(sorted(BY_KIND))
        raise ManifestError(f"{prefix}unknown kind {doc.get('kind')!r} (known: {known})")
    try:
        obj = kind.from_wire(doc)
    except ValidationError as err:
        name = (doc.get("metadata") or {}).get("name", "?")
        raise ManifestError(
            f"{prefix}{kind.info.kind} {name}: {describe_validation_error(err)}"
        ) from None
    if kind.info.scope == "Namespaced" and obj.metadata.namespace is None:
        obj.metadata.namespace = namespace
    return obj


def load_manifests(paths: Iterable[Path], namespace: str | None = "default") -> list[Resource]:
    """Every llmfleet object in the YAML files (directories: their ``*.yaml``, sorted)."""
    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    out: list[Resource] = []
    for f in files:
        try:
            docs = list(yaml.safe_load_all(f.read_text()))
        except yaml.YAMLError as err:
            raise ManifestError(f"{f}: not valid YAML: {err}") from None
        for i, doc in enumerate(docs):
            if doc is None:
                continue
            out.append(parse_object(doc, namespace, where=f"{f} (document {i + 1})"))
    return out


def snapshot_of(objects: Iterable[Resource]) -> FleetSnapshot:
    """Sort objects into a :class:`FleetSnapshot` by kind."""
    snap = FleetSnapshot()
    buckets: dict[str, list[Any]] = {
        "Region": snap.regions,
        "LLMModel": snap.models,
        "SLATier": snap.tiers,
        "TenantQuota": snap.tenants,
        "FleetPolicy": snap.policies,
        "FleetPlan": snap.plans,
    }
    for o in objects:
        buckets[o.info.kind].append(o)
    return snap
