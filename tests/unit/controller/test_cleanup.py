"""The Region finalizer: a deleted Region's objects are removed in every planned namespace;
a failed delete is retried; an unreachable cluster does not block the deletion."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from llmfleet.controller import cleanup
from llmfleet.controller.metrics import FleetMetrics
from llmfleet.controller.planning import PlanningLoop, PlanningSettings
from llmfleet.kube.actuate import ActuationError, ActuationResult
from support.cycles import sample_snapshot

LOG = logging.getLogger("test")


@pytest.fixture
def calls(monkeypatch):
    seen: list[tuple[str, str, list[str]]] = []
    results: dict[str, ActuationResult] = {}

    def fake_remove(clusters, region, namespace, *, others, dry_run=False):
        seen.append((region.name, namespace, sorted(o.name for o in others)))
        return results.get(namespace, ActuationResult(changes=3, diff=["Deployment x deleted"]))

    events: list[dict[str, Any]] = []
    monkeypatch.setattr(cleanup, "remove_region", fake_remove)
    monkeypatch.setattr(cleanup, "RegionClusters", lambda c, **_: _Null())
    monkeypatch.setattr(cleanup.kopf, "event", lambda body, **kw: events.append(kw))
    return seen, results, events


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *a: Any) -> None:
        return None


def _call(region: str = "eu-west") -> None:
    snap = sample_snapshot("fleet")
    body = kopf.Body(next(r for r in snap.regions if r.name == region).to_wire())
    policy = planning_policy_in("fleet")
    loop = PlanningLoop(PlanningSettings(), FleetMetrics(), connect=lambda: None)  # type: ignore[arg-type,return-value]
    cleanup.region_deleted(
        loop, body, LOG,
        idx_regions={("r", r.name): [r] for r in snap.regions},
        idx_fleetpolicies={("p", "x"): [policy], ("p", "y"): [planning_policy_in("other")]},
    )  # fmt: skip


def planning_policy_in(namespace: str):
    from support.builders import planning_policy

    p = planning_policy()
    return p.model_copy(update={"metadata": p.metadata.model_copy(update={"namespace": namespace})})


def test_every_planned_namespace_is_cleaned_with_the_other_regions_known(calls):
    seen, _results, events = calls
    _call("eu-west")
    assert seen == [
        ("eu-west", "fleet", ["ap-northeast", "us-east"]),
        ("eu-west", "other", ["ap-northeast", "us-east"]),
    ]
    assert events == []


def test_a_failed_delete_is_retried(calls):
    _seen, results, _events = calls
    results["fleet"] = ActuationResult(
        errors=(ActuationError("eu-west", "deployment", "x", "delete Deployment x: 500"),)
    )
    with pytest.raises(kopf.TemporaryError, match="cleanup in fleet not complete"):
        _call("eu-west")


def test_an_unreachable_cluster_does_not_block_the_deletion(calls):
    _seen, results, events = calls
    results["fleet"] = ActuationResult(unreachable={"eu-west": "Region eu-west: Secret not found"})
    _call("eu-west")  # returns: kopf removes its finalizer
    assert [e["reason"] for e in events] == ["CleanupIncomplete"]
    assert "left behind" in events[0]["message"] and "Secret not found" in events[0]["message"]
