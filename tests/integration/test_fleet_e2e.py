"""The operator end to end against three real control planes and a real Prometheus.

The hub holds the llmfleet objects and region ``us-east`` (``mode: local``); ``eu-west`` and
``ap-northeast`` are two more control planes reached through kubeconfig Secrets in the hub.
Prometheus serves vLLM-like counters (backfilled with promtool) for flows of the sample
models. The operator runs as a process against the hub, as it would in a cluster.

The stages run in order on one fleet (each test is one stage and starts from the previous
one's state); a new cycle is asked for by a spec change (the documented "plan again at
once" rule), so no test waits for an interval:

1. plan-only writes a FleetPlan and changes nothing else, in any cluster;
2. ``mode: apply`` -> node pools, Deployments, Services, HTTPRoutes and the routing
   ConfigMap carry the plan's numbers in every region;
3. more demand in Prometheus -> the next plan and the fleet grow;
4. a removed LLMModel -> its objects are gone from every region;
5. a region's cluster unreachable -> RegionUnreachable, the region is held (not scaled
   down), the other regions are actuated; back -> it converges;
6. an operator killed in the middle of an actuation -> after the restart the next cycle
   converges, no Node, Deployment or Service duplicated or orphaned;
7. Prometheus empty, stale or down -> DemandDataStale, the last plan stays, nothing changes;
8. a bad LLMModel (its Deployment is rejected) -> status and Events, no crash.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import OperatorProcess, wait_for
from llmfleet.api import API_VERSION, KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.api.plan import FleetPlanSpec
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.kube.actuate import actuate
from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.render import GATEWAY_VERSION, route_name, service_name
from support.builders import all_samples
from support.controlplane import LocalControlPlane
from support.promtools import LocalPrometheus, Series
from support.servingseries import gateway_demand, vllm_replica

ROOT = Path(__file__).resolve().parents[2]
NS = "fleet"
HUB_REGION = "us-east"
REMOTE = ("eu-west", "ap-northeast")
MANAGED = "app.kubernetes.io/managed-by=llmfleet"
FLOWS = (
    # model, origin region, tier, prompt tokens/s
    ("llama-3-1-8b", "us-east", "interactive-fast", 30000.0),
    ("llama-3-1-8b", "eu-west", "interactive-normal", 20000.0),
    ("llama-3-1-8b", "ap-northeast", "interactive-fast", 15000.0),
    ("llama-3-3-70b", "us-east", "batch", 8000.0),
    ("llama-3-3-70b", "eu-west", "interactive-fast", 6000.0),
    ("llama-3-1-405b", "us-east", "interactive-normal", 3000.0),
)
HOURS = 4


def _series(t0: float, scale: float) -> list[Series]:
    """Demand at the gateway (the default query profile) and vLLM's replica gauges per
    serving region (the data-age check reads them)."""
    out = []
    for model, region, tier, tps in FLOWS:
        out += gateway_demand(model, region, tier, "acme", tps * scale, t0)
    for model, region in sorted({(f[0], f[1]) for f in FLOWS}):
        out += vllm_replica(model, region)
    return out


def _load(prom: LocalPrometheus, scale: float) -> None:
    """(Re)start ``prom`` on its port holding the flows at ``scale`` x their rates."""
    prom.stop()
    shutil.rmtree(prom.workdir / "data", ignore_errors=True)
    end = time.time() - 15
    start = end - HOURS * 3600
    prom.start(_series(start, scale), start, end, step=60)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gateway_crd() -> dict[str, Any]:
    out = subprocess.run(
        ["bash", str(ROOT / "hack/tools.sh"), "dir", "gateway-api"],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    path = Path(out.stdout.strip()) / "gateway.networking.k8s.io_httproutes.yaml"
    assert path.exists(), f"{path} missing: run `bash hack/tools.sh crds`"
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


@dataclass
class Fleet:
    """The three clusters, the Prometheus and the operator of this module."""

    hub_cp: LocalControlPlane
    hub: Cluster
    regions: dict[str, Cluster]
    """Region -> the Cluster holding it (the hub for us-east)."""
    kubeconfigs: dict[str, str]
    prom: LocalPrometheus
    log_dir: Path
    op: OperatorProcess | None = None
    seen: set[str] = field(default_factory=set)
    gap: float = 0.01

    def start_operator(self) -> None:
        n = len(list(self.log_dir.glob("operator-*.log")))
        self.op = OperatorProcess(self.hub_cp.kubeconfig, self.log_dir / f"operator-{n}.log",
                                  "-n", NS, "--plan-tick-seconds", "1")  # fmt: skip

    def stop_operator(self) -> None:
        if self.op is not None:
            self.op.stop()
            self.op = None

    def check_operator(self) -> None:
        assert self.op is not None and self.op.alive(), self.op and self.op.output()[-4000:]
        assert "Traceback" not in self.op.output(), self.op.output()[-6000:]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("e2e")
    cps = {name: LocalControlPlane(base / name) for name in ("hub", *REMOTE)}
    clusters: dict[str, Cluster] = {}
    prom = LocalPrometheus(base / "prometheus")
    fleet = None
    try:
        for cp in cps.values():
            cp.start(timeout=120)
        gateway = _gateway_crd()
        for name, cp in cps.items():
            c = clusters[name] = Cluster.connect(cp.kubeconfig, timeout=20, name=name)
            docs = [gateway] + ([crd_for(k) for k in KINDS] if name == "hub" else [])
            c.apply_all(docs)
            c.wait_crds_established([d["metadata"]["name"] for d in docs])
            c.ensure_namespace(NS)
        kubeconfigs = {r: cps[r].kubeconfig.read_text() for r in REMOTE}
        hub = clusters["hub"]
        for r in REMOTE:
            _secret(hub, r, kubeconfigs[r])
        _load(prom, 1.0)
        fleet = Fleet(cps["hub"], hub, {HUB_REGION: hub, **{r: clusters[r] for r in REMOTE}},
                      kubeconfigs, prom, base)  # fmt: skip
        fleet.start_operator()
        yield fleet
    finally:
        if fleet is not None:
            fleet.stop_operator()
        prom.stop()
        for c in clusters.values():
            c.close()
        for cp in cps.values():
            cp.stop()


def _secret(hub: Cluster, region: str, kubeconfig: str) -> None:
    hub.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"kubeconfig-{region}", "namespace": NS},
            "data": {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()},
        }
    )


def _policy_doc(f: Fleet, mode: str) -> dict[str, Any]:
    doc = next(d for d in all_samples() if d["kind"] == "FleetPolicy")
    doc["metadata"]["namespace"] = NS
    doc["spec"].update(
        {
            "mode": mode,
            "intervalSeconds": 1800,
            "maxChangesPerCycle": 1000,
            "horizon": {"stepSeconds": 300, "steps": 6},
            # demand moves in steps here and the plan must follow at once: no burst reserve
            # (it would hold the last peak for 3 steps; tests/unit/forecast tests it)
            "forecast": {"method": "naive", "historySeconds": 3 * 3600, "backtestFolds": 1,
                         "burstMemorySteps": 0},
            "solver": {"timeLimitSeconds": 5, "relativeGap": round(f.gap, 4)},
            "prometheus": {"url": f.prom.url, "timeoutSeconds": 5, "maxDataAgeSeconds": 900},
            "plansToKeep": 3,
        }
    )
    doc["spec"]["ingress"]["parentRefs"] = [{"name": "llm-gateway", "namespace": NS}]
    return doc


def _replan(f: Fleet, mode: str = "apply") -> None:
    """A spec change: the operator plans again at once."""
    f.gap += 0.001
    f.hub.apply(_policy_doc(f, mode))


def _status(f: Fleet) -> dict[str, Any]:
    return (f.hub.get(API_VERSION, "FleetPolicy", "default", NS) or {}).get("status") or {}


def _cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def _next_plan(f: Fleet, applied: bool = True, timeout: float = 120) -> FleetPlanSpec:
    """Wait for a FleetPlan not seen before (fully applied when ``applied``); its spec."""

    def done() -> dict[str, Any] | None:
        st = _status(f)
        name = st.get("lastPlan")
        if not name or name in f.seen:
            return None
        if applied and st.get("lastAppliedPlan") != name:
            return None
        if not applied and not _cond(st, "Actuated"):
            return None
        return st

    st = wait_for(done, timeout=timeout, interval=0.5, what="a new FleetPlan")
    f.seen.add(st["lastPlan"])
    f.check_operator()
    doc = f.hub.get(API_VERSION, "FleetPlan", st["lastPlan"], NS)
    assert doc is not None
    return FleetPlanSpec.model_validate(doc["spec"])


def _nodes(c: Cluster, region: str) -> Counter[str]:
    items = c.list("v1", "Node", label_selector=f"{MANAGED},llmfleet.dev/region={region}")
    return Counter(n["metadata"]["labels"]["llmfleet.dev/pool"] for n in items)


def _deployments(c: Cluster, region: str) -> dict[tuple[str, str], int]:
    items = c.list("apps/v1", "Deployment", NS,
                   label_selector=f"{MANAGED},llmfleet.dev/region={region}")  # fmt: skip
    return {
        (d["metadata"]["labels"]["llmfleet.dev/model"], d["metadata"]["labels"]["llmfleet.dev/pool"]):
        d["spec"]["replicas"]
        for d in items
    }  # fmt: skip


def _services(c: Cluster) -> set[str]:
    return {s["metadata"]["name"] for s in c.list("v1", "Service", NS, label_selector=MANAGED)}


def _routes(c: Cluster) -> dict[str, dict[str, Any]]:
    items = c.list(GATEWAY_VERSION, "HTTPRoute", NS, label_selector=MANAGED)
    return {r["metadata"]["name"]: r for r in items}


def _everything(c: Cluster) -> list[str]:
    """Every object llmfleet may write, in one cluster."""
    out = [f"Node {n['metadata']['name']}" for n in c.list("v1", "Node", label_selector=MANAGED)]
    for kind, api in (("Deployment", "apps/v1"), ("Service", "v1"), ("HTTPRoute", GATEWAY_VERSION)):
        out += [f"{kind} {o['metadata']['name']}" for o in c.list(api, kind, NS)]
    if c.get("v1", "ConfigMap", "llmfleet-routing", NS) is not None:
        out.append("ConfigMap llmfleet-routing")
    return out


def _assert_region_matches(f: Fleet, plan: FleetPlanSpec, region: str) -> None:
    """Nodes, Deployments, Services, HTTPRoutes and the routing ConfigMap of ``region``'s
    cluster carry ``plan``'s numbers."""
    c = f.regions[region]
    want_nodes = {n.pool: n.nodes for n in plan.nodes if n.region == region and n.nodes}
    assert dict(_nodes(c, region)) == want_nodes, region
    want = {(r.model, r.pool): r.replicas for r in plan.replicas if r.region == region}
    got = _deployments(c, region)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}, region
    serving = {model for (model, _pool), n in want.items() if n}
    assert _services(c) == {service_name(model, region) for model in serving}, region

    routes = _routes(c)
    for rule in plan.routing:
        if rule.origin != region or not rule.weights:
            continue
        route = routes.get(route_name(rule.model))
        assert route is not None, (region, rule.model, sorted(routes))
        assert route["spec"]["parentRefs"][0]["name"] == "llm-gateway"
        tier = {"type": "Exact", "name": "x-tier", "value": rule.tier}
        r = next(x for x in route["spec"]["rules"] if tier in x["matches"][0]["headers"])
        weights = {b["name"]: b["weight"] for b in r["backendRefs"] if b["weight"]}
        expect = {service_name(rule.model, w.region): w.fraction * 1000 for w in rule.weights}
        assert set(weights) == {k for k, v in expect.items() if v >= 1}, (weights, expect)
        assert all(abs(weights[k] - expect[k]) <= 1 for k in weights), (weights, expect)
    routed = {rule.model for rule in plan.routing if rule.origin == region and rule.weights}
    # the model router's x-ai-eg-model routes (llmfleet-router-*, a routed tier) sit beside them
    body = {n for n in routes if not n.startswith("llmfleet-router-")}
    assert body == {route_name(model) for model in routed}, region

    cm = c.get("v1", "ConfigMap", "llmfleet-routing", NS)
    assert cm is not None, region
    doc = json.loads(cm["data"]["routing.json"])
    assert set(doc["models"]) == {rule.model for rule in plan.routing}, region


def _assert_fleet_matches(f: Fleet, plan: FleetPlanSpec, skip: tuple[str, ...] = ()) -> None:
    for region in f.regions:
        if region not in skip:
            _assert_region_matches(f, plan, region)
    maps = {r: f.regions[r].get("v1", "ConfigMap", "llmfleet-routing", NS) for r in f.regions}
    texts = {r: cm["data"]["routing.json"] for r, cm in maps.items() if r not in skip}
    assert len(set(texts.values())) == 1, "every region holds the same routing policy"


def _totals(plan: FleetPlanSpec) -> tuple[int, int]:
    return sum(n.nodes for n in plan.nodes), sum(r.replicas for r in plan.replicas)


def _apply_samples(f: Fleet) -> None:
    for doc in all_samples():
        if doc["kind"] == "FleetPolicy":
            continue
        if doc["kind"] == "Region":
            if doc["metadata"]["name"] in REMOTE:
                doc["spec"]["cluster"] = {
                    "mode": "kubeconfig",
                    "kubeconfigSecretRef": {"name": f"kubeconfig-{doc['metadata']['name']}",
                                            "namespace": NS, "key": "kubeconfig"},
                }  # fmt: skip
        else:
            doc["metadata"]["namespace"] = NS
        f.hub.apply(doc)


# --------------------------------------------------------------------------- the stages


def test_plan_only_writes_a_fleet_plan_and_changes_nothing_else(fleet: Fleet):
    f = fleet
    _apply_samples(f)
    f.hub.apply(_policy_doc(f, "plan-only"))
    plan = _next_plan(f, applied=False)
    st = _status(f)
    assert _cond(st, "Actuated")["reason"] == "PlanOnly"
    assert _cond(st, "DemandRead")["reason"] == "PrometheusData"
    assert _cond(st, "DemandDataStale")["status"] == "False"
    assert _cond(st, "RegionUnreachable")["status"] == "False"
    doc = f.hub.get(API_VERSION, "FleetPlan", st["lastPlan"], NS)
    assert doc["status"]["phase"] == "PlanOnly" and doc["status"]["diff"]
    assert _totals(plan)[1] > 0
    # the plan covers all three regions, and nothing was written to any of them
    assert {n.region for n in plan.nodes if n.nodes} == {HUB_REGION, *REMOTE}
    for region, c in f.regions.items():
        assert _everything(c) == [], region


def test_apply_mode_actuates_the_plan_in_every_region(fleet: Fleet):
    f = fleet
    _replan(f, "apply")
    plan = _next_plan(f)
    _assert_fleet_matches(f, plan)
    st = _status(f)
    assert (_cond(st, "Actuated")["status"], _cond(st, "Actuated")["reason"]) == ("True", "Applied")
    # server-side apply by the field manager llmfleet
    dep = f.regions["eu-west"].list("apps/v1", "Deployment", NS)[0]
    assert {e["manager"] for e in dep["metadata"]["managedFields"]} >= {"llmfleet"}
    # every scale action is an Event on the plan
    reasons = wait_for(
        lambda: {e["reason"] for e in f.hub.list("v1", "Event", NS)
                 if e["involvedObject"]["name"] == st["lastPlan"]} or None,
        what="events on the FleetPlan",
    )  # fmt: skip
    assert reasons >= {"ScaledUpNodes", "ScaledUpReplicas", "UpdatedRouting"}
    f.before = plan  # type: ignore[attr-defined]


def test_more_demand_grows_the_next_plan_and_the_fleet(fleet: Fleet):
    f = fleet
    before: FleetPlanSpec = f.before  # type: ignore[attr-defined]
    _load(f.prom, 4.0)
    _replan(f)
    plan = _next_plan(f)
    nodes0, replicas0 = _totals(before)
    nodes1, replicas1 = _totals(plan)
    assert nodes1 > nodes0 and replicas1 > replicas0, (_totals(before), _totals(plan))
    _assert_fleet_matches(f, plan)
    deployed = sum(sum(_deployments(c, r).values()) for r, c in f.regions.items())
    assert deployed == replicas1


def test_removing_a_model_cleans_it_up_in_every_region(fleet: Fleet):
    f = fleet
    gone = "llama-3-3-70b"
    assert any(r.model == gone and r.replicas for r in f.before.replicas)  # type: ignore[attr-defined]
    f.hub.delete(API_VERSION, "LLMModel", gone, NS)
    _replan(f)
    plan = _next_plan(f)
    assert all(r.model != gone for r in plan.replicas)
    _assert_fleet_matches(f, plan)
    for region, c in f.regions.items():
        left = [x for x in _everything(c) if gone in x]
        assert left == [], (region, left)
        cm = c.get("v1", "ConfigMap", "llmfleet-routing", NS)
        assert gone not in cm["data"]["routing.json"]


def test_an_unreachable_region_is_held_and_the_others_are_actuated(fleet: Fleet):
    f = fleet
    down = "ap-northeast"
    last = _next_plan_spec(f)
    held_deps = _deployments(f.regions[down], down)
    held_nodes = _nodes(f.regions[down], down)
    dead = yaml.safe_load(f.kubeconfigs[down])
    dead["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{_closed_port()}"
    _secret(f.hub, down, yaml.safe_dump(dead))
    _load(f.prom, 1.0)  # demand falls back: the reachable regions shrink
    _replan(f)
    plan = _next_plan(f, applied=False)
    st = _status(f)
    cond = _cond(st, "RegionUnreachable")
    assert cond["status"] == "True" and down in cond["message"], cond
    assert "unreachable" in cond["message"] and "eu-west" not in cond["message"].split(":")[0]
    assert _cond(st, "Actuated")["reason"] == "RegionUnreachable", _cond(st, "Actuated")
    # held: the plan keeps the region's last figures, nothing there changed
    assert {(n.pool, n.nodes) for n in plan.nodes if n.region == down and n.nodes} == {
        (n.pool, n.nodes) for n in last.nodes if n.region == down and n.nodes
    }
    assert "floors: region(s) ap-northeast unreachable" in plan.solver.message
    assert _deployments(f.regions[down], down) == held_deps
    assert _nodes(f.regions[down], down) == held_nodes
    # the other regions carry the new plan
    _assert_fleet_matches(f, plan, skip=(down,))

    def reachable_replicas(p: FleetPlanSpec) -> int:
        return sum(r.replicas for r in p.replicas if r.region != down)

    assert reachable_replicas(plan) < reachable_replicas(last), "the others scaled down"
    events = wait_for(
        lambda: [e for e in f.hub.list("v1", "Event", NS) if e["reason"] == "RegionUnreachable"],
        what="a RegionUnreachable event",
    )
    assert events[0]["type"] == "Warning"

    # the region comes back: the next cycle converges there too
    _secret(f.hub, down, f.kubeconfigs[down])
    _replan(f)
    plan = _next_plan(f)
    assert _cond(_status(f), "RegionUnreachable")["status"] == "False"
    _assert_fleet_matches(f, plan)


def _next_plan_spec(f: Fleet) -> FleetPlanSpec:
    doc = f.hub.get(API_VERSION, "FleetPlan", _status(f)["lastPlan"], NS)
    return FleetPlanSpec.model_validate(doc["spec"])


class _Killed(BaseException):
    """The operator process dies (no handler of the actuator sees it)."""


class _DiesAfter:
    """A Cluster that dies after ``writes`` writes (shared count across clusters)."""

    def __init__(self, cluster: Cluster, left: list[int]) -> None:
        self._c, self._left = cluster, left

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)

    def _write(self, fn: str, *a: Any, **kw: Any) -> Any:
        if not kw.get("dry_run"):
            if self._left[0] <= 0:
                raise _Killed
            self._left[0] -= 1
        return getattr(self._c, fn)(*a, **kw)

    def apply(self, *a: Any, **kw: Any) -> Any:
        return self._write("apply", *a, **kw)

    def delete(self, *a: Any, **kw: Any) -> Any:
        return self._write("delete", *a, **kw)


def test_an_operator_killed_mid_actuation_converges_after_restart(fleet: Fleet):
    f = fleet
    f.stop_operator()
    last = _next_plan_spec(f)
    # the dead operator was applying a bigger plan: one more node and replica in every pool
    # that has any, in every region; it died after 7 writes
    bigger = last.model_copy(
        update={
            "nodes": [n.model_copy(update={"nodes": n.nodes + 1}) if n.nodes else n
                      for n in last.nodes],
            "replicas": [r.model_copy(update={"replicas": r.replicas + 1}) if r.replicas else r
                         for r in last.replicas],
        }
    )  # fmt: skip
    snap = _snapshot(f)
    policy = next(p for p in snap.policies if p.name == "default")
    left = [7]
    with pytest.raises(_Killed):
        actuate({r: _DiesAfter(c, left) for r, c in f.regions.items()},  # type: ignore[misc]
                snap, bigger, policy, NS)  # fmt: skip
    partial = {r: _nodes(c, r) for r, c in f.regions.items()}
    assert sum(sum(v.values()) for v in partial.values()) > sum(n.nodes for n in last.nodes)
    # a cycle that dies leaves the status as it was: the policy is due (nextRunTime passed)
    f.hub.apply(
        {"apiVersion": API_VERSION, "kind": "FleetPolicy",
         "metadata": {"name": "default", "namespace": NS},
         "status": {"nextRunTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}},
        subresource="status",
    )  # fmt: skip
    f.start_operator()
    plan = _next_plan(f)
    _assert_fleet_matches(f, plan)  # exact counts: nothing duplicated, nothing orphaned
    for region, c in f.regions.items():
        names = _everything(c)
        assert len(names) == len(set(names)), region
        nodes = c.list("v1", "Node", label_selector=MANAGED)
        assert {n["metadata"]["labels"]["llmfleet.dev/region"] for n in nodes} <= {region}


def _snapshot(f: Fleet) -> FleetSnapshot:
    from llmfleet.kube.actuate_cmd import read_snapshot

    snap, problems = read_snapshot(f.hub, NS)
    assert problems == []
    return snap


def _wait_stale(f: Fleet, reason: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (c := _cond(_status(f), "DemandDataStale")).get("reason") == reason
            and c.get("observedGeneration") == _generation(f)
            and c
        ),
        timeout=60,
        what=f"DemandDataStale {reason}",
    )


def _generation(f: Fleet) -> int:
    return int(f.hub.get(API_VERSION, "FleetPolicy", "default", NS)["metadata"]["generation"])


def test_missing_demand_data_keeps_the_last_plan_and_scales_nothing_down(fleet: Fleet):
    f = fleet
    last = _status(f)["lastPlan"]
    fleet_before = {r: (_nodes(c, r), _deployments(c, r)) for r, c in f.regions.items()}

    def unchanged() -> None:
        st = _status(f)
        assert st["lastPlan"] == last and _cond(st, "Planned")["status"] == "False"
        assert {r: (_nodes(c, r), _deployments(c, r)) for r, c in f.regions.items()} == (
            fleet_before
        )

    # empty: Prometheus answers, but holds no vLLM series
    f.prom.stop()
    shutil.rmtree(f.prom.workdir / "data", ignore_errors=True)
    end = time.time() - 15
    f.prom.start([Series("up", {"job": "none"}, lambda t: 1.0)], end - 600, end)
    _replan(f)
    cond = _wait_stale(f, "NoDemandData")
    assert cond["status"] == "True" and f"the last plan {last} stays" in cond["message"]
    unchanged()

    # stale: the newest sample is two hours old (maxDataAgeSeconds 900)
    f.prom.stop()
    shutil.rmtree(f.prom.workdir / "data", ignore_errors=True)
    end = time.time() - 2 * 3600
    f.prom.start(_series(end - HOURS * 3600, 1.0), end - HOURS * 3600, end, step=60)
    _replan(f)
    cond = _wait_stale(f, "StaleDemand")
    assert cond["status"] == "True" and "maxDataAgeSeconds 900" in cond["message"]
    unchanged()

    # down
    f.prom.stop()
    _replan(f)
    cond = _wait_stale(f, "PrometheusUnreachable")
    assert cond["status"] == "True" and "nothing is scaled down" in cond["message"]
    unchanged()
    f.check_operator()

    # back: plans from data again
    _load(f.prom, 1.0)
    _replan(f)
    _next_plan(f)
    assert _cond(_status(f), "DemandDataStale")["status"] == "False"


def test_a_bad_model_is_a_status_and_an_event_never_a_crash(fleet: Fleet):
    f = fleet
    doc = copy.deepcopy(next(d for d in all_samples() if d["kind"] == "LLMModel"))
    doc["metadata"] = {"name": "tpu-only", "namespace": NS}
    doc["spec"]["servedModelName"] = "tpu-only"
    doc["spec"]["minReplicasPerRegion"] = 1
    # the schema stops a malformed model at the door, naming the field
    bad = copy.deepcopy(doc)
    bad["spec"]["runtime"]["env"] = [{"name": "A=B", "value": "x"}]
    with pytest.raises(KubeError, match=r"env"):
        f.hub.apply(bad)
    # one the schema accepts but no pool can run: it is left out, the rest is planned
    doc["spec"]["profiles"] = [{**doc["spec"]["profiles"][0], "gpuType": "TPU-v9"}]
    f.hub.apply(doc)
    _replan(f)
    _next_plan(f, applied=False)
    st = _status(f)
    assert _cond(st, "Planned")["status"] == "True", _cond(st, "Planned")
    excluded = _cond(st, "ObjectsExcluded")
    assert (excluded["status"], excluded["reason"]) == ("True", "CannotBePlanned"), excluded
    assert "tpu-only" in excluded["message"] and "spec.profiles" in excluded["message"]
    warnings = wait_for(
        lambda: [e for e in f.hub.list("v1", "Event", NS)
                 if e["reason"] == "CannotBePlanned" and e["involvedObject"]["name"] == "tpu-only"],
        what="a CannotBePlanned Warning event on the model",
    )  # fmt: skip
    assert warnings[0]["type"] == "Warning"
    # the bad model did not take the fleet down: what ran keeps running
    assert sum(sum(_deployments(c, r).values()) for r, c in f.regions.items()) > 0
    f.check_operator()
    policy = FleetPolicy.from_wire(f.hub.get(API_VERSION, "FleetPolicy", "default", NS))
    assert policy.spec.mode == "apply"
    f.hub.delete(API_VERSION, "LLMModel", "tpu-only", NS)
