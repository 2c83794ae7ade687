"""Test object builders: start from the realistic samples, change what a test is about."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "crds" / "samples"


@cache
def _samples() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for f in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def sample(kind: str, name: str | None = None) -> dict[str, Any]:
    """A deep copy of a sample manifest (the first of its kind when ``name`` is None)."""
    docs = _samples()
    if name is None:
        name = next(n for (k, n) in docs if k == kind)
    return copy.deepcopy(docs[(kind, name)])


def all_samples() -> list[dict[str, Any]]:
    return [copy.deepcopy(d) for d in _samples().values()]


def renamed(doc: dict[str, Any], name: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"] = {
        "name": name,
        **({"namespace": doc["metadata"]["namespace"]} if "namespace" in doc["metadata"] else {}),
    }
    return doc


@dataclass(frozen=True)
class BadCase:
    """A manifest that must be rejected, and what the rejection must say."""

    id: str
    kind: str
    mutate: Callable[[dict[str, Any]], None]
    field: str
    """A field name the error must mention."""
    message: str
    """A fragment the error must contain (case-insensitive)."""
    sample_name: str | None = None

    def manifest(self) -> dict[str, Any]:
        doc = sample(self.kind, self.sample_name)
        self.mutate(doc)
        return renamed(doc, f"bad-{self.id}")


def _pool(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return doc["spec"]["pools"][i]  # type: ignore[no-any-return]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[leaf] = value

    return apply


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[leaf]

    return apply


def _dup_pool(doc: dict[str, Any]) -> None:
    doc["spec"]["pools"].append(copy.deepcopy(_pool(doc)))


def _spot_no_rate(doc: dict[str, Any]) -> None:
    spot = next(p for p in doc["spec"]["pools"] if p["capacityType"] == "spot")
    del spot["spotInterruptionRatePerHour"]


def _min_gt_max(doc: dict[str, Any]) -> None:
    _pool(doc)["minNodes"], _pool(doc)["maxNodes"] = 5, 2


BAD_CASES: list[BadCase] = [
    BadCase("negative-gpus", "Region", _set("spec.pools.0.gpusPerNode", -1), "gpusPerNode", "1"),
    BadCase("min-gt-max", "Region", _min_gt_max, "minNodes", "minNodes must be <= maxNodes"),
    BadCase(
        "unknown-capacity-type",
        "Region",
        _set("spec.pools.0.capacityType", "preemptible"),
        "capacityType",
        "on-demand",
    ),
    BadCase("missing-gpu-type", "Region", _delete("spec.pools.0.gpuType"), "gpuType", "required"),
    BadCase(
        "spot-without-rate",
        "Region",
        _spot_no_rate,
        "spotInterruptionRatePerHour",
        "spot pool needs spotInterruptionRatePerHour",
    ),
    BadCase(
        "negative-price",
        "Region",
        _set("spec.pools.0.pricePerNodeHour", -3.5),
        "pricePerNodeHour",
        "0",
    ),
    BadCase("bad-pool-name", "Region", _set("spec.pools.0.name", "H100_OD"), "name", "[a-z0-9]"),
    BadCase("duplicate-pool", "Region", _dup_pool, "pools", "duplicate"),
    BadCase("no-pools", "Region", _set("spec.pools", []), "pools", "1"),
    BadCase(
        "kubeconfig-without-secret",
        "Region",
        _set("spec.cluster.mode", "kubeconfig"),
        "kubeconfigSecretRef",
        "mode kubeconfig needs kubeconfigSecretRef",
    ),
    BadCase(
        "capi-without-ref",
        "Region",
        _set("spec.pools.0.provider.type", "clusterAPI"),
        "machineDeploymentRef",
        "provider clusterAPI needs machineDeploymentRef",
    ),
    BadCase(
        "decode-above-prefill",
        "LLMModel",
        _set("spec.profiles.0.decodeTokensPerSecond", 999999),
        "decodeTokensPerSecond",
        "decodeTokensPerSecond must be <= prefillTokensPerSecond",
    ),
    BadCase(
        "zero-gpus-per-replica",
        "LLMModel",
        _set("spec.profiles.0.gpusPerReplica", 0),
        "gpusPerReplica",
        "1",
    ),
    BadCase("no-profiles", "LLMModel", _set("spec.profiles", []), "profiles", "1"),
    BadCase(
        "interactive-without-ttft",
        "SLATier",
        _delete("spec.interactive.ttftP95Seconds"),
        "interactive",
        "an interactive tier needs interactive.ttftP95Seconds",
    ),
    BadCase(
        "deadline-without-deadline",
        "SLATier",
        _delete("spec.deadline"),
        "deadline",
        "a deadline tier needs deadline.completionSeconds",
        sample_name="batch",
    ),
    BadCase("unknown-tier-type", "SLATier", _set("spec.type", "realtime"), "type", "interactive"),
    BadCase(
        "spot-fraction-without-spot",
        "SLATier",
        _set("spec.maxSpotFraction", 0.5),
        "maxSpotFraction",
        "maxSpotFraction must be 0 when spotAllowed is false",
        sample_name="interactive-fast",
    ),
    BadCase(
        "origins-not-summing",
        "TenantQuota",
        _set("spec.origins.0.fraction", 0.2),
        "origins",
        "origins fractions must sum to 1",
        sample_name="acme-chat",
    ),
    BadCase(
        "guarantee-above-budget",
        "TenantQuota",
        _set("spec.budgets.guaranteedTokensPerMinute", 10**11),
        "guaranteedTokensPerMinute",
        "guaranteedTokensPerMinute must be <= tokensPerMinute",
        sample_name="acme-chat",
    ),
    BadCase("zero-weight", "TenantQuota", _set("spec.weight", 0), "weight", "0"),
    BadCase("missing-tier", "TenantQuota", _delete("spec.tier"), "tier", "required"),
    BadCase(
        "interval-beyond-horizon",
        "FleetPolicy",
        _set("spec.horizon", {"stepSeconds": 600, "steps": 1}),
        "intervalSeconds",
        "intervalSeconds must not exceed the horizon",
    ),
    BadCase("unknown-mode", "FleetPolicy", _set("spec.mode", "yolo"), "mode", "plan-only"),
    BadCase(
        "step-too-short", "FleetPolicy", _set("spec.horizon.stepSeconds", 10), "stepSeconds", "300"
    ),
]


def planning_policy(
    solver: dict[str, Any] | None = None, history_seconds: int | None = None, **spec: Any
) -> Any:
    """The sample FleetPolicy in namespace ``ns``, sized for fast planning tests: a 60 s
    interval, 4 hourly steps, a 5 s solver limit (``solver`` overrides), ``spec`` on top."""
    from llmfleet.api.policy import FleetPolicy

    doc = sample("FleetPolicy")
    doc["metadata"]["namespace"] = "ns"
    doc["spec"].update({"intervalSeconds": 60, "horizon": {"stepSeconds": 3600, "steps": 4}})
    doc["spec"]["solver"].update({"timeLimitSeconds": 5, **(solver or {})})
    if history_seconds is not None:
        doc["spec"]["forecast"]["historySeconds"] = history_seconds
    doc["spec"].update(spec)
    return FleetPolicy.from_wire(doc)
