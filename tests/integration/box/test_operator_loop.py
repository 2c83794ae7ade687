"""The operator in apply mode closes the loop on a fleet in a box (hack/fleet.sh up with
FLEET_OPERATOR=1: llmfleet.box.sample's fleet, the vllm query profile on the box's
Prometheus, a plan every 30 s).

One box, one replay of the Azure conv trace (tokens x 0.1) with the tenant, tier and origin
headers, each request sent where the plan's routing ConfigMap says (no gateway in CI: the
load generator does the weighted pick a gateway would, llmfleet.box.routes). The stages
run in order on that box:

1. a step in offered load (0.8 -> ~7.5 requests/s; east capped at 2 replicas) makes the next plan grow; the new pods
   become Running, their emulators start, and the TTFT the load generator measures comes
   back under the tier's target;
2. a region's emulators die (the harness's down-regions: pods stay Running, so the
   apiserver shows nothing) and its pool is made unavailable (Region maxNodes 0, what the
   operator reads): the next plan serves nothing there and routes everything to the other
   region, and the traffic follows it;
3. the load generator lost nothing: one outcome per request, sent == ok + every error
   status, errors only while the region was dead and not yet re-planned.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from boxfleet import Box, LoadThread, phases

from llmfleet.api import API_VERSION
from llmfleet.box import sample
from llmfleet.box.loadgen import Outcome, Planned, plan_azure, summarize
from llmfleet.box.routes import RouteFollower, weights_for
from llmfleet.kube.client import Cluster
from llmfleet.sim.traces import read_azure
from support.fleetbox import NAMESPACE, wait_for

EAST, WEST = sample.REGIONS
TIER = sample.BoxFleet().tier
TTFT_TARGET = sample.BoxFleet().ttft_p95_seconds
BASELINE = (0.0, 15.0, 0.5)  # trace start s, trace seconds, speedup: 30 s at ~0.8 req/s
STEP = (15.0, 270.0, 1.5)  # 180 s at ~7.5 req/s


@dataclass
class Loop:
    box: Box
    cluster: Cluster
    routes: RouteFollower
    load: LoadThread | None = None
    step_at: float = math.nan
    seen: set[str] = field(default_factory=set)
    marks: dict[str, float] = field(default_factory=dict)
    """Load-generator seconds of the stages' events (for the report)."""
    conditions: list[dict[str, Any]] = field(default_factory=list)
    """The FleetPolicy's conditions when last looked at."""


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    box = Box(Path(tmp_path_factory.mktemp("oploop")) / "fleet", operator=True, plan_interval=30)
    t = time.monotonic()
    up = box.run("up", timeout=300)
    cluster = None
    routes = None
    try:
        assert up.returncode == 0, f"fleet.sh up failed:\n{up.stdout}\n{up.stderr}"
        print(f"\nbox up with the operator in {time.monotonic() - t:.1f}s")
        cluster = Cluster.connect(box.kubeconfig, timeout=20)
        routes = RouteFollower(cluster, NAMESPACE, period=1.0)
        routes.start()
        yield Loop(box, cluster, routes)
    finally:
        if routes is not None:
            routes.stop()
        if cluster is not None:
            cluster.close()
        down = box.run("down", timeout=120)
        assert down.returncode == 0, down.stderr


def _region(name: str, max_nodes: int) -> dict[str, Any]:
    """The box's Region ``name`` with its pool's maxNodes set."""
    doc = next(d for d in sample.box_fleet(sample.BoxFleet(namespace=NAMESPACE))
               if d["kind"] == "Region" and d["metadata"]["name"] == name)  # fmt: skip
    doc = copy.deepcopy(doc)
    doc["spec"]["pools"][0]["maxNodes"] = max_nodes
    return doc


def _status(lp: Loop) -> dict[str, Any]:
    doc = lp.cluster.get(API_VERSION, "FleetPolicy", "box", NAMESPACE) or {}
    return doc.get("status") or {}


def _plan(lp: Loop, name: str) -> dict[str, Any]:
    doc = lp.cluster.get(API_VERSION, "FleetPlan", name, NAMESPACE)
    assert doc is not None, name
    return doc


def _replicas(plan: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in plan["spec"].get("replicas") or []:
        out[r["region"]] = out.get(r["region"], 0) + int(r["replicas"])
    return out


def _next_applied(lp: Loop, after: float, timeout: float, what: str) -> dict[str, Any]:
    """The first applied FleetPlan created at or after wall time ``after`` not seen yet."""

    def newest() -> dict[str, Any] | None:
        st = _status(lp)
        lp.conditions = st.get("conditions") or []
        name = st.get("lastAppliedPlan")
        if not name or name in lp.seen or name != st.get("lastPlan"):
            return None
        doc = _plan(lp, name)
        made = datetime.fromisoformat(doc["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        if made.timestamp() < after:
            lp.seen.add(name)
            return None
        return doc

    try:
        doc = wait_for(newest, timeout, what, every=0.5)
    except AssertionError as err:
        conds = [(c["type"], c["reason"], c["message"][:300]) for c in lp.conditions]
        raise AssertionError(f"{err}\nconditions: {conds}\n{lp.box.logs(40)}") from None
    lp.seen.add(doc["metadata"]["name"])
    return doc  # type: ignore[no-any-return]


def _running(lp: Loop) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in lp.cluster.list("v1", "Pod", NAMESPACE, label_selector="llmfleet.dev/model"):
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"):
            region = p["metadata"]["labels"]["llmfleet.dev/region"]
            out[region] = out.get(region, 0) + 1
    return out


def _healthy(lp: Loop) -> dict[str, int]:
    out: dict[str, int] = {}
    for listener in lp.box.state().get("listeners", []):
        region = EAST if f"-{EAST}-" in listener["service"] else WEST
        out[region] = out.get(region, 0) + len(listener["backends"])
    return out


def _router(lp: Loop) -> Any:
    def route(p: Planned) -> tuple[str, str] | None:
        return lp.routes.url(sample.MODEL, p.origin, p.tier, random.Random(p.index).random())

    return route


def _ok_between(load: LoadThread, t0: float, t1: float) -> list[Outcome]:
    return [o for o in list(load.done) if t0 <= o.sent_at < t1]


def _p95(xs: list[float]) -> float:
    v = sorted(xs)
    return v[min(len(v) - 1, max(0, math.ceil(0.95 * len(v)) - 1))]


def test_a_step_in_load_grows_the_plan_and_ttft_comes_back_under_target(loop: Loop):
    lp = loop
    # the first plan (the quota's demand: no data yet) runs a replica in the tenant's origin
    first = _next_applied(lp, 0.0, 90, "the first applied plan")
    before = _replicas(first)
    assert sum(before.values()) >= 1, before
    wait_for(lambda: sum(_healthy(lp).values()) >= sum(before.values()), 60, "the emulators")
    wait_for(lambda: lp.routes.url(sample.MODEL, EAST, TIER, 0.5), 30, "the routing ConfigMap")
    # east holds at most 2 replicas (one Node of 2 GPUs): the step needs more, so west serves
    # too when east dies (a region that is the only one serving takes every vLLM series with
    # it: the demand is then stale and the operator keeps the last plan)
    lp.cluster.apply(_region(EAST, max_nodes=1))

    trace = read_azure("conv")
    common = {
        "token_scale": 0.1,
        "tenants": (sample.TENANT,),
        "tiers": (TIER,),
        "origins": (EAST, WEST),
    }
    base = plan_azure(trace, start_s=BASELINE[0], duration_s=BASELINE[1], speedup=BASELINE[2],
                      **common)  # type: ignore[arg-type]  # fmt: skip
    step = plan_azure(trace, start_s=STEP[0], duration_s=STEP[1], speedup=STEP[2], **common)  # type: ignore[arg-type]
    planned = phases((base, BASELINE[1] / BASELINE[2]), (step, STEP[1] / STEP[2]))
    lp.step_at = BASELINE[1] / BASELINE[2]
    lp.load = LoadThread(planned, sample.SERVED, router=_router(lp), timeout_s=90)
    wall_start = time.time()
    lp.load.start()
    print(f"replaying {len(planned)} requests: {len(base)} in {lp.step_at:.0f}s, then "
          f"{len(step)} in {STEP[1] / STEP[2]:.0f}s; plan before the step: {before}")  # fmt: skip

    grown = None
    deadline = time.monotonic() + 150
    while grown is None:
        plan = _next_applied(lp, wall_start + lp.step_at, deadline - time.monotonic(),
                             "a plan after the step")  # fmt: skip
        if sum(_replicas(plan).values()) > sum(before.values()):
            grown = plan
    after = _replicas(grown)
    lp.marks["plan grew"] = lp.load.elapsed()
    print(f"plan {grown['metadata']['name']} at +{lp.marks['plan grew']:.0f}s: {after}")
    want = {r: n for r, n in after.items() if n}
    wait_for(lambda: {r: n for r, n in _running(lp).items() if n} == want or None, 60,
             f"Running pods {want} (have {_running(lp)})")  # fmt: skip
    wait_for(lambda: {r: n for r, n in _healthy(lp).items() if n} == want or None, 60,
             f"healthy emulators behind the Services {want}")  # fmt: skip
    ready = lp.load.elapsed()
    lp.marks["emulators up"] = ready
    print(f"pods Running and emulators up at +{ready:.0f}s")

    # the step overloaded the first replica: TTFT was over the target before the new plan
    overloaded = [o.ttft for o in _ok_between(lp.load, lp.step_at, lp.marks["plan grew"]) if o.ok]

    # and comes back under it: p95 of a 15 s window of requests sent after the new replicas
    # are up (the backlog of the first replica drained)
    def recovered() -> tuple[float, float, int] | None:
        now = lp.load.elapsed() - 10  # requests sent 10 s ago have had time to start
        for start in range(int(ready), int(now) - 15 + 1, 5):
            w = [o.ttft for o in _ok_between(lp.load, start, start + 15) if o.ok]
            if len(w) >= 40 and _p95(w) < TTFT_TARGET:
                return start, _p95(w), len(w)
        return None

    start, p95, n = wait_for(recovered, 120, "TTFT p95 under the target", every=2)
    lp.marks["ttft under target"] = start
    print(f"TTFT p95 before the new replicas (sent +{lp.step_at:.0f}..+{lp.marks['plan grew']:.0f}s): "
          f"{_p95(overloaded) if overloaded else math.nan:.2f}s over {len(overloaded)}; "
          f"from +{start}s: {p95:.2f}s over {n} requests (target {TTFT_TARGET}s)")  # fmt: skip


def test_a_dead_region_is_planned_away_and_the_traffic_follows(loop: Loop):
    lp = loop
    assert lp.load is not None and lp.load.is_alive(), "the replay ended before this stage"
    served = wait_for(
        lambda: (h := _healthy(lp)).get(EAST, 0) >= 1 and h.get(WEST, 0) >= 1 and h, 60,
        "both regions serving",
    )  # fmt: skip
    # kill: east's emulators die under Running pods; what the operator can read is the
    # Region's pool made unavailable
    killed_at = lp.load.elapsed()
    wall = time.time()
    lp.box.set_down([EAST])
    lp.cluster.apply(_region(EAST, max_nodes=0))
    wait_for(lambda: not _healthy(lp).get(EAST), 30, "east's emulators gone")
    lp.marks["east killed"] = killed_at
    print(f"east killed at +{killed_at:.0f}s (healthy before: {served})")

    plan = _next_applied(lp, wall, 90, "a plan after the outage")
    moved = _replicas(plan)
    lp.marks["plan moved"] = lp.load.elapsed()
    assert moved.get(EAST, 0) == 0 and moved.get(WEST, 0) >= 1, moved
    doc = lp.routes.read_once().document
    weights = weights_for(doc, sample.MODEL, EAST, TIER)
    assert set(weights) == {WEST}, weights
    print(
        f"plan {plan['metadata']['name']} at +{lp.marks['plan moved']:.0f}s: {moved}, "
        f"routing for origin {EAST}: {weights}"
    )
    wait_for(lambda: _healthy(lp).get(WEST, 0) >= moved[WEST], 60, "west's emulators")
    settled = lp.load.elapsed() + 2  # the follower reads the ConfigMap every second

    def after() -> list[Outcome] | None:
        got = _ok_between(lp.load, settled, math.inf)  # type: ignore[arg-type]
        return got if len(got) >= 40 else None

    later = wait_for(after, 90, "40 requests answered after the new plan")
    assert {o.target for o in later} == {WEST}, sorted({o.target for o in later})
    assert all(o.ok for o in later), summarize(later, 0).to_json()
    print(f"after +{settled:.0f}s: {len(later)} requests, all to {WEST}, all answered")


def test_the_load_generator_loses_nothing(loop: Loop):
    lp = loop
    assert lp.load is not None
    lp.load.join(timeout=300)
    assert not lp.load.is_alive() and lp.load.error is None, lp.load.error
    out = lp.load.outcomes
    s = summarize(out, lp.load.wall)
    print(s.to_json())
    assert len(out) == len(lp.load.planned) == s.sent
    assert sorted(o.index for o in out) == list(range(len(out)))
    assert s.sent == s.ok + sum(s.http_errors.values()) + sum(s.transport_errors.values())
    # what failed: east's requests in flight when it died or sent before the plan moved
    # them, and requests the routing sent to a region before its replicas were up (the
    # operator publishes the routing as it scales: no readiness gate)
    killed, moved = lp.marks["east killed"], lp.marks["plan moved"]
    failed = [o for o in out if not o.ok]
    outage = [o for o in failed if o.sent_at + o.e2e >= killed and o.sent_at <= moved + 5]
    other = [o for o in failed if o not in outage]
    by: dict[tuple[str, str, int], int] = {}
    for o in other:
        key = (o.target, o.error or str(o.status), int(o.sent_at))
        by[key] = by.get(key, 0) + 1
    print(f"marks: { {k: round(v, 1) for k, v in lp.marks.items()} }; failed {len(failed)}: "
          f"{len(outage)} of east's outage, {len(other)} else (target, error, second sent): "
          f"{sorted(by.items())}")  # fmt: skip
    targets = {t: sum(o.target == t for o in outage) for t in sorted({o.target for o in outage})}
    print(
        f"failed in the outage, by target: {targets} (west's: routed there before its new "
        "replicas were up)"
    )
    assert len(other) <= 0.05 * s.sent, (len(other), s.sent)
    # each seen by the client: an HTTP error status, or a named transport error (a stream
    # cut after its 200 is one too)
    assert all(o.error or o.status != 200 for o in failed)
