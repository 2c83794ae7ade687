"""``mode: apply``: the planning loop actuates its plan (through ``kube.actuate``) and says so.

This module runs on its own control plane: applying a plan creates cluster-scoped Nodes for
the sample Regions, which must not leak into the session's shared apiserver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import OperatorProcess, wait_for
from llmfleet.api import API_VERSION
from llmfleet.kube.client import Cluster
from support.builders import all_samples
from support.clusters import fresh_cluster
from support.controlplane import LocalControlPlane
from support.promtools import LocalPrometheus, Series

NS = "fleet"


@pytest.fixture(scope="module")
def own_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalControlPlane, Cluster]]:
    with fresh_cluster(tmp_path_factory.mktemp("apply-hub"), NS) as pair:
        yield pair


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    """A Prometheus with no vLLM series: the loop plans for the TenantQuotas' demand."""
    prom = LocalPrometheus(tmp_path_factory.mktemp("prom-empty"))
    end = time.time() - 15
    prom.start([Series("up", {"job": "none"}, lambda t: 1.0)], end - 600, end)
    try:
        yield prom
    finally:
        prom.stop()


def _status(c: Cluster) -> dict[str, Any]:
    return (c.get(API_VERSION, "FleetPolicy", "default", NS) or {}).get("status") or {}


def test_apply_mode_actuates_the_plan_and_records_it(
    own_cluster: tuple[LocalControlPlane, Cluster],
    empty_prometheus: LocalPrometheus,
    tmp_path: Path,
):
    cp, c = own_cluster
    op = OperatorProcess(cp.kubeconfig, tmp_path / "operator.log", "-n", NS,
                         "--plan-tick-seconds", "1")  # fmt: skip
    try:
        for doc in all_samples():
            if doc["kind"] != "Region":
                doc["metadata"]["namespace"] = NS
            if doc["kind"] == "FleetPolicy":
                doc["spec"].update(
                    {
                        "mode": "apply",
                        "intervalSeconds": 600,
                        "maxChangesPerCycle": 1000,
                        "horizon": {"stepSeconds": 3600, "steps": 4},
                        "ingress": {"parentRefs": []},
                    }
                )
                doc["spec"]["solver"]["timeLimitSeconds"] = 5
                doc["spec"]["prometheus"]["url"] = empty_prometheus.url
            c.apply(doc)
        st = wait_for(
            lambda: (s := _status(c)).get("lastAppliedPlan") and s,
            timeout=90, what="status.lastAppliedPlan",
        )  # fmt: skip
        assert st["lastAppliedPlan"] == st["lastPlan"]
        actuated = next(x for x in st["conditions"] if x["type"] == "Actuated")
        assert (actuated["status"], actuated["reason"]) == ("True", "Applied")
        demand = next(x for x in st["conditions"] if x["type"] == "DemandRead")
        assert demand["reason"] == "QuotaFallback"

        plan = c.get(API_VERSION, "FleetPlan", st["lastPlan"], NS)
        assert plan["status"]["phase"] == "Applied" and plan["status"]["applied"] is True
        assert plan["status"]["changes"] == len(plan["status"]["diff"]) > 0
        # the fleet now holds what the plan says
        want_nodes = sum(p["nodes"] for p in plan["spec"]["nodes"])
        assert len(c.list("v1", "Node")) == want_nodes
        want = {
            (r["model"], r["region"], r["pool"]): r["replicas"]
            for r in plan["spec"]["replicas"]
            if r["replicas"]
        }
        deployments = c.list("apps/v1", "Deployment", NS)
        assert sum(d["spec"]["replicas"] for d in deployments) == sum(want.values())

        # every scale action is an Event on the plan
        def scale_reasons() -> set[str]:
            return {
                e["reason"]
                for e in c.list("v1", "Event", NS)
                if e["involvedObject"]["name"] == st["lastPlan"]
            }

        wait_for(
            lambda: scale_reasons() >= {"ScaledUpNodes", "ScaledUpReplicas"},
            what="ScaledUpNodes and ScaledUpReplicas events on the FleetPlan",
        )
        assert "Traceback" not in op.output(), op.output()[-4000:]
    finally:
        op.stop()
